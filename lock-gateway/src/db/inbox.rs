//! The callback inbox: what TTLock pushed, stored before it is acknowledged.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::callback_inbox;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = callback_inbox)]
pub struct InboxRow {
    pub id: i64,
    pub notify_type: Option<i32>,
    pub lock_id: Option<i64>,
    pub payload: serde_json::Value,
}

/// Stores a callback; `false` when one with the same digest is already stored.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    dedupe_key: &[u8],
    notify_type: Option<i32>,
    lock_id: Option<i64>,
    payload: &serde_json::Value,
) -> QueryResult<bool> {
    let stored = diesel::insert_into(callback_inbox::table)
        .values((
            callback_inbox::dedupe_key.eq(dedupe_key),
            callback_inbox::notify_type.eq(notify_type),
            callback_inbox::lock_id.eq(lock_id),
            callback_inbox::payload.eq(payload),
        ))
        .on_conflict(callback_inbox::dedupe_key)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(stored == 1)
}

/// Claims unprocessed callbacks, oldest first; other replicas skip the claimed rows.
pub async fn claim_pending(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Vec<InboxRow>> {
    callback_inbox::table
        .filter(callback_inbox::process_time.is_null())
        .order(callback_inbox::id.asc())
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(InboxRow::as_select())
        .load(conn)
        .await
}

pub async fn mark(conn: &mut AsyncPgConnection, id: i64, outcome: &str) -> QueryResult<()> {
    diesel::update(callback_inbox::table.find(id))
        .set((
            callback_inbox::process_time.eq(Some(Utc::now())),
            callback_inbox::outcome.eq(Some(outcome)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Callbacks for locks nobody knew go back to the queue once a sync finds those locks.
pub async fn requeue_unrouted(
    conn: &mut AsyncPgConnection,
    lock_ids: &[i64],
) -> QueryResult<usize> {
    if lock_ids.is_empty() {
        return Ok(0);
    }
    diesel::update(
        callback_inbox::table
            .filter(callback_inbox::outcome.eq("UNROUTED"))
            .filter(callback_inbox::lock_id.eq_any(lock_ids)),
    )
    .set((
        callback_inbox::process_time.eq(None::<chrono::DateTime<Utc>>),
        callback_inbox::outcome.eq(None::<String>),
    ))
    .execute(conn)
    .await
}
