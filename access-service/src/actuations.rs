//! Unlock outcomes and the actuations in flight: each unlock sent to lock-gateway is registered until its
//! outcome is recorded. When shutdown abandons calls after its grace, whatever is still
//! registered is recorded as unconfirmed (the door may have opened) before the process
//! exits; whichever of the two takes a registration first writes the one outcome row.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use latchkey::db::DbPool;

use crate::audit::writer::AuditWriter;
use crate::audit::{AuditAction, AuditEntry};
use crate::db::unlock_requests;

/// What happened at the lock after an unlock decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockResult {
    Unlocked,
    NotAttemptedDenied,
    NoLock,
    Failed,
    Unconfirmed,
}

impl UnlockResult {
    /// The outcome row's `reason_code`.
    fn code(self) -> &'static str {
        match self {
            Self::Unlocked => "UNLOCKED",
            Self::NotAttemptedDenied => "NOTATTEMPTEDDENIED",
            Self::NoLock => "NOLOCK",
            Self::Failed => "FAILED",
            Self::Unconfirmed => "UNCONFIRMED",
        }
    }
}

/// Sets an outcome row's result.
pub fn settle_entry(entry: &mut AuditEntry, result: UnlockResult, detail: &str) {
    let unlocked = result == UnlockResult::Unlocked;
    entry.action = if unlocked {
        AuditAction::Unlock
    } else {
        AuditAction::UnlockFailed
    };
    entry.success = unlocked;
    entry.reason_code = result.code().to_owned();
    entry.reason = detail.to_owned();
}

/// Stores the answer a repeat gets.
pub async fn store_answer(
    pool: &DbPool,
    tenant: &str,
    request_id: &str,
    response: &[u8],
    finished: bool,
) {
    let stored = async {
        let mut conn = pool.get().await?;
        unlock_requests::answer(&mut conn, tenant, request_id, response, finished).await?;
        Ok::<_, crate::error::Error>(())
    }
    .await;
    if let Err(error) = stored {
        tracing::warn!(
            ?error,
            "an unlock's answer could not be kept for its repeats"
        );
    }
}

/// The outcome detail of an actuation abandoned at shutdown.
pub const ABANDONED: &str =
    "the service shut down before lock-gateway answered; the door may have opened; not retried";

/// Encodes the answer a repeat gets, given the outcome row's sequence.
pub type Answer = Box<dyn FnOnce(i64) -> Vec<u8> + Send>;

struct Pending {
    /// The outcome row, result not yet set.
    outcome: AuditEntry,
    answer: Answer,
}

/// The registry every replica's unlocks register with.
#[derive(Clone, Default)]
pub struct Actuations {
    pending: Arc<Mutex<HashMap<u64, Pending>>>,
    next: Arc<AtomicU64>,
}

impl std::fmt::Debug for Actuations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actuations")
            .field("in_flight", &self.lock().len())
            .finish()
    }
}

/// One registered actuation; taking it back says who writes the outcome.
#[derive(Debug)]
pub struct Registration {
    id: u64,
    actuations: Actuations,
}

impl Actuations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn begin(&self, outcome: AuditEntry, answer: Answer) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Pending { outcome, answer });
        Registration {
            id,
            actuations: self.clone(),
        }
    }

    /// How many actuations are waiting for lock-gateway.
    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }

    /// Records every actuation still waiting as unconfirmed; returns how many.
    pub async fn abandon_all(&self, audit: &AuditWriter, pool: &DbPool) -> usize {
        let abandoned: Vec<Pending> = self.lock().drain().map(|(_, p)| p).collect();
        let count = abandoned.len();
        for Pending {
            mut outcome,
            answer,
        } in abandoned
        {
            settle_entry(&mut outcome, UnlockResult::Unconfirmed, ABANDONED);
            let tenant = outcome.tenant_id.clone();
            let request_id = outcome.request_id.clone();
            match audit.append(outcome).await {
                Ok(row) => {
                    tracing::warn!(%tenant, sequence = row.sequence, "an unlock in flight was recorded as unconfirmed at shutdown");
                    store_answer(pool, &tenant, &request_id, &answer(row.sequence), true).await;
                }
                Err(error) => {
                    tracing::error!(%tenant, %error, "an unlock in flight could not be recorded at shutdown");
                }
            }
        }
        count
    }
}

impl Registration {
    /// Takes the registration back to record the outcome; `false` when shutdown has
    /// recorded it already.
    pub fn finish(self) -> bool {
        self.actuations.lock().remove(&self.id).is_some()
    }

    /// Nothing was sent: there is no outcome to record.
    pub fn cancel(self) {
        self.actuations.lock().remove(&self.id);
    }
}
