//! Group commit. Decisions hand their entries to the writer and wait; workers take
//! whatever has queued (up to a batch limit), append it in one transaction and answer
//! every waiter only after the commit. Concurrent decisions share one commit, so
//! durability costs little throughput; nothing is answered that is not stored.
//!
//! A tenant's entries always go to the same worker: its batches serialise on the
//! tenant's chain head anyway, and one queue per tenant gathers them into the largest
//! batches, while the workers commit for different tenants side by side.

use std::hash::{DefaultHasher, Hash, Hasher};

use diesel_async::AsyncConnection;
use latchkey::db::DbPool;
use latchkey::error::ApiError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::store::{self, BurstRule};
use super::{AuditEntry, AuditRow};

/// Group-commit settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Committing workers, each serving its share of the tenants.
    pub workers: usize,
    /// Most rows in one transaction.
    pub max_batch: usize,
    pub burst: BurstRule,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            max_batch: 512,
            burst: BurstRule::default(),
        }
    }
}

struct Pending {
    entry: AuditEntry,
    reply: oneshot::Sender<Result<AuditRow, ApiError>>,
}

/// The handle decisions append through. Dropping every handle lets the workers flush
/// what is queued and stop.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    /// One queue per worker; a tenant's entries go to `senders[hash(tenant) % len]`.
    senders: Vec<mpsc::Sender<Pending>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Starts the workers; the returned set ends once every handle is dropped and the
    /// queue is drained.
    pub fn spawn(pool: DbPool, config: WriterConfig) -> (Self, JoinSet<()>) {
        let mut workers = JoinSet::new();
        let mut senders = Vec::new();
        for _ in 0..config.workers.max(1) {
            let (sender, receiver) = mpsc::channel::<Pending>(config.max_batch * 8);
            senders.push(sender);
            workers.spawn(worker(pool.clone(), receiver, config));
        }
        (Self { senders }, workers)
    }

    /// Appends `entry` and returns it as stored, once committed.
    pub async fn append(&self, entry: AuditEntry) -> Result<AuditRow, ApiError> {
        let mut hasher = DefaultHasher::new();
        entry.tenant_id.hash(&mut hasher);
        let queue = &self.senders[(hasher.finish() % self.senders.len() as u64) as usize];
        let (reply, answer) = oneshot::channel();
        queue
            .send(Pending { entry, reply })
            .await
            .map_err(|_| ApiError::unavailable("SHUTTING_DOWN", "the service is shutting down"))?;
        answer
            .await
            .map_err(|_| ApiError::internal("the audit writer stopped before answering"))?
    }
}

async fn worker(pool: DbPool, mut receiver: mpsc::Receiver<Pending>, config: WriterConfig) {
    let mut batch = Vec::with_capacity(config.max_batch);
    // Wait for one, then take whatever else is already queued.
    while receiver.recv_many(&mut batch, config.max_batch).await > 0 {
        commit(&pool, std::mem::take(&mut batch), config.burst).await;
    }
}

async fn commit(pool: &DbPool, batch: Vec<Pending>, burst: BurstRule) {
    let (entries, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.entry, p.reply)).unzip();
    let size = entries.len();
    let stored: Result<Vec<AuditRow>, ApiError> = async {
        let mut conn = pool.get().await?;
        let rows = conn
            .transaction(async |conn| store::append(conn, entries, burst).await)
            .await?;
        Ok(rows)
    }
    .await;
    match stored {
        Ok(rows) => {
            tracing::trace!(rows = size, "audit batch committed");
            for (reply, row) in replies.into_iter().zip(rows) {
                let _ = reply.send(Ok(row));
            }
        }
        Err(error) => {
            tracing::error!(%error, rows = size, "audit batch failed; no decision in it is answered");
            for reply in replies {
                let _ = reply.send(Err(ApiError::unavailable(
                    "AUDIT_UNAVAILABLE",
                    "the decision could not be recorded",
                )));
            }
        }
    }
}
