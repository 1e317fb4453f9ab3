//! The sweep that forgets request-id claims older than `OPERATION_RETENTION_DAYS`,
//! callbacks processed more than `CALLBACK_RETENTION_DAYS` ago and device events received
//! more than `DEVICE_EVENT_RETENTION_DAYS` ago.

use std::time::Duration;

use latchkey::db::DbPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::db::retention::{
    PURGE_BATCH, purge_callbacks_processed_before, purge_claims_before,
    purge_events_received_before,
};

/// How long each kind of row is kept; `None` keeps it forever.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub claims: Option<chrono::Duration>,
    pub callbacks: Option<chrono::Duration>,
    pub events: Option<chrono::Duration>,
}

impl Retention {
    /// Whether anything is ever deleted.
    pub fn sweeps(&self) -> bool {
        self.claims.is_some() || self.callbacks.is_some() || self.events.is_some()
    }
}

/// Sweeps every `interval` until shutdown, the first time at once.
pub fn spawn(
    pool: DbPool,
    retention: Retention,
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
                .instrument(tracing::info_span!("retention.sweep"))
                .await;
        }
    })
}

async fn sweep(pool: &DbPool, retention: Retention) {
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(%error, "retention sweep skipped: no connection");
            return;
        }
    };
    let now = chrono::Utc::now();
    if let Some(keep) = retention.claims {
        match purge_claims_before(&mut conn, now - keep, PURGE_BATCH).await {
            Ok(purged) if purged.remote_operations + purged.passcode_operations > 0 => {
                tracing::info!(
                    remote_operations = purged.remote_operations,
                    passcode_operations = purged.passcode_operations,
                    "forgot request ids older than the retention period"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "request-id retention sweep failed"),
        }
    }
    if let Some(keep) = retention.callbacks {
        let purged = purge_callbacks_processed_before(&mut conn, now - keep, PURGE_BATCH).await;
        report(purged, "callbacks");
    }
    if let Some(keep) = retention.events {
        let purged = purge_events_received_before(&mut conn, now - keep, PURGE_BATCH).await;
        report(purged, "device events");
    }
}

/// Logs what one kind's sweep deleted, or why it failed.
fn report(purged: diesel::QueryResult<u64>, kind: &'static str) {
    match purged {
        Ok(0) => {}
        Ok(purged) => tracing::info!(purged, kind, "deleted rows past their retention period"),
        Err(error) => tracing::warn!(%error, kind, "retention sweep failed"),
    }
}
