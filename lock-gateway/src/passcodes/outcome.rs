//! How a passcode write ended, in the stable terms callers switch on, and how TTLock
//! failures of reads become gRPC errors.

use latchkey::error::ApiError;

use crate::db::passcode_operations::Claim;
use crate::ttlock::{Error, ErrorClass, ErrorCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// TTLock confirmed the write.
    Done,
    /// TTLock refused; nothing changed on the lock.
    Failed,
    /// The write may or may not have reached the lock.
    Unconfirmed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "DONE",
            Self::Failed => "FAILED",
            Self::Unconfirmed => "UNCONFIRMED",
        }
    }

    /// A stored outcome; anything unknown is treated as the cautious answer.
    fn parse(value: &str) -> Self {
        match value {
            "DONE" => Self::Done,
            "FAILED" => Self::Failed,
            _ => Self::Unconfirmed,
        }
    }
}

/// What a write answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    pub outcome: Outcome,
    /// TTLock's keyboardPwdId: the new one for a create, 0 when not known.
    pub passcode_id: i64,
    pub errcode: i32,
    /// Empty on success; see [`failure`] for the rest.
    pub reason: String,
    pub retryable: bool,
    pub detail: String,
    pub latency_ms: i64,
    pub replayed: bool,
}

impl WriteResult {
    pub fn done(passcode_id: i64, latency_ms: i64) -> Self {
        Self {
            outcome: Outcome::Done,
            passcode_id,
            errcode: 0,
            reason: String::new(),
            retryable: false,
            detail: String::new(),
            latency_ms,
            replayed: false,
        }
    }

    /// A failed call, its detail cleared of `code` in case TTLock echoed it.
    pub fn from_error(
        error: &Error,
        passcode_id: i64,
        latency_ms: i64,
        code: Option<&str>,
    ) -> Self {
        let failure = failure(error);
        let mut detail = error.to_string();
        if let Some(code) = code.filter(|c| !c.is_empty()) {
            detail = detail.replace(code, "[passcode]");
        }
        Self {
            outcome: failure.outcome,
            passcode_id,
            errcode: failure.errcode,
            reason: failure.reason.to_owned(),
            retryable: failure.retryable,
            detail,
            latency_ms,
            replayed: false,
        }
    }

    /// The answer to a request id an earlier call claimed. `same` says whether the
    /// earlier call was this very request; if not, nothing is sent and it fails, without
    /// repeating anything of the earlier one.
    pub fn replay(earlier: Claim, same: bool, in_flight_for: chrono::Duration) -> Self {
        let passcode_id = earlier.passcode_id.unwrap_or(0);
        // A claim younger than the longest a TTLock write may take is most likely still
        // running: asking again soon gets its real answer.
        let running = earlier.create_time + in_flight_for > chrono::Utc::now();
        match (earlier.outcome, same) {
            (_, false) => Self {
                outcome: Outcome::Failed,
                passcode_id: 0,
                errcode: 0,
                reason: "REQUEST_ID_REUSED".to_owned(),
                retryable: false,
                detail: "this request id was first used for another request (operation, lock, \
                         passcode, code, name or window); nothing was sent"
                    .to_owned(),
                latency_ms: 0,
                replayed: false,
            },
            (Some(outcome), true) => Self {
                outcome: Outcome::parse(&outcome),
                passcode_id,
                errcode: earlier.errcode,
                reason: earlier.reason,
                retryable: earlier.retryable,
                detail: earlier.detail,
                latency_ms: earlier.latency_ms,
                replayed: true,
            },
            (None, true) if running => Self {
                outcome: Outcome::Unconfirmed,
                passcode_id: 0,
                errcode: 0,
                reason: "IN_FLIGHT".to_owned(),
                retryable: true,
                detail: "an earlier call with this request id is still running; ask again for its answer"
                    .to_owned(),
                latency_ms: 0,
                replayed: true,
            },
            (None, true) => Self {
                outcome: Outcome::Unconfirmed,
                passcode_id,
                errcode: 0,
                reason: "AMBIGUOUS".to_owned(),
                retryable: false,
                detail: "an earlier call with this request id is running or ended without an answer; not repeated"
                    .to_owned(),
                latency_ms: 0,
                replayed: true,
            },
        }
    }
}

/// A TTLock failure in stable terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub outcome: Outcome,
    pub errcode: i32,
    pub reason: &'static str,
    /// Sending the same write later may succeed.
    pub retryable: bool,
}

/// Classifies a failure. An ambiguous end of a write (errcode 1, timeout, a broken
/// answer) is unconfirmed and never called retryable: the code may be on the lock.
pub fn failure(error: &Error) -> Failure {
    use ErrorCode as C;
    let errcode = error.code().map_or(0, ErrorCode::code);
    if error.class() == ErrorClass::UnsafeToRetry {
        return Failure {
            outcome: Outcome::Unconfirmed,
            errcode,
            reason: "AMBIGUOUS",
            retryable: false,
        };
    }
    let (reason, retryable) = match error {
        Error::Api { code, .. } => match code {
            C::NoGateway => ("NO_GATEWAY", false),
            C::GatewayOffline | C::LockOffline => ("GATEWAY_OFFLINE", true),
            C::GatewayBusy | C::LockBusy => ("GATEWAY_BUSY", true),
            C::PasscodeExists => ("DUPLICATE", false),
            C::PasscodeNoSpace => ("LOCK_FULL", false),
            C::PasscodeTooSimple => ("TOO_SIMPLE", false),
            C::PasscodeInvalid => ("INVALID_CODE", false),
            C::Unsupported => ("UNSUPPORTED", false),
            C::LockNotFound => ("LOCK_NOT_FOUND", false),
            C::RateLimited => ("RATE_LIMITED", true),
            C::InternalServerError => ("TTLOCK_ERROR", true),
            // errcode 1 of a read, for one: worth another try.
            _ => ("TTLOCK_ERROR", error.class() == ErrorClass::Retryable),
        },
        // TTLock could not be reached or answered with an HTTP error.
        Error::Http { .. } | Error::Timeout | Error::Connect(_) | Error::Transport(_) => {
            ("TTLOCK_ERROR", true)
        }
        Error::NoTurn => ("GATEWAY_BUSY", true),
        Error::Coordination(_) => ("UNAVAILABLE", true),
        Error::Decode(_) | Error::Config(_) | Error::Unconfirmed { .. } => ("TTLOCK_ERROR", false),
    };
    Failure {
        outcome: Outcome::Failed,
        errcode,
        reason,
        retryable,
    }
}

/// A failed read as the caller's error: a lock TTLock does not know is NOT_FOUND, a
/// transient failure UNAVAILABLE, the rest FAILED_PRECONDITION, each with its reason.
pub fn read_error(error: &Error, lock_id: i64) -> ApiError {
    let failure = failure(error);
    if failure.reason == "LOCK_NOT_FOUND" {
        return ApiError::not_found("lock", lock_id.to_string());
    }
    let message = format!("TTLock could not answer: {error}");
    if failure.retryable {
        ApiError::unavailable(failure.reason, message)
    } else {
        ApiError::failed_precondition(failure.reason, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ttlock::Effect;

    fn write_failure(error: Error) -> (Outcome, &'static str, bool) {
        let f = failure(&error.for_effect(Effect::Actuating));
        (f.outcome, f.reason, f.retryable)
    }

    #[test]
    fn refusals_have_stable_reasons() {
        use Outcome::Failed;
        for (code, reason, retryable) in [
            (-2012, "NO_GATEWAY", false),
            (-3002, "GATEWAY_OFFLINE", true),
            (-3036, "GATEWAY_OFFLINE", true),
            (-3003, "GATEWAY_BUSY", true),
            (-3037, "GATEWAY_BUSY", true),
            (-3007, "DUPLICATE", false),
            (-3009, "LOCK_FULL", false),
            (-2032, "TOO_SIMPLE", false),
            (-3006, "INVALID_CODE", false),
            (-4043, "UNSUPPORTED", false),
            (-1003, "LOCK_NOT_FOUND", false),
            (30006, "RATE_LIMITED", true),
            (20002, "TTLOCK_ERROR", false),
            (-3, "TTLOCK_ERROR", false),
        ] {
            assert_eq!(
                write_failure(Error::api(code, "")),
                (Failed, reason, retryable),
                "{code}"
            );
        }
        assert_eq!(
            write_failure(Error::Connect("refused".into())),
            (Failed, "TTLOCK_ERROR", true)
        );
        assert_eq!(
            write_failure(Error::Http { status: 404 }),
            (Failed, "TTLOCK_ERROR", true)
        );
    }

    #[test]
    fn ambiguous_writes_are_unconfirmed_and_not_retryable() {
        for error in [
            Error::api(1, "failed or means no"),
            Error::api(90000, ""),
            Error::Timeout,
            Error::Http { status: 502 },
        ] {
            assert_eq!(
                write_failure(error),
                (Outcome::Unconfirmed, "AMBIGUOUS", false)
            );
        }
        let unconfirmed = Error::api(1, "").for_effect(Effect::Actuating);
        assert_eq!(failure(&unconfirmed).errcode, 1);
    }

    #[test]
    fn reads_retry_what_is_transient() {
        assert_eq!(failure(&Error::api(1, "")).reason, "TTLOCK_ERROR");
        assert!(failure(&Error::api(1, "")).retryable);
        assert!(failure(&Error::api(90000, "")).retryable);
        assert!(matches!(
            read_error(&Error::api(-1003, ""), 7),
            ApiError::NotFound { .. }
        ));
        assert!(matches!(
            read_error(&Error::api(-3003, ""), 7),
            ApiError::Unavailable {
                reason: "GATEWAY_BUSY",
                ..
            }
        ));
        assert!(matches!(
            read_error(&Error::api(20002, ""), 7),
            ApiError::FailedPrecondition {
                reason: "TTLOCK_ERROR",
                ..
            }
        ));
    }

    #[test]
    fn an_echoed_code_is_scrubbed_from_the_detail() {
        let error = Error::api(-3007, "passcode 482913 exists");
        let result = WriteResult::from_error(&error, 0, 5, Some("482913"));
        assert!(!result.detail.contains("482913"), "{}", result.detail);
        assert_eq!(result.reason, "DUPLICATE");
    }
}
