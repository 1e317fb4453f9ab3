//! The claim of each remote lock or unlock request id.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::remote_operations;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = remote_operations)]
pub struct Operation {
    pub operation: String,
    pub account_id: Uuid,
    pub lock_id: i64,
    pub outcome: Option<String>,
    pub errcode: i32,
    pub latency_ms: i64,
    pub detail: String,
    /// `None` on claims made before fingerprints were kept.
    pub request_fingerprint: Option<Vec<u8>>,
}

/// Claims `request_id` for this call; `None` when an earlier call already holds it, with
/// what that call recorded.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    request_id: &str,
    operation: &str,
    account_id: Uuid,
    lock_id: i64,
    request_fingerprint: &[u8],
) -> QueryResult<Result<(), Operation>> {
    let claimed = diesel::insert_into(remote_operations::table)
        .values((
            remote_operations::tenant_id.eq(tenant_id),
            remote_operations::request_id.eq(request_id),
            remote_operations::operation.eq(operation),
            remote_operations::account_id.eq(account_id),
            remote_operations::lock_id.eq(lock_id),
            remote_operations::request_fingerprint.eq(request_fingerprint),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if claimed == 1 {
        return Ok(Ok(()));
    }
    let earlier = remote_operations::table
        .find((tenant_id, request_id))
        .select(Operation::as_select())
        .first(conn)
        .await?;
    Ok(Err(earlier))
}

pub async fn finish(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    request_id: &str,
    outcome: &str,
    errcode: i32,
    latency_ms: i64,
    detail: &str,
) -> QueryResult<()> {
    diesel::update(remote_operations::table.find((tenant_id, request_id)))
        .set((
            remote_operations::outcome.eq(outcome),
            remote_operations::errcode.eq(errcode),
            remote_operations::latency_ms.eq(latency_ms),
            remote_operations::detail.eq(detail),
            remote_operations::finish_time.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
