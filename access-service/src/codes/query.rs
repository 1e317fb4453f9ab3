//! `GetAccessCode` and `ListAccessCodes`: codes as stored, masked, with their doors.

use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pagination;
use latchkey::pb::access::v1 as pb;

use super::{StoredCode, purpose_name, status_name, sync_state_name, with_doors};
use crate::db::codes::{self, CodeFilter};
use crate::directory::{check_max_len, parse_id, parse_id_filter};
use crate::error::Result;
use crate::memberships::check_instant;
use crate::state::AppState;

pub async fn get_access_code(state: &AppState, caller: &Caller, id: &str) -> Result<StoredCode> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    violations.check()?;
    let mut conn = state.pool.get().await?;
    let Some(code) = codes::get(&mut conn, &caller.tenant_id, uuid).await? else {
        return Err(ApiError::not_found("access_code", id).into());
    };
    with_doors(&mut conn, &caller.tenant_id, vec![code])
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("access_code", id).into())
}

/// An enum filter: unspecified means any, an unknown value is a violation.
fn enum_filter(
    field: &str,
    value: i32,
    name: fn(i32) -> Option<&'static str>,
    violations: &mut FieldViolations,
) -> Option<String> {
    if value == 0 {
        return None;
    }
    let found = name(value);
    if found.is_none() {
        violations.add(field, "is not a known value");
    }
    found.map(str::to_owned)
}

pub async fn list_access_codes(
    state: &AppState,
    caller: &Caller,
    request: &pb::ListAccessCodesRequest,
) -> Result<(Vec<StoredCode>, String)> {
    let mut violations = FieldViolations::default();
    let size = pagination::page_size(request.page_size, &mut violations);
    let after = pagination::decode_uuid_token(&request.page_token, &mut violations);
    check_max_len("grantee", &request.grantee, 200, &mut violations);
    let filter = CodeFilter {
        door_id: parse_id_filter("door_id", &request.door_id, &mut violations),
        grantee: (!request.grantee.is_empty()).then(|| request.grantee.clone()),
        sync_state: enum_filter(
            "sync_state",
            request.sync_state,
            sync_state_name,
            &mut violations,
        ),
        purpose: enum_filter("purpose", request.purpose, purpose_name, &mut violations),
        status: enum_filter("status", request.status, status_name, &mut violations),
        active_at: check_instant(
            "active_at",
            request.active_at.as_ref(),
            false,
            &mut violations,
        ),
    };
    violations.check()?;
    let mut conn = state.pool.get().await?;
    let rows = codes::list(&mut conn, &caller.tenant_id, after, &filter, size).await?;
    let (page, token) = pagination::finish_page(rows, size, |c| c.id);
    Ok((with_doors(&mut conn, &caller.tenant_id, page).await?, token))
}
