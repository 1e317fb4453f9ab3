//! Remote unlock and lock. The request id is claimed in the database, with the request's
//! fingerprint, before TTLock is asked, so the same request again replays the first
//! outcome and the door never moves twice, and another request under that id is refused;
//! an ambiguous end is recorded as unconfirmed and never retried.

use std::time::Instant;

use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use uuid::Uuid;

use crate::db::remote_operations;
use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::state::AppState;
use crate::ttlock::ErrorClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Unlock,
    Lock,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Unlock => "UNLOCK",
            Self::Lock => "LOCK",
        }
    }
}

/// What happened, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// "CONFIRMED", "FAILED" or "UNCONFIRMED".
    pub outcome: String,
    pub errcode: i32,
    pub latency_ms: i64,
    pub detail: String,
    pub replayed: bool,
}

pub async fn run(
    state: &AppState,
    caller: &Caller,
    operation: Operation,
    account_id: &str,
    lock_id: i64,
    request_id: &str,
) -> Result<Outcome> {
    let mut violations = FieldViolations::default();
    let account = Uuid::try_parse(account_id).unwrap_or_else(|_| {
        violations.add("account_id", "must be an account id (UUID)");
        Uuid::nil()
    });
    if lock_id <= 0 {
        violations.add("lock_id", "must be a TTLock lock id");
    }
    if request_id.is_empty() {
        violations.add(
            "request_id",
            "is required, so a retried call never actuates twice",
        );
    }
    latchkey::pagination::request_id(request_id, &mut violations);
    violations.check()?;

    let client = state
        .accounts
        .client(&state.pool, &caller.tenant_id, account)
        .await?;
    let fingerprint = Fingerprint::of(operation.as_str())
        .text("account_id", &account.to_string())
        .int("lock_id", lock_id)
        .digest(state.accounts.sealer());
    {
        let mut conn = state.pool.get().await?;
        if let Err(earlier) = remote_operations::claim(
            &mut conn,
            &caller.tenant_id,
            request_id,
            operation.as_str(),
            account,
            lock_id,
            &fingerprint,
        )
        .await?
        {
            // Claims made before fingerprints were kept are compared by their columns.
            let same = earlier.request_fingerprint.as_ref().map_or_else(
                || {
                    earlier.operation == operation.as_str()
                        && earlier.account_id == account
                        && earlier.lock_id == lock_id
                },
                |earlier| *earlier == fingerprint,
            );
            if !same {
                return Err(ApiError::AlreadyExists {
                    reason: "REQUEST_ID_REUSED",
                    message: "this request id was first used for another request (operation, \
                              account or lock); nothing was sent"
                        .to_owned(),
                }
                .into());
            }
            return Ok(match earlier.outcome {
                Some(outcome) => Outcome {
                    outcome,
                    errcode: earlier.errcode,
                    latency_ms: earlier.latency_ms,
                    detail: earlier.detail,
                    replayed: true,
                },
                None => Outcome {
                    outcome: "UNCONFIRMED".to_owned(),
                    errcode: 0,
                    latency_ms: 0,
                    detail: "an earlier call with this request id is running or ended without an answer; not repeated".to_owned(),
                    replayed: true,
                },
            });
        }
    }
    let started = Instant::now();
    let result = match operation {
        Operation::Unlock => client.unlock(lock_id).await,
        Operation::Lock => client.lock(lock_id).await,
    };
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (outcome, errcode, detail) = match &result {
        Ok(()) => ("CONFIRMED", 0, String::new()),
        Err(error) => {
            let errcode = error.code().map_or(0, |code| code.code());
            let outcome = if error.class() == ErrorClass::UnsafeToRetry {
                "UNCONFIRMED"
            } else {
                "FAILED"
            };
            (outcome, errcode, error.to_string())
        }
    };
    tracing::info!(
        operation = operation.as_str(),
        lock_id,
        outcome,
        errcode,
        latency_ms,
        "remote operation"
    );
    let mut conn = state.pool.get().await?;
    remote_operations::finish(
        &mut conn,
        &caller.tenant_id,
        request_id,
        outcome,
        errcode,
        latency_ms,
        &detail,
    )
    .await?;
    Ok(Outcome {
        outcome: outcome.to_owned(),
        errcode,
        latency_ms,
        detail,
        replayed: false,
    })
}
