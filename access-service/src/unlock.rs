//! Unlocks: UnlockDoor (a decision, then the lock) and EmergencyUnlock (an
//! administrator's order, then the lock).
//!
//! A request id is claimed before anything is decided. A repeat of the same request
//! answers what the first call answered and records nothing new; the same id with a
//! different request is refused (`REQUEST_ID_REUSED`). Only an actuation that may have
//! reached the lock has an outcome row: a denied decision, a door without a lock and a
//! lock-gateway that could not be reached send nothing, so they record nothing after the
//! decision (and the last gives the request id back, answering `UNAVAILABLE`). The call
//! to lock-gateway and the outcome row run in a task of their own, so a caller that
//! gives up does not leave a door that may have opened without its row; at shutdown,
//! actuations still running past the grace are recorded as unconfirmed
//! ([`crate::actuations::Actuations::abandon_all`]).

use latchkey::auth::{Caller, roles};
use latchkey::error::{ApiError, FieldViolations};
use serde_json::json;
use uuid::Uuid;

use crate::access::{self, Attempt, Decided};
use crate::actuations::{ABANDONED, UnlockResult, settle_entry, store_answer};
use crate::audit::chain::truncate_to_micros;
use crate::audit::{AuditAction, AuditEntry};
use crate::db::unlock_requests;
use crate::decision::{CHECK_DOOR, Outcome, Reason, Step};
use crate::error::Result;
use crate::gateway::Actuation;
use crate::snapshot::DoorEntry;
use crate::state::AppState;

/// An unlock's answer.
#[derive(Debug, Clone)]
pub struct UnlockAnswer {
    pub decided: Decided,
    pub audit_sequence: i64,
    pub result: UnlockResult,
    pub detail: String,
    /// The outcome row's sequence; 0 when nothing was sent to the lock.
    pub outcome_audit_sequence: i64,
}

/// Encodes an answer as the API returns it, so a repeated request gets it back.
pub type Encode = fn(&UnlockAnswer) -> Vec<u8>;

/// An unlock's answer, or the encoded answer of the first call with its request id.
#[derive(Debug)]
pub enum Answered {
    Now(UnlockAnswer),
    Replayed(Vec<u8>),
}

const OP_UNLOCK: &str = "UNLOCK";
const OP_EMERGENCY: &str = "EMERGENCY_UNLOCK";
const MAX_EMERGENCY_REASON_LEN: usize = 500;

/// What identifies a request: every field that shapes what it does, each
/// length-prefixed, under the keyed digest creates use too.
fn fingerprint(state: &AppState, operation: &str, parts: &[&str]) -> Vec<u8> {
    let mut message = Vec::new();
    for part in parts {
        message.extend_from_slice(&(part.len() as u64).to_be_bytes());
        message.extend_from_slice(part.as_bytes());
    }
    state.code_keys.request_fingerprint(operation, &message)
}

/// Claims the request id; `Some` with the first call's answer when it was made before.
async fn claim(
    state: &AppState,
    tenant: &str,
    request_id: &str,
    fingerprint: &[u8],
) -> Result<Option<Vec<u8>>> {
    let mut conn = state.pool.get().await?;
    let Some(first) = unlock_requests::claim(&mut conn, tenant, request_id, fingerprint).await?
    else {
        return Ok(None);
    };
    if first.fingerprint != fingerprint {
        return Err(ApiError::failed_precondition(
            "REQUEST_ID_REUSED",
            "this request id was first used for a different request",
        )
        .into());
    }
    match first.response {
        Some(response) => Ok(Some(response)),
        None => Err(ApiError::Aborted {
            reason: "REQUEST_IN_PROGRESS",
            message: "the first request with this id is still being decided; ask again".to_owned(),
        }
        .into()),
    }
}

/// Gives the request id back; a failure here only means a retry is told to wait.
async fn release(state: &AppState, tenant: &str, request_id: &str) {
    let released = async {
        let mut conn = state.pool.get().await?;
        unlock_requests::release(&mut conn, tenant, request_id).await?;
        Ok::<_, crate::error::Error>(())
    }
    .await;
    if let Err(error) = released {
        tracing::warn!(?error, "an unlock request id could not be given back");
    }
}

/// UnlockDoor: the decision is recorded first; only a granted decision on a door with a
/// lock reaches lock-gateway, with the caller's request id, and its outcome is recorded
/// after.
pub async fn unlock(
    state: &AppState,
    caller: &Caller,
    attempt: Attempt,
    encode: Encode,
) -> Result<Answered> {
    access::check_unlock_attempt(&attempt)?;
    let tenant = caller.tenant_id.as_str();
    let request_id = attempt.request_id.clone();
    let print = fingerprint(
        state,
        OP_UNLOCK,
        &[
            &caller.user_id,
            &attempt.door_id,
            &attempt.user_id,
            &attempt.client_ip,
        ],
    );
    if let Some(first) = claim(state, tenant, &request_id, &print).await? {
        return Ok(Answered::Replayed(first));
    }
    let (decided, sequence) = match access::check(state, caller, attempt.clone(), true).await {
        Ok(decided) => decided,
        Err(error) => {
            release(state, tenant, &request_id).await;
            return Err(error);
        }
    };
    let settled = |decided: Decided, result, detail: &str| UnlockAnswer {
        decided,
        audit_sequence: sequence,
        result,
        detail: detail.to_owned(),
        outcome_audit_sequence: 0,
    };
    let door = decided.door.clone();
    let answer = match (decided.outcome.granted, door) {
        (false, _) => settled(
            decided,
            UnlockResult::NotAttemptedDenied,
            "access denied; nothing was sent to the lock",
        ),
        (true, Some(door)) if door.lock.is_some() => {
            let mut outcome = outcome_entry(caller, &door, &attempt.door_id, &request_id);
            outcome.user_id = decided.user_id.map(|u| u.to_string()).unwrap_or_default();
            outcome.client_ip = attempt.client_ip.clone();
            outcome.metadata = json!({"decision_sequence": sequence}).to_string();
            let base = settled(decided, UnlockResult::Unconfirmed, "");
            return actuate(state, caller, door, base, outcome, encode).await;
        }
        (true, _) => settled(
            decided,
            UnlockResult::NoLock,
            "the door has no lock; the decision stands and nothing was actuated",
        ),
    };
    store_answer(&state.pool, tenant, &request_id, &encode(&answer), true).await;
    Ok(Answered::Now(answer))
}

/// The outcome row of an actuation, before its result is known.
fn outcome_entry(caller: &Caller, door: &DoorEntry, door_id: &str, request_id: &str) -> AuditEntry {
    let mut entry = AuditEntry::new(
        &caller.tenant_id,
        &caller.user_id,
        AuditAction::UnlockFailed,
        false,
    );
    entry.door_id = door_id.to_owned();
    entry.door_name = door.name.clone();
    entry.door_type = door.door_type.clone();
    entry.door_location = door.location.clone();
    entry.method = "REMOTE".to_owned();
    entry.request_id = request_id.to_owned();
    entry
}

/// Sends the unlock to lock-gateway and records its outcome, in a task the caller's
/// cancellation does not stop.
async fn actuate(
    state: &AppState,
    caller: &Caller,
    door: DoorEntry,
    base: UnlockAnswer,
    outcome: AuditEntry,
    encode: Encode,
) -> Result<Answered> {
    let Some((account, lock_id)) = door.lock else {
        return Err(ApiError::internal("an actuation of a door without a lock").into());
    };
    let tenant = caller.tenant_id.clone();
    let request_id = outcome.request_id.clone();
    // A repeat while the lock is being asked gets the decision, outcome not yet known.
    let pending = UnlockAnswer {
        detail: "the unlock was sent; its outcome is not known yet".to_owned(),
        ..base.clone()
    };
    store_answer(&state.pool, &tenant, &request_id, &encode(&pending), false).await;
    let registration = state.actuations.begin(
        outcome.clone(),
        Box::new(move |sequence| {
            encode(&UnlockAnswer {
                detail: ABANDONED.to_owned(),
                outcome_audit_sequence: sequence,
                ..pending
            })
        }),
    );
    let state = state.clone();
    let task = tokio::spawn(async move {
        let actuation = state
            .gateway
            .remote_unlock(&tenant, account, lock_id, &request_id)
            .await;
        let (result, detail) = match actuation {
            Actuation::NoAnswer(lost) if !lost.maybe_sent => {
                registration.cancel();
                release(&state, &tenant, &request_id).await;
                return Err(ApiError::unavailable(lost.reason, lost.detail).into());
            }
            Actuation::Confirmed(detail) => (UnlockResult::Unlocked, detail),
            Actuation::Refused { errcode, detail } => (
                UnlockResult::Failed,
                format!("the lock refused (errcode {errcode}): {detail}"),
            ),
            Actuation::Rejected(message) => (
                UnlockResult::Failed,
                format!("lock-gateway refused: {message}"),
            ),
            Actuation::Ambiguous(detail) => (
                UnlockResult::Unconfirmed,
                format!("the lock's answer was ambiguous; not retried: {detail}"),
            ),
            Actuation::NoAnswer(lost) => (
                UnlockResult::Unconfirmed,
                format!("{}; not retried", lost.detail),
            ),
        };
        if !registration.finish() {
            // Shutdown recorded it as unconfirmed already.
            return Err(
                ApiError::unavailable("SHUTTING_DOWN", "the service is shutting down").into(),
            );
        }
        let mut entry = outcome;
        settle_entry(&mut entry, result, &detail);
        let row = state.audit.append(entry).await?;
        let answer = UnlockAnswer {
            result,
            detail,
            outcome_audit_sequence: row.sequence,
            ..base
        };
        store_answer(&state.pool, &tenant, &request_id, &encode(&answer), true).await;
        Ok(Answered::Now(answer))
    });
    task.await
        .map_err(|error| ApiError::internal(format!("the unlock task ended: {error}")))?
}

/// An emergency unlock as asked.
#[derive(Debug, Default, Clone)]
pub struct EmergencyRequest {
    pub door_id: String,
    pub reason: String,
    pub request_id: String,
    pub client_ip: String,
}

/// An administrator opens a door outside the rules (and whether or not it is active):
/// the request and its reason are recorded first, then lock-gateway is asked with the
/// caller's request id, then the outcome is recorded.
pub async fn emergency_unlock(
    state: &AppState,
    caller: &Caller,
    request: EmergencyRequest,
    encode: Encode,
) -> Result<Answered> {
    if !caller.has_role(roles::ADMIN) {
        return Err(ApiError::PermissionDenied {
            reason: "ADMIN_ONLY",
            message: "only administrators may open a door in an emergency".to_owned(),
        }
        .into());
    }
    let mut violations = FieldViolations::default();
    let door_id = crate::directory::parse_id("door_id", &request.door_id, &mut violations);
    let reason = request.reason.trim();
    if reason.is_empty() {
        violations.add(
            "reason",
            "is required: why the door is opened outside the rules",
        );
    } else if reason.chars().count() > MAX_EMERGENCY_REASON_LEN {
        violations.add(
            "reason",
            format!("must be at most {MAX_EMERGENCY_REASON_LEN} characters"),
        );
    }
    access::check_request_id(&request.request_id, &mut violations);
    access::check_client_ip(&request.client_ip, &mut violations);
    violations.check()?;
    let tenant = caller.tenant_id.as_str();
    let snapshot = state.snapshots.get(tenant).await?;
    let Some(door) = snapshot.doors.get(&door_id).cloned() else {
        return Err(ApiError::not_found("door", &request.door_id).into());
    };
    let print = fingerprint(
        state,
        OP_EMERGENCY,
        &[
            &caller.user_id,
            &request.door_id,
            reason,
            &request.client_ip,
        ],
    );
    if let Some(first) = claim(state, tenant, &request.request_id, &print).await? {
        return Ok(Answered::Replayed(first));
    }
    let at = truncate_to_micros(state.clock.now());
    let mut entry = AuditEntry::new(tenant, &caller.user_id, AuditAction::EmergencyUnlock, true);
    entry.time = at;
    entry.door_id = door_id.to_string();
    entry.door_name = door.name.clone();
    entry.door_type = door.door_type.clone();
    entry.door_location = door.location.clone();
    entry.user_id = caller.user_id.clone();
    entry.method = "REMOTE".to_owned();
    entry.reason_code = Reason::Emergency.as_str().to_owned();
    entry.reason = reason.to_owned();
    entry.client_ip = request.client_ip.clone();
    entry.request_id = request.request_id.clone();
    entry.metadata = json!({
        "reason": reason,
        "door_active": door.view.active,
        "has_lock": door.lock.is_some(),
    })
    .to_string();
    // Committed before anything moves.
    let sequence = match state.audit.append(entry).await {
        Ok(row) => row.sequence,
        Err(error) => {
            release(state, tenant, &request.request_id).await;
            return Err(error.into());
        }
    };
    let decided = emergency_decision(at, door.clone());
    let base = UnlockAnswer {
        decided,
        audit_sequence: sequence,
        result: UnlockResult::NoLock,
        detail: "the door has no lock; nothing was actuated".to_owned(),
        outcome_audit_sequence: 0,
    };
    if door.lock.is_none() {
        store_answer(
            &state.pool,
            tenant,
            &request.request_id,
            &encode(&base),
            true,
        )
        .await;
        return Ok(Answered::Now(base));
    }
    let mut outcome = outcome_entry(caller, &door, &door_id.to_string(), &request.request_id);
    outcome.user_id = caller.user_id.clone();
    outcome.client_ip = request.client_ip;
    outcome.metadata = json!({"decision_sequence": sequence, "emergency": true}).to_string();
    actuate(state, caller, door, base, outcome, encode).await
}

fn emergency_decision(at: chrono::DateTime<chrono::Utc>, door: DoorEntry) -> Decided {
    Decided {
        outcome: Outcome {
            granted: true,
            reason: Reason::Emergency,
            message: Reason::Emergency.describe().to_owned(),
            rule: None,
            access_type: None,
            steps: vec![Step {
                check: CHECK_DOOR,
                passed: true,
                detail: "emergency: the rules and the active flag do not apply".to_owned(),
            }],
            valid_until: None,
        },
        at,
        time_zone: door.time_zone.clone(),
        door: Some(door),
        user_id: None::<Uuid>,
        access_code_id: None,
    }
}
