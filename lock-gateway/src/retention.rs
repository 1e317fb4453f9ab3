//! The sweep that forgets request-id claims once they are older than the retention
//! period (`OPERATION_RETENTION_DAYS`).

use std::time::Duration;

use latchkey::db::DbPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::db::retention::{PURGE_BATCH, purge_claims_before};

/// Sweeps every `interval` until shutdown, the first time at once.
pub fn spawn(
    pool: DbPool,
    retention: chrono::Duration,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_secs(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            sweep(&pool, retention)
                .instrument(tracing::info_span!("operations.retention"))
                .await;
        }
    })
}

async fn sweep(pool: &DbPool, retention: chrono::Duration) {
    let before = chrono::Utc::now() - retention;
    let purged = match pool.get().await {
        Ok(mut conn) => purge_claims_before(&mut conn, before, PURGE_BATCH).await,
        Err(error) => {
            tracing::warn!(%error, "operation retention sweep skipped: no connection");
            return;
        }
    };
    match purged {
        Ok(purged) if purged.remote_operations + purged.passcode_operations > 0 => {
            tracing::info!(
                remote_operations = purged.remote_operations,
                passcode_operations = purged.passcode_operations,
                %before,
                "forgot request ids older than the retention period"
            );
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "operation retention sweep failed"),
    }
}
