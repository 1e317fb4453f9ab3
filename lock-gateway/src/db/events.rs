//! Device events, numbered per tenant by a locked head row so cursors are committed in
//! the order they are handed out.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{device_event_heads, device_events};

/// The channel every append notifies, with the tenant id as payload.
pub const CHANNEL: &str = "latchkey_device_events";

#[derive(Debug, Clone, PartialEq, Eq, Insertable, Queryable, Selectable)]
#[diesel(table_name = device_events)]
pub struct EventRow {
    pub tenant_id: String,
    pub cursor: i64,
    pub account_id: Option<Uuid>,
    pub lock_id: i64,
    pub kind: String,
    pub source: String,
    pub success: bool,
    pub credential: String,
    pub username: String,
    pub battery_percent: i32,
    pub record_type: i32,
    pub passcode_id: i64,
    pub gateway_id: i64,
    pub occur_time: DateTime<Utc>,
    pub receive_time: DateTime<Utc>,
    pub detail: String,
    pub dedupe_key: Option<Vec<u8>>,
}

/// Appends the rows (their `cursor` is assigned here) that are not already stored under
/// their dedupe key; returns the appended rows. Must run inside a transaction: the head
/// row stays locked until it commits.
pub async fn append(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    mut rows: Vec<EventRow>,
) -> QueryResult<Vec<EventRow>> {
    if rows.is_empty() {
        return Ok(rows);
    }
    // Lock the head first: every append of the tenant waits here, so the duplicate check
    // below cannot race another append.
    let head: i64 = diesel::insert_into(device_event_heads::table)
        .values((
            device_event_heads::tenant_id.eq(tenant_id),
            device_event_heads::last_cursor.eq(0_i64),
        ))
        .on_conflict(device_event_heads::tenant_id)
        .do_update()
        .set(device_event_heads::last_cursor.eq(device_event_heads::last_cursor))
        .returning(device_event_heads::last_cursor)
        .get_result(conn)
        .await?;
    let keys: Vec<Vec<u8>> = rows.iter().filter_map(|r| r.dedupe_key.clone()).collect();
    let known: Vec<Option<Vec<u8>>> = if keys.is_empty() {
        Vec::new()
    } else {
        device_events::table
            .filter(device_events::tenant_id.eq(tenant_id))
            .filter(device_events::dedupe_key.eq_any(&keys))
            .select(device_events::dedupe_key)
            .load(conn)
            .await?
    };
    let mut seen: std::collections::HashSet<Vec<u8>> = known.into_iter().flatten().collect();
    rows.retain(|r| match &r.dedupe_key {
        Some(key) => seen.insert(key.clone()),
        None => true,
    });
    if rows.is_empty() {
        return Ok(rows);
    }
    for (offset, row) in rows.iter_mut().enumerate() {
        row.tenant_id = tenant_id.to_owned();
        row.cursor = head + 1 + offset as i64;
    }
    let last = head + rows.len() as i64;
    diesel::insert_into(device_events::table)
        .values(&rows)
        .execute(conn)
        .await?;
    diesel::update(device_event_heads::table.find(tenant_id))
        .set(device_event_heads::last_cursor.eq(last))
        .execute(conn)
        .await?;
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<diesel::sql_types::Text, _>(CHANNEL)
        .bind::<diesel::sql_types::Text, _>(tenant_id)
        .execute(conn)
        .await?;
    Ok(rows)
}

/// Events of the tenant after `cursor`, oldest first.
pub async fn after(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    cursor: i64,
    limit: i64,
) -> QueryResult<Vec<EventRow>> {
    device_events::table
        .filter(device_events::tenant_id.eq(tenant_id))
        .filter(device_events::cursor.gt(cursor))
        .order(device_events::cursor.asc())
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)
        .await
}
