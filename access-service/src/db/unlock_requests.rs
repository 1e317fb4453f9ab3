//! Unlock requests by request id (`unlock_requests`).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::unlock_requests;

/// A request id as first claimed.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = unlock_requests)]
pub struct Claimed {
    pub fingerprint: Vec<u8>,
    pub response: Option<Vec<u8>>,
    pub finished: bool,
}

/// Claims `request_id` for a request with `fingerprint`; `None` when this call claimed
/// it, else the claim made before.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    request_id: &str,
    fingerprint: &[u8],
) -> QueryResult<Option<Claimed>> {
    let inserted = diesel::insert_into(unlock_requests::table)
        .values((
            unlock_requests::tenant_id.eq(tenant),
            unlock_requests::request_id.eq(request_id),
            unlock_requests::fingerprint.eq(fingerprint),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 1 {
        return Ok(None);
    }
    unlock_requests::table
        .filter(unlock_requests::tenant_id.eq(tenant))
        .filter(unlock_requests::request_id.eq(request_id))
        .select(Claimed::as_select())
        .first(conn)
        .await
        .optional()
}

/// Stores the answer a repeat of the request gets.
pub async fn answer(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    request_id: &str,
    response: &[u8],
    finished: bool,
) -> QueryResult<()> {
    diesel::update(unlock_requests::table)
        .filter(unlock_requests::tenant_id.eq(tenant))
        .filter(unlock_requests::request_id.eq(request_id))
        .filter(unlock_requests::finished.eq(false))
        .set((
            unlock_requests::response.eq(response),
            unlock_requests::finished.eq(finished),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Gives a request id back when its request did nothing (refused before a decision was
/// recorded, or nothing was sent), so a retry is carried out.
pub async fn release(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    request_id: &str,
) -> QueryResult<()> {
    diesel::delete(unlock_requests::table)
        .filter(unlock_requests::tenant_id.eq(tenant))
        .filter(unlock_requests::request_id.eq(request_id))
        .filter(unlock_requests::finished.eq(false))
        .execute(conn)
        .await
        .map(|_| ())
}
