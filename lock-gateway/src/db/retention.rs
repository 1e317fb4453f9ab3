//! Forgetting what only has to be remembered for a while: request-id claims, which only
//! have to outlive the retries of their request, processed callbacks, which only have to
//! outlive TTLock's redeliveries of them, and device events, which only have to outlive
//! their consumers' absences. Kept forever, all would grow with every operation and every
//! event at every lock.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Int8, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Rows deleted per statement, so no sweep holds many row locks or one long
/// transaction.
pub const PURGE_BATCH: i64 = 5_000;

/// What one sweep of the claims deleted, per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub remote_operations: u64,
    pub passcode_operations: u64,
}

/// Deletes every claim made before `before`, `batch` rows per statement. A request
/// repeated with a forgotten id is carried out again.
pub async fn purge_claims_before(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    batch: i64,
) -> diesel::QueryResult<Purged> {
    Ok(Purged {
        remote_operations: purge(conn, "remote_operations", "create_time", before, batch).await?,
        passcode_operations: purge(conn, "passcode_operations", "create_time", before, batch)
            .await?,
    })
}

/// Deletes the callbacks processed before `before`; unprocessed ones stay. A callback
/// redelivered after that is stored and published again, and its records, already
/// events, are dropped by their deliveries.
pub async fn purge_callbacks_processed_before(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    batch: i64,
) -> diesel::QueryResult<u64> {
    purge(conn, "callback_inbox", "process_time", before, batch).await
}

/// Deletes the device events received before `before`. Each tenant's head keeps its last
/// cursor, so later events are numbered on after the deleted ones.
pub async fn purge_events_received_before(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    batch: i64,
) -> diesel::QueryResult<u64> {
    purge(conn, "device_events", "receive_time", before, batch).await
}

/// `table` and `column` are the constants above, never input.
async fn purge(
    conn: &mut AsyncPgConnection,
    table: &'static str,
    column: &'static str,
    before: DateTime<Utc>,
    batch: i64,
) -> diesel::QueryResult<u64> {
    let batch = batch.max(1);
    let statement = format!(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY( \
           SELECT ctid FROM {table} WHERE {column} < $1 LIMIT $2))"
    );
    let mut total = 0_u64;
    loop {
        let deleted = diesel::sql_query(&statement)
            .bind::<Timestamptz, _>(before)
            .bind::<Int8, _>(batch)
            .execute(conn)
            .await?;
        total += deleted as u64;
        if (deleted as i64) < batch {
            return Ok(total);
        }
    }
}
