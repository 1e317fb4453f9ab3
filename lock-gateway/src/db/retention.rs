//! Forgetting old request-id claims. A claim only has to outlive the retries of its
//! request; kept forever, the claim tables would grow with every remote operation and
//! passcode write.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Int8, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Rows deleted per statement, so no sweep holds many row locks or one long
/// transaction.
pub const PURGE_BATCH: i64 = 5_000;

/// What one sweep deleted, per table.
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
        remote_operations: purge_table(conn, "remote_operations", before, batch).await?,
        passcode_operations: purge_table(conn, "passcode_operations", before, batch).await?,
    })
}

/// `table` is one of the claim tables named above, never input.
async fn purge_table(
    conn: &mut AsyncPgConnection,
    table: &'static str,
    before: DateTime<Utc>,
    batch: i64,
) -> diesel::QueryResult<u64> {
    let batch = batch.max(1);
    let statement = format!(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY( \
           SELECT ctid FROM {table} WHERE create_time < $1 LIMIT $2))"
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
