//! What each create request id was first used for (`request_fingerprints`).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::request_fingerprints as rf;

/// Records `fingerprint` for the request id; returns the one recorded before, if any.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    operation: &str,
    request_id: &str,
    fingerprint: &[u8],
) -> QueryResult<Option<Vec<u8>>> {
    let inserted = diesel::insert_into(rf::table)
        .values((
            rf::tenant_id.eq(tenant),
            rf::operation.eq(operation),
            rf::request_id.eq(request_id),
            rf::fingerprint.eq(fingerprint),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 1 {
        return Ok(None);
    }
    rf::table
        .filter(rf::tenant_id.eq(tenant))
        .filter(rf::operation.eq(operation))
        .filter(rf::request_id.eq(request_id))
        .select(rf::fingerprint)
        .first(conn)
        .await
        .optional()
}

/// Forgets a request id whose request did nothing.
pub async fn release(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    operation: &str,
    request_id: &str,
) -> QueryResult<()> {
    diesel::delete(rf::table)
        .filter(rf::tenant_id.eq(tenant))
        .filter(rf::operation.eq(operation))
        .filter(rf::request_id.eq(request_id))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Forgets request ids first used before `before` in `table` (`unlock_requests` or
/// `request_fingerprints`, both keyed by age on `create_time`), at most `limit` of them.
pub async fn forget_before(
    conn: &mut AsyncPgConnection,
    table: RequestIdTable,
    before: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> QueryResult<usize> {
    let table = match table {
        RequestIdTable::Unlocks => "unlock_requests",
        RequestIdTable::Creates => "request_fingerprints",
    };
    diesel::sql_query(format!(
        "DELETE FROM {table} WHERE ctid IN \
         (SELECT ctid FROM {table} WHERE create_time < $1 LIMIT $2)"
    ))
    .bind::<diesel::sql_types::Timestamptz, _>(before)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .execute(conn)
    .await
}

/// The tables that remember request ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestIdTable {
    Unlocks,
    Creates,
}
