//! Custom passcodes written onto locks through their gateways, and what the locks hold
//! and recorded.
//!
//! Writes are idempotent by request id: the id is claimed in `passcode_operations`
//! with the request's fingerprint before TTLock is asked, so the same request again
//! replays the first outcome and never writes again, and another request under that id
//! is refused; an ambiguous end is recorded as unconfirmed and never retried. The code
//! lives only in the request and in the one TTLock call: nothing stores, logs or traces
//! it (the fingerprint is a keyed digest).

mod input;
mod outcome;
mod reads;

use std::time::Instant;

use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use prost_types::Timestamp;
use uuid::Uuid;

use diesel_async::AsyncConnection;

use crate::db::events;
use crate::db::passcode_operations::{self, Finish, NewClaim};
use crate::error::Result;
use crate::events::{Event, Kind, Source};
use crate::fingerprint::Fingerprint;
use crate::state::AppState;
use crate::ttlock::{PasscodeChange, PasscodeText, TtlockClient, Validity};

pub use outcome::{Outcome, WriteResult};
pub use reads::{DEFAULT_RECORDS_WINDOW, list_passcodes, list_records};

/// A passcode to write, as the caller gave it.
#[derive(Debug)]
pub struct NewPasscode {
    pub account_id: String,
    pub lock_id: i64,
    pub code: PasscodeText,
    pub name: String,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    pub request_id: String,
}

/// A change to a passcode; empty fields and an absent window keep what is there.
#[derive(Debug)]
pub struct PasscodeUpdate {
    pub account_id: String,
    pub lock_id: i64,
    pub passcode_id: i64,
    pub new_code: PasscodeText,
    pub name: String,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    pub request_id: String,
}

#[derive(Debug)]
pub struct PasscodeRemoval {
    pub account_id: String,
    pub lock_id: i64,
    pub passcode_id: i64,
    pub request_id: String,
}

/// One write, validated. `Debug` shows no code: [`PasscodeText`] hides it.
#[derive(Debug)]
enum Write {
    Create {
        code: PasscodeText,
        name: Option<String>,
        validity: Validity,
    },
    Change {
        passcode_id: i64,
        change: PasscodeChange,
    },
    Delete {
        passcode_id: i64,
    },
}

impl Write {
    fn operation(&self) -> &'static str {
        match self {
            Self::Create { .. } => "CREATE",
            Self::Change { .. } => "CHANGE",
            Self::Delete { .. } => "DELETE",
        }
    }

    /// The passcode concerned, when known before TTLock answers.
    fn passcode_id(&self) -> Option<i64> {
        match self {
            Self::Create { .. } => None,
            Self::Change { passcode_id, .. } | Self::Delete { passcode_id } => Some(*passcode_id),
        }
    }

    /// The code this write sends, so it can be kept out of what is recorded.
    fn code(&self) -> Option<&str> {
        match self {
            Self::Create { code, .. } => Some(code.expose()),
            Self::Change { change, .. } => change.new_code.as_ref().map(PasscodeText::expose),
            Self::Delete { .. } => None,
        }
    }

    /// Everything this write asks of TTLock, to tell a retry from a reused request id.
    fn fingerprint(&self, target: &Target) -> Fingerprint {
        let request = Fingerprint::of(self.operation())
            .text("account_id", &target.account.to_string())
            .int("lock_id", target.lock_id);
        match self {
            Self::Create {
                code,
                name,
                validity,
            } => {
                let window = match *validity {
                    Validity::Permanent => None,
                    Validity::Period { start_ms, end_ms } => Some((start_ms, end_ms)),
                };
                request
                    .text("code", code.expose())
                    .maybe_text("name", name.as_deref())
                    .window(window)
            }
            Self::Change {
                passcode_id,
                change,
            } => request
                .int("passcode_id", *passcode_id)
                .maybe_text(
                    "new_code",
                    change.new_code.as_ref().map(PasscodeText::expose),
                )
                .maybe_text("name", change.name.as_deref())
                .window(change.period),
            Self::Delete { passcode_id } => request.int("passcode_id", *passcode_id),
        }
    }

    /// Sends the write; returns the passcode's id.
    async fn send(&self, client: &TtlockClient, lock_id: i64) -> crate::ttlock::error::Result<i64> {
        match self {
            Self::Create {
                code,
                name,
                validity,
            } => {
                client
                    .add_passcode(lock_id, code, name.as_deref(), *validity)
                    .await
            }
            Self::Change {
                passcode_id,
                change,
            } => client
                .change_passcode(lock_id, *passcode_id, change.clone())
                .await
                .map(|()| *passcode_id),
            Self::Delete { passcode_id } => client
                .delete_passcode(lock_id, *passcode_id)
                .await
                .map(|()| *passcode_id),
        }
    }
}

/// Where a write goes and under which request id.
#[derive(Debug, Clone)]
struct Target {
    account: Uuid,
    lock_id: i64,
    request_id: String,
}

fn target(
    account_id: &str,
    lock_id: i64,
    request_id: &str,
    violations: &mut FieldViolations,
) -> Target {
    let account = input::account(account_id, violations);
    input::lock_id(lock_id, violations);
    input::request_id(request_id, violations);
    Target {
        account,
        lock_id,
        request_id: request_id.to_owned(),
    }
}

pub async fn create(state: &AppState, caller: &Caller, new: NewPasscode) -> Result<WriteResult> {
    let mut violations = FieldViolations::default();
    let target = target(
        &new.account_id,
        new.lock_id,
        &new.request_id,
        &mut violations,
    );
    input::code("code", &new.code, &mut violations);
    input::name(&new.name, &mut violations);
    let window = input::window(
        new.start_time.as_ref(),
        new.end_time.as_ref(),
        &mut violations,
    );
    violations.check()?;
    let validity = match window {
        Some((start_ms, end_ms)) => Validity::Period { start_ms, end_ms },
        None => Validity::Permanent,
    };
    let write = Write::Create {
        code: new.code,
        name: (!new.name.is_empty()).then_some(new.name),
        validity,
    };
    run(state, caller, target, write).await
}

pub async fn change(
    state: &AppState,
    caller: &Caller,
    update: PasscodeUpdate,
) -> Result<WriteResult> {
    let mut violations = FieldViolations::default();
    let target = target(
        &update.account_id,
        update.lock_id,
        &update.request_id,
        &mut violations,
    );
    input::passcode_id(update.passcode_id, &mut violations);
    if !update.new_code.is_empty() {
        input::code("new_code", &update.new_code, &mut violations);
    }
    input::name(&update.name, &mut violations);
    let period = input::window(
        update.start_time.as_ref(),
        update.end_time.as_ref(),
        &mut violations,
    );
    let windowed = update.start_time.is_some() || update.end_time.is_some();
    if update.new_code.is_empty() && update.name.is_empty() && !windowed {
        violations.add(
            "new_code",
            "a change needs a new code, a new name or a new window",
        );
    }
    violations.check()?;
    let change = PasscodeChange {
        new_code: (!update.new_code.is_empty()).then_some(update.new_code),
        name: (!update.name.is_empty()).then_some(update.name),
        period,
    };
    let write = Write::Change {
        passcode_id: update.passcode_id,
        change,
    };
    run(state, caller, target, write).await
}

pub async fn delete(
    state: &AppState,
    caller: &Caller,
    removal: PasscodeRemoval,
) -> Result<WriteResult> {
    let mut violations = FieldViolations::default();
    let target = target(
        &removal.account_id,
        removal.lock_id,
        &removal.request_id,
        &mut violations,
    );
    input::passcode_id(removal.passcode_id, &mut violations);
    violations.check()?;
    let write = Write::Delete {
        passcode_id: removal.passcode_id,
    };
    run(state, caller, target, write).await
}

/// Claims the request id, then sends the write once and records how it ended.
async fn run(
    state: &AppState,
    caller: &Caller,
    target: Target,
    write: Write,
) -> Result<WriteResult> {
    let client = state
        .accounts
        .client(&state.pool, &caller.tenant_id, target.account)
        .await?;
    let fingerprint = write.fingerprint(&target).digest(state.accounts.sealer());
    {
        let mut conn = state.pool.get().await?;
        let claim = NewClaim {
            tenant_id: &caller.tenant_id,
            request_id: &target.request_id,
            operation: write.operation(),
            account_id: target.account,
            lock_id: target.lock_id,
            passcode_id: write.passcode_id(),
            request_fingerprint: &fingerprint,
        };
        if let Err(earlier) = passcode_operations::claim(&mut conn, &claim).await? {
            let same = earlier.made_by(&claim);
            let result = WriteResult::replay(earlier, same, state.remote_timeout);
            log(write.operation(), target.lock_id, &result);
            return Ok(result);
        }
    }
    // The call and its record run to the end even if the caller goes away, so a retry
    // of this request id learns the real outcome instead of an unfinished claim.
    let state = state.clone();
    let tenant_id = caller.tenant_id.clone();
    latchkey::telemetry::spawn_in_span(async move {
        let started = Instant::now();
        let sent = write.send(&client, target.lock_id).await;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let result = match &sent {
            Ok(passcode_id) => WriteResult::done(*passcode_id, latency_ms),
            Err(error) => WriteResult::from_error(
                error,
                write.passcode_id().unwrap_or(0),
                latency_ms,
                write.code(),
            ),
        };
        log(write.operation(), target.lock_id, &result);
        let event = device_event(&write, &target, &result);
        let mut conn = state.pool.get().await?;
        conn.transaction(async |conn| {
            passcode_operations::finish(
                conn,
                &tenant_id,
                &target.request_id,
                &Finish {
                    passcode_id: (result.passcode_id > 0).then_some(result.passcode_id),
                    outcome: result.outcome.as_str(),
                    errcode: result.errcode,
                    reason: &result.reason,
                    retryable: result.retryable,
                    detail: &result.detail,
                    latency_ms: result.latency_ms,
                },
            )
            .await?;
            // The outcome and its event commit together: watchers learn of every
            // recorded write exactly once.
            events::append(
                conn,
                &tenant_id,
                event.into_iter().map(Event::row).collect(),
            )
            .await?;
            Ok::<_, diesel::result::Error>(())
        })
        .await?;
        Ok(result)
    })
    .await
    .map_err(|e| ApiError::internal(format!("passcode write task: {e}")))?
}

/// The device event a finished write stands for; none while its end is unknown.
fn device_event(write: &Write, target: &Target, result: &WriteResult) -> Option<Event> {
    let kind = match (result.outcome, write.operation()) {
        (Outcome::Done, "DELETE") => Kind::PasscodeRemoved,
        (Outcome::Done, _) => Kind::PasscodeSet,
        (Outcome::Failed, _) => Kind::PasscodeFailed,
        (Outcome::Unconfirmed, _) => return None,
    };
    let mut event = Event::new(target.account, target.lock_id, kind, Source::Operation);
    event.success = result.outcome == Outcome::Done;
    event.passcode_id = result.passcode_id;
    event.credential = write.code().map(crate::records::mask).unwrap_or_default();
    event.detail = if result.reason.is_empty() {
        write.operation().to_owned()
    } else {
        format!("{} {}", write.operation(), result.reason)
    };
    Some(event)
}

fn log(operation: &'static str, lock_id: i64, result: &WriteResult) {
    tracing::info!(
        operation,
        lock_id,
        passcode_id = result.passcode_id,
        outcome = result.outcome.as_str(),
        reason = %result.reason,
        errcode = result.errcode,
        latency_ms = result.latency_ms,
        replayed = result.replayed,
        "passcode write"
    );
}
