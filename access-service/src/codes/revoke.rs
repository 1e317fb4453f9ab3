//! `RevokeAccessCode`: an active code stops opening doors at once (the snapshot follows
//! the change) and leaves every lock it is on through REMOVE intents written with it.

use diesel_async::AsyncConnection;
use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pagination;
use serde_json::json;

use super::{StoredCode, record, with_doors};
use crate::audit::AuditAction;
use crate::audit::chain::truncate_to_micros;
use crate::db::codes;
use crate::directory::{check_max_len, parse_id};
use crate::error::{Error, Result};
use crate::provisioning::intents;
use crate::state::AppState;

const MAX_REASON_LEN: usize = 500;

pub async fn revoke_access_code(
    state: &AppState,
    caller: &Caller,
    id: &str,
    reason: &str,
    request_id: &str,
) -> Result<StoredCode> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    check_max_len("reason", reason, MAX_REASON_LEN, &mut violations);
    let request_id = pagination::request_id(request_id, &mut violations);
    violations.check()?;
    let now = truncate_to_micros(state.clock.now());
    let tenant = caller.tenant_id.as_str();
    let mut conn = state.pool.get().await?;
    let revoked = conn
        .transaction(async |conn| {
            let Some(code) = codes::get_for_update(conn, tenant, uuid).await? else {
                return Err(ApiError::not_found("access_code", id).into());
            };
            if code.status != "ACTIVE" {
                return Err(ApiError::failed_precondition(
                    "CODE_NOT_ACTIVE",
                    format!("the code is {}, not ACTIVE", code.status),
                )
                .into());
            }
            let revoked = codes::revoke(conn, code.id, now).await?;
            intents::on_revoke(conn, tenant, revoked.id, now).await?;
            let fields = json!({
                "status": revoked.status,
                "reason": reason,
                "version": revoked.version,
            });
            record(
                conn,
                caller,
                AuditAction::AdminUpdate,
                revoked.id,
                fields,
                request_id.as_deref(),
            )
            .await?;
            let stored = with_doors(conn, tenant, vec![revoked]).await?;
            Ok::<_, Error>(stored)
        })
        .await?;
    super::committed(state, tenant).await;
    revoked
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("access_code", id).into())
}
