//! Carries out due intents. Each is claimed under a lease (`SKIP LOCKED`, so replicas
//! never work one intent at once), sent to lock-gateway with a request id of its own and
//! generation, and settled in one transaction with the code's sync state. An answer
//! that may or may not have reached the lock is settled by reading the lock, never by
//! writing blindly again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use latchkey::pb::gateway::v1::{Passcode, PasscodeOutcome, PasscodeResult};
use rand::Rng;
use tracing::Instrument;
use uuid::Uuid;

use crate::audit::store::BurstRule;
use crate::audit::{AuditAction, AuditEntry};
use crate::db::outbox::{self, CodeDoor, CodeWindow, Intent};
use crate::error::Result;
use crate::gateway::PasscodeAnswer;
use crate::passcode_names::{code_id_of, passcode_name};
use crate::state::AppState;

/// The first retry delay; each failure doubles it, up to [`MAX_BACKOFF`].
const BASE_BACKOFF: chrono::Duration = chrono::Duration::seconds(2);
const MAX_BACKOFF: chrono::Duration = chrono::Duration::minutes(10);
/// How soon an intent waiting on another (a change before its set) looks again.
const DEFER: chrono::Duration = chrono::Duration::seconds(2);

/// Exponential backoff with ±25% jitter, so retries of many codes spread out.
pub fn backoff(attempts: i32) -> chrono::Duration {
    let exponent = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    let base = BASE_BACKOFF
        .checked_mul(1_i32 << exponent.min(16))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF);
    let millis = base.num_milliseconds();
    let jitter = rand::rng().random_range(-(millis / 4)..=(millis / 4));
    chrono::Duration::milliseconds(millis + jitter)
}

/// The window the lock enforces: a period for timed codes, none (permanent) otherwise.
/// Weekly slots are judged by `CheckAccess`; the lock holds the overall window.
fn lock_window(code: &CodeWindow) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    match (code.code_type.as_str(), code.start_time, code.end_time) {
        ("PERMANENT", _, _) => None,
        (_, Some(start), Some(end)) => Some((start, end)),
        (_, None, Some(end)) => Some((end - chrono::Duration::days(3650), end)),
        _ => None,
    }
}

/// How an intent ended this time.
enum Settle {
    /// Done; the door's new state, reason, detail and lock passcode id.
    Done(&'static str, String, String, Option<i64>),
    /// Try again later (`next_generation` after a definite refusal); the door's state
    /// is left as it is, with the error as detail.
    Retry {
        after: chrono::Duration,
        next_generation: bool,
        /// Why it waits, when lock-gateway said (e.g. GATEWAY_OFFLINE).
        reason: String,
        error: String,
    },
}

impl Settle {
    /// Whether a SET that ended so may have put the code on the lock: written, or its
    /// fate not known yet (a retry under the same request id asks about the same write).
    fn may_have_written(&self) -> bool {
        match self {
            Settle::Done(state, ..) => *state == "SET",
            Settle::Retry {
                next_generation, ..
            } => !next_generation,
        }
    }

    fn passcode(&self) -> Option<i64> {
        match self {
            Settle::Done(_, _, _, passcode) => *passcode,
            Settle::Retry { .. } => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Settle::Done(state, reason, detail, _) => format!("{state} {reason} {detail}"),
            Settle::Retry { reason, error, .. } => format!("retry {reason} {error}"),
        }
    }
}

/// Time beyond lock-gateway's call deadline before an orphaned write is taken as done.
const ORPHAN_MARGIN: chrono::Duration = chrono::Duration::seconds(15);

/// lock-gateway's answer to a request id first used for a request of another shape.
const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";

/// A request id refused as reused was first sent with what the code held then (its
/// window moved while the write waited): nothing was sent this time, and the write goes
/// out again under a new id, where a duplicate of our own first write is recognised.
fn sent_again() -> Settle {
    Settle::Retry {
        after: backoff(1),
        next_generation: true,
        reason: String::new(),
        error: "the request id was first used for an earlier form of this write; sent again under a new one".to_owned(),
    }
}

fn failure_reason(reason: &str) -> String {
    match reason {
        "NO_GATEWAY" => "NO_LOCK_GATEWAY".to_owned(),
        "DUPLICATE" => "DUPLICATE_ON_LOCK".to_owned(),
        other => other.to_owned(),
    }
}

async fn passcodes_on_lock(
    state: &AppState,
    tenant: &str,
    door: &CodeDoor,
) -> std::result::Result<Vec<Passcode>, String> {
    let (Some(account), Some(lock)) = (door.account_id, door.lock_id) else {
        return Err("the door has no lock".to_owned());
    };
    state
        .gateway
        .list_passcodes(tenant, account, lock)
        .await
        .map_err(|e| e.to_string())
}

fn ours(passcodes: &[Passcode], code_id: Uuid, known: Option<i64>) -> Option<i64> {
    passcodes
        .iter()
        .find(|p| code_id_of(&p.name) == Some(code_id) || Some(p.passcode_id) == known)
        .map(|p| p.passcode_id)
}

#[derive(Debug)]
pub struct Worker {
    state: AppState,
    /// How long a claim holds, in seconds of host time.
    lease_secs: i64,
}

impl Worker {
    pub fn new(state: AppState, lease_secs: u32) -> Self {
        Self {
            state,
            lease_secs: i64::from(lease_secs.max(1)),
        }
    }

    /// Claims and carries out due intents until none is due; returns how many ran.
    pub async fn run_due(&self, concurrency: usize) -> Result<usize> {
        let mut total = 0;
        loop {
            let now = self.state.clock.now();
            let claimed = {
                let mut conn = self.state.pool.get().await?;
                outbox::claim_due(&mut conn, now, concurrency.max(1) as i64, self.lease_secs)
                    .await?
            };
            if claimed.is_empty() {
                return Ok(total);
            }
            total += claimed.len();
            let ids: Vec<Uuid> = claimed.iter().map(|intent| intent.id).collect();
            let runs = claimed.into_iter().map(|intent| {
                let span = tracing::info_span!(
                    "provisioning.intent",
                    intent = %intent.id,
                    kind = %intent.intent,
                    code = %intent.code_id,
                    door = %intent.door_id,
                    attempt = intent.attempts,
                );
                async move {
                    if let Err(error) = self.carry_out(&intent).await {
                        // The lease lapses and another attempt picks it up.
                        tracing::warn!(?error, "intent not settled");
                    }
                }
                .instrument(span)
            });
            // The claims are renewed while the intents run, so a claim outlives a slow
            // TTLock call but not a crashed worker.
            tokio::select! {
                _ = futures_util::future::join_all(runs) => {}
                () = self.heartbeat(&ids) => {}
            }
        }
    }

    /// Renews the claims on `ids` every third of the lease, until dropped.
    async fn heartbeat(&self, ids: &[Uuid]) {
        let every = Duration::from_millis(
            u64::try_from(self.lease_secs * 1000 / 3)
                .unwrap_or(1000)
                .max(100),
        );
        loop {
            tokio::time::sleep(every).await;
            let renewed = match self.state.pool.get().await {
                Ok(mut conn) => outbox::renew_leases(&mut conn, ids, self.lease_secs)
                    .await
                    .map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            if let Err(error) = renewed {
                tracing::warn!(%error, "provisioning claims not renewed");
            }
        }
    }

    async fn carry_out(&self, intent: &Intent) -> Result<()> {
        let tenant = intent.tenant_id.as_str();
        let (code, door) = {
            let mut conn = self.state.pool.get().await?;
            (
                outbox::code_window(&mut conn, tenant, intent.code_id).await?,
                outbox::door_row(&mut conn, intent.code_id, intent.door_id).await?,
            )
        };
        let (Some(code), Some(door)) = (code, door) else {
            let mut conn = self.state.pool.get().await?;
            outbox::finish(&mut conn, intent.id, false, "the code or door is gone").await?;
            return Ok(());
        };
        let settle = match intent.intent.as_str() {
            "SET" => self.set(intent, &code, &door).await?,
            "CHANGE" => self.change(intent, &code, &door).await,
            _ => self.remove(intent, &door).await,
        };
        self.settle(intent, &door, settle).await
    }

    /// Records how an intent ended, in one transaction with the door's sync state. The
    /// door row is locked first, as revocation locks it, and the outcome is written only
    /// while the intent is still the current one for its code and door: an intent closed
    /// by a newer one while it ran (a revocation during a write) no longer speaks for
    /// the door.
    async fn settle(&self, intent: &Intent, door: &CodeDoor, settle: Settle) -> Result<()> {
        let now = self.state.clock.now();
        let mut conn = self.state.pool.get().await?;
        let woke = conn
            .transaction(async |conn| {
                let Some(current) =
                    outbox::door_row_for_update(conn, door.code_id, door.door_id).await?
                else {
                    outbox::finish(conn, intent.id, false, "the door is gone").await?;
                    return Ok(false);
                };
                if !outbox::is_open_for_update(conn, intent.id).await? {
                    return superseded(conn, intent, &current, &settle, now).await;
                }
                match &settle {
                    Settle::Done(state, reason, detail, passcode) => {
                        outbox::set_door_state(
                            conn,
                            door.code_id,
                            door.door_id,
                            state,
                            reason,
                            detail,
                            *passcode,
                        )
                        .await?;
                        let keep = intent.intent == "SET" && *state == "SET";
                        outbox::finish(conn, intent.id, keep, detail).await?;
                        tracing::info!(state, reason = %reason, "intent settled");
                        // Revoked while the write was in flight without closing it: remove
                        // it again.
                        let code =
                            outbox::code_window(conn, &intent.tenant_id, door.code_id).await?;
                        if *state == "SET" && code.is_some_and(|c| c.status != "ACTIVE") {
                            remove_again(conn, intent, *passcode, now).await?;
                            return Ok(true);
                        }
                    }
                    Settle::Retry {
                        after,
                        next_generation,
                        reason,
                        error,
                    } => {
                        let state = match (intent.intent.as_str(), current.sync_state.as_str()) {
                            ("SET", "SETTING") => "PENDING",
                            (_, state) => state,
                        };
                        outbox::set_door_state(
                            conn,
                            door.code_id,
                            door.door_id,
                            state,
                            reason,
                            error,
                            current.lock_passcode_id,
                        )
                        .await?;
                        outbox::retry(conn, intent.id, now + *after, *next_generation, error)
                            .await?;
                        tracing::info!(error = %error, "intent retried later");
                    }
                }
                Ok::<_, diesel::result::Error>(false)
            })
            .await?;
        if woke {
            self.state.provisioning_wake.notify_one();
        }
        Ok(())
    }

    fn request_id(intent: &Intent) -> String {
        format!("prov-{}-{}", intent.id, intent.generation)
    }

    async fn set(&self, intent: &Intent, code: &CodeWindow, door: &CodeDoor) -> Result<Settle> {
        let now = self.state.clock.now();
        if code.status != "ACTIVE" {
            // Revocation queued its own removal.
            return Ok(Settle::Done(
                "REMOVED",
                String::new(),
                "no longer active; not written".to_owned(),
                None,
            ));
        }
        if code.end_time.is_some_and(|end| end <= now) {
            return Ok(Settle::Done(
                "FAILED",
                "EXPIRED_BEFORE_SET".to_owned(),
                "the code's window ended before it could be written".to_owned(),
                None,
            ));
        }
        let (Some(account), Some(lock)) = (door.account_id, door.lock_id) else {
            return Ok(Settle::Done(
                "NOT_APPLICABLE",
                String::new(),
                String::new(),
                None,
            ));
        };
        let Some(sealed) = intent.code_sealed.as_deref() else {
            return Ok(Settle::Done(
                "FAILED",
                "CODE_UNAVAILABLE".to_owned(),
                "the sealed code is gone; issue the code again".to_owned(),
                None,
            ));
        };
        let plain = self
            .state
            .code_keys
            .open(sealed, &outbox::seal_context(intent.id))
            .map_err(|e| latchkey::error::ApiError::internal(e.to_string()))?;
        {
            let mut conn = self.state.pool.get().await?;
            outbox::set_door_state(
                &mut conn,
                door.code_id,
                door.door_id,
                "SETTING",
                "",
                "",
                None,
            )
            .await?;
        }
        let tenant = intent.tenant_id.as_str();
        let answer = self
            .state
            .gateway
            .create_passcode(
                tenant,
                account,
                lock,
                &plain,
                &passcode_name(code.id),
                lock_window(code),
                &Self::request_id(intent),
            )
            .await;
        drop(plain);
        Ok(match answer {
            PasscodeAnswer::Answered(result) if result.reason == REQUEST_ID_REUSED => sent_again(),
            PasscodeAnswer::Answered(result) => self.after_set(intent, door, result).await,
            // Nothing reached lock-gateway: the same request id is simply sent again.
            PasscodeAnswer::Lost(lost) if !lost.maybe_sent => Settle::Retry {
                after: backoff(intent.attempts),
                next_generation: false,
                reason: lost.reason.to_owned(),
                error: lost.detail.to_owned(),
            },
            PasscodeAnswer::Lost(lost) => {
                let why = lost.detail.to_owned();
                self.resolve_set(intent, door, lost.reason, why).await
            }
            PasscodeAnswer::Refused(error) => {
                Settle::Done("FAILED", "REFUSED".to_owned(), error, None)
            }
        })
    }

    async fn after_set(&self, intent: &Intent, door: &CodeDoor, result: PasscodeResult) -> Settle {
        match result.outcome() {
            // The first call with this request id is still running (a worker that died
            // mid-call): its answer is worth waiting for.
            PasscodeOutcome::Unconfirmed if result.reason == "IN_FLIGHT" => Settle::Retry {
                after: DEFER,
                next_generation: false,
                reason: String::new(),
                error: "an earlier write is still running; asking again".to_owned(),
            },
            PasscodeOutcome::Done => Settle::Done(
                "SET",
                String::new(),
                String::new(),
                Some(result.passcode_id),
            ),
            PasscodeOutcome::Unconfirmed => {
                let why = format!("ambiguous write: {}", result.detail);
                self.resolve_set(intent, door, "AMBIGUOUS", why).await
            }
            _ if result.reason == "DUPLICATE" => {
                // Our own earlier write may be what the lock found.
                match passcodes_on_lock(&self.state, &intent.tenant_id, door).await {
                    Ok(list) => match ours(&list, door.code_id, None) {
                        Some(id) => Settle::Done(
                            "SET",
                            String::new(),
                            "found on the lock".to_owned(),
                            Some(id),
                        ),
                        None => Settle::Done(
                            "FAILED",
                            "DUPLICATE_ON_LOCK".to_owned(),
                            "the lock already holds this code under another name".to_owned(),
                            None,
                        ),
                    },
                    Err(error) => Settle::Retry {
                        after: backoff(intent.attempts),
                        next_generation: true,
                        reason: String::new(),
                        error,
                    },
                }
            }
            _ if result.retryable => Settle::Retry {
                after: backoff(intent.attempts),
                next_generation: true,
                reason: failure_reason(&result.reason),
                error: format!("{}: {}", result.reason, result.detail),
            },
            _ => Settle::Done(
                "FAILED",
                failure_reason(&result.reason),
                result.detail,
                None,
            ),
        }
    }

    /// A write without a definite answer: the lock's passcode list says whether it
    /// happened. Absent, it is written again under a new request id.
    /// Settles a write whose result is not known by reading the lock.
    async fn resolve_set(
        &self,
        intent: &Intent,
        door: &CodeDoor,
        reason: &str,
        why: String,
    ) -> Settle {
        match passcodes_on_lock(&self.state, &intent.tenant_id, door).await {
            Ok(list) => match ours(&list, door.code_id, None) {
                Some(id) => Settle::Done(
                    "SET",
                    String::new(),
                    "confirmed by reading the lock".to_owned(),
                    Some(id),
                ),
                None => Settle::Retry {
                    after: backoff(1),
                    next_generation: true,
                    reason: reason.to_owned(),
                    error: format!("{why}; not on the lock, written again"),
                },
            },
            // Not even the list can be read: ask again later, same request id.
            Err(error) => {
                tracing::warn!(%error, "the lock's passcodes could not be read");
                Settle::Retry {
                    after: backoff(intent.attempts),
                    next_generation: false,
                    reason: reason.to_owned(),
                    error: format!("{why}; the lock's passcodes could not be read"),
                }
            }
        }
    }

    async fn change(&self, intent: &Intent, code: &CodeWindow, door: &CodeDoor) -> Settle {
        if door.sync_state != "SET" {
            // Not on the lock yet: the pending write carries the new window itself.
            if matches!(door.sync_state.as_str(), "PENDING" | "SETTING") {
                return Settle::Retry {
                    after: DEFER,
                    next_generation: false,
                    reason: String::new(),
                    error: "waiting for the code to be set".to_owned(),
                };
            }
            return Settle::Done(
                door_state(door),
                door.failure_reason.clone(),
                "nothing to change".to_owned(),
                door.lock_passcode_id,
            );
        }
        let (Some(account), Some(lock), Some(passcode)) =
            (door.account_id, door.lock_id, door.lock_passcode_id)
        else {
            return Settle::Done(
                door_state(door),
                String::new(),
                "nothing to change".to_owned(),
                door.lock_passcode_id,
            );
        };
        let Some(window) = lock_window(code) else {
            return Settle::Done(
                "SET",
                String::new(),
                "permanent; no window to move".to_owned(),
                Some(passcode),
            );
        };
        let answer = self
            .state
            .gateway
            .change_passcode_window(
                &intent.tenant_id,
                account,
                lock,
                passcode,
                window,
                &Self::request_id(intent),
            )
            .await;
        match answer {
            PasscodeAnswer::Answered(result) if result.reason == REQUEST_ID_REUSED => sent_again(),
            PasscodeAnswer::Answered(result) if result.outcome() == PasscodeOutcome::Done => {
                Settle::Done(
                    "SET",
                    String::new(),
                    "window moved".to_owned(),
                    Some(passcode),
                )
            }
            PasscodeAnswer::Answered(result) if result.retryable => Settle::Retry {
                after: backoff(intent.attempts),
                next_generation: true,
                reason: failure_reason(&result.reason),
                error: format!("{}: {}", result.reason, result.detail),
            },
            PasscodeAnswer::Answered(result)
                if result.outcome() == PasscodeOutcome::Unconfirmed =>
            {
                // A window change is safe to repeat: ask again under a new id.
                Settle::Retry {
                    after: backoff(1),
                    next_generation: true,
                    reason: String::new(),
                    error: format!("ambiguous change: {}", result.detail),
                }
            }
            PasscodeAnswer::Answered(result) => Settle::Done(
                "FAILED",
                failure_reason(&result.reason),
                format!("the window could not be moved: {}", result.detail),
                Some(passcode),
            ),
            PasscodeAnswer::Lost(lost) => Settle::Retry {
                after: backoff(intent.attempts),
                next_generation: false,
                reason: lost.reason.to_owned(),
                error: lost.detail.to_owned(),
            },
            PasscodeAnswer::Refused(error) => {
                Settle::Done("FAILED", "REFUSED".to_owned(), error, Some(passcode))
            }
        }
    }

    async fn remove(&self, intent: &Intent, door: &CodeDoor) -> Settle {
        let (Some(account), Some(lock)) = (door.account_id, door.lock_id) else {
            return Settle::Done("REMOVED", String::new(), String::new(), None);
        };
        let passcode = match door.lock_passcode_id {
            Some(id) => id,
            None => match passcodes_on_lock(&self.state, &intent.tenant_id, door).await {
                Ok(list) => match ours(&list, door.code_id, None) {
                    Some(id) => id,
                    None if self.set_in_flight(door).await => {
                        return Settle::Retry {
                            after: DEFER,
                            next_generation: false,
                            reason: String::new(),
                            error: "waiting for a write in flight before removing".to_owned(),
                        };
                    }
                    None => {
                        if let Some(later) = self.after_orphaned_write(door).await {
                            return later;
                        }
                        return Settle::Done(
                            "REMOVED",
                            String::new(),
                            "not on the lock".to_owned(),
                            None,
                        );
                    }
                },
                Err(error) => {
                    return Settle::Retry {
                        after: backoff(intent.attempts),
                        next_generation: false,
                        reason: String::new(),
                        error,
                    };
                }
            },
        };
        let answer = self
            .state
            .gateway
            .delete_passcode(
                &intent.tenant_id,
                account,
                lock,
                passcode,
                &Self::request_id(intent),
            )
            .await;
        match answer {
            PasscodeAnswer::Answered(result) if result.reason == REQUEST_ID_REUSED => sent_again(),
            PasscodeAnswer::Answered(result) if result.outcome() == PasscodeOutcome::Done => {
                Settle::Done("REMOVED", String::new(), String::new(), Some(passcode))
            }
            PasscodeAnswer::Answered(result)
                if result.outcome() == PasscodeOutcome::Unconfirmed =>
            {
                match passcodes_on_lock(&self.state, &intent.tenant_id, door).await {
                    Ok(list) if ours(&list, door.code_id, Some(passcode)).is_none() => {
                        Settle::Done(
                            "REMOVED",
                            String::new(),
                            "confirmed by reading the lock".to_owned(),
                            Some(passcode),
                        )
                    }
                    _ => Settle::Retry {
                        after: backoff(1),
                        next_generation: true,
                        reason: String::new(),
                        error: format!("ambiguous removal: {}", result.detail),
                    },
                }
            }
            PasscodeAnswer::Answered(result) if result.retryable => Settle::Retry {
                after: backoff(intent.attempts),
                next_generation: true,
                reason: failure_reason(&result.reason),
                error: format!("{}: {}", result.reason, result.detail),
            },
            PasscodeAnswer::Answered(result) => Settle::Done(
                "FAILED",
                failure_reason(&result.reason),
                format!("could not be removed from the lock: {}", result.detail),
                Some(passcode),
            ),
            PasscodeAnswer::Lost(lost) => Settle::Retry {
                after: backoff(intent.attempts),
                next_generation: false,
                reason: lost.reason.to_owned(),
                error: lost.detail.to_owned(),
            },
            PasscodeAnswer::Refused(error) => {
                Settle::Done("FAILED", "REFUSED".to_owned(), error, Some(passcode))
            }
        }
    }

    /// A write revoked while its replica stopped was never reported: lock-gateway may
    /// still carry it out after this removal found nothing. The removal looks again once
    /// lock-gateway's deadline for that write has surely passed; the orphan is let go so
    /// the next look settles.
    async fn after_orphaned_write(&self, door: &CodeDoor) -> Option<Settle> {
        let orphans = async {
            let mut conn = self.state.pool.get().await.ok()?;
            let orphans = outbox::orphaned_sets(&mut conn, door.code_id, door.door_id)
                .await
                .ok()?;
            for id in &orphans {
                let note = "its replica stopped before it answered; the removal looks again";
                outbox::release_closed(&mut conn, *id, note).await.ok()?;
            }
            Some(orphans.len())
        }
        .await;
        match orphans {
            Some(0) => None,
            // Unknown: look again rather than settle on a guess.
            Some(_) | None => Some(Settle::Retry {
                after: chrono::Duration::from_std(self.state.gateway.timeout())
                    .unwrap_or(chrono::Duration::seconds(45))
                    + ORPHAN_MARGIN,
                next_generation: false,
                reason: String::new(),
                error: "a write revoked while its replica stopped may still reach the lock; \
                        looking again after lock-gateway's deadline"
                    .to_owned(),
            }),
        }
    }

    async fn set_in_flight(&self, door: &CodeDoor) -> bool {
        match self.state.pool.get().await {
            Ok(mut conn) => outbox::set_may_be_running(&mut conn, door.code_id, door.door_id)
                .await
                .unwrap_or(true),
            Err(_) => true,
        }
    }
}

fn door_state(door: &CodeDoor) -> &'static str {
    match door.sync_state.as_str() {
        "SET" => "SET",
        "FAILED" => "FAILED",
        "REMOVING" => "REMOVING",
        "REMOVED" => "REMOVED",
        "NOT_APPLICABLE" => "NOT_APPLICABLE",
        "SETTING" => "SETTING",
        _ => "PENDING",
    }
}

/// The outcome of an intent that a newer one closed while it ran. The door's state
/// belongs to the newer intent and is left alone, with one exception: a write that
/// reached the lock, or may yet, for a code that no longer stands. The removal may
/// already have looked and found nothing, so the code is removed again.
async fn superseded(
    conn: &mut diesel_async::AsyncPgConnection,
    intent: &Intent,
    current: &CodeDoor,
    settle: &Settle,
    now: DateTime<Utc>,
) -> diesel::QueryResult<bool> {
    let standing = outbox::code_window(conn, &intent.tenant_id, intent.code_id)
        .await?
        .is_some_and(|code| code.status == "ACTIVE");
    if intent.intent == "SET" && settle.may_have_written() && !standing {
        remove_again(
            conn,
            intent,
            settle.passcode().or(current.lock_passcode_id),
            now,
        )
        .await?;
        outbox::release_closed(
            conn,
            intent.id,
            "superseded; the write may have reached the lock after its removal, removed again",
        )
        .await?;
        tracing::info!("a superseded write may be on the lock; removing it again");
        return Ok(true);
    }
    let note = format!("superseded; outcome not recorded: {}", settle.describe());
    outbox::release_closed(conn, intent.id, &note).await?;
    tracing::info!(outcome = %settle.describe(), "outcome of a superseded intent not recorded");
    Ok(false)
}

/// A code that no longer stands is (or may be) on the lock: any removal under way is
/// replaced by a new one, which looks at the lock afresh.
async fn remove_again(
    conn: &mut diesel_async::AsyncPgConnection,
    intent: &Intent,
    passcode: Option<i64>,
    now: DateTime<Utc>,
) -> diesel::QueryResult<()> {
    outbox::close_open(
        conn,
        intent.code_id,
        intent.door_id,
        Some("REMOVE"),
        "superseded by a later removal",
    )
    .await?;
    outbox::set_door_state(
        conn,
        intent.code_id,
        intent.door_id,
        "REMOVING",
        "",
        "set after it was revoked",
        passcode,
    )
    .await?;
    outbox::insert_intent(
        conn,
        &Intent::new(
            &intent.tenant_id,
            intent.code_id,
            intent.door_id,
            "REMOVE",
            now,
        ),
    )
    .await
}

/// The row saying a code's window ended.
fn expired_entry(tenant: &str, code_id: Uuid) -> AuditEntry {
    let mut entry = AuditEntry::new(tenant, EXPIRY_ACTOR, AuditAction::AdminUpdate, true);
    entry.target_type = "access_code".to_owned();
    entry.target_id = code_id.to_string();
    entry.reason_code = "CODE_EXPIRED".to_owned();
    entry.reason = "the code's window ended; it leaves its locks".to_owned();
    entry.metadata = serde_json::json!({ "status": "EXPIRED" }).to_string();
    entry
}

/// The actor of the rows the expiry sweep appends.
pub const EXPIRY_ACTOR: &str = "code-expiry";

/// Expires codes whose end has passed (each leaves its locks) and erases the sealed
/// copies of codes that no longer stand. Replicas skip codes another is expiring.
pub async fn sweep(state: &AppState) -> Result<usize> {
    let now = state.clock.now();
    let mut conn = state.pool.get().await?;
    let expired = conn
        .transaction(async |conn| {
            let due = outbox::expired_for_update(conn, now, 200).await?;
            let mut rows = Vec::with_capacity(due.len());
            for code in &due {
                outbox::mark_expired(conn, code.id, now).await?;
                super::intents::on_revoke(conn, &code.tenant_id, code.id, now).await?;
                rows.push(expired_entry(&code.tenant_id, code.id));
            }
            crate::audit::store::append(conn, rows, BurstRule::default()).await?;
            outbox::erase_inactive_sealed(conn).await?;
            Ok::<_, diesel::result::Error>(due.len())
        })
        .await?;
    if expired > 0 {
        tracing::info!(expired, "expired codes queued for removal");
    }
    Ok(expired)
}

/// Runs due intents and sweeps, woken by new intents and otherwise every `poll`, until
/// shutdown.
pub fn spawn(
    state: AppState,
    concurrency: usize,
    poll: Duration,
    lease_secs: u32,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        async move {
            let worker = Worker::new(state.clone(), lease_secs);
            loop {
                if let Err(error) = sweep(&state).await {
                    tracing::warn!(?error, "expiry sweep failed");
                }
                if let Err(error) = worker.run_due(concurrency).await {
                    tracing::warn!(?error, "provisioning pass failed");
                }
                tokio::select! {
                    () = state.provisioning_wake.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
        .instrument(tracing::info_span!("provisioning")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        for _ in 0..50 {
            let first = backoff(1).num_milliseconds();
            assert!((1500..=2500).contains(&first), "{first}");
            let fourth = backoff(4).num_milliseconds();
            assert!((12_000..=20_000).contains(&fourth), "{fourth}");
            let late = backoff(40).num_milliseconds();
            assert!((450_000..=750_000).contains(&late), "{late}");
        }
    }

    #[test]
    fn the_lock_holds_the_overall_window_of_timed_codes() {
        let start = Utc::now();
        let end = start + chrono::Duration::days(2);
        let code = |kind: &str, start, end| CodeWindow {
            id: Uuid::nil(),
            tenant_id: "t".into(),
            status: "ACTIVE".into(),
            code_type: kind.into(),
            start_time: start,
            end_time: end,
        };
        assert_eq!(lock_window(&code("PERMANENT", None, None)), None);
        assert_eq!(
            lock_window(&code("TEMPORARY", Some(start), Some(end))),
            Some((start, end))
        );
        assert_eq!(
            lock_window(&code("RECURRING", Some(start), Some(end))),
            Some((start, end))
        );
    }
}
