//! TTLock failures: the documented `errcode` values, transport failures, and how each
//! may be handled (retried, re-authenticated, given up, or reported as unconfirmed).
//!
//! TTLock answers errors with HTTP 200 and an `{errcode, errmsg, description}` body;
//! `errmsg` wording varies between API generations, so only `errcode` is interpreted.

use std::fmt;

/// The `errcode` values the reference documents, with [`ErrorCode::Other`] for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: "failed or means no"; for remote commands the lock may still have acted.
    Failed,
    /// 10000
    ClientIdUnknown,
    /// 10001
    InvalidClient,
    /// 10003
    TokenUnknown,
    /// 10004: expired or revoked token.
    TokenInvalid,
    /// 10007
    InvalidAccount,
    /// 10011
    InvalidRefreshToken,
    /// 20002
    NotLockAdmin,
    /// 30005
    PasswordNotMd5,
    /// 30006
    RateLimited,
    /// 30007
    MonthlyQuotaExceeded,
    /// 30008
    WrongRegion,
    /// 80000: `date` more than five minutes from server time.
    DateSkew,
    /// 80002
    InvalidJson,
    /// 90000
    InternalServerError,
    /// -3
    InvalidParameter,
    /// -1003
    LockNotFound,
    /// -2018
    PermissionDenied,
    /// -2025
    LockFrozen,
    /// -4043: e.g. remote unlock switched off in the app.
    Unsupported,
    /// -2009
    PasscodeNotFound,
    /// -2032
    PasscodeTooSimple,
    /// -3006: not 4–9 digits.
    PasscodeInvalid,
    /// -3007
    PasscodeExists,
    /// -3008
    PasscodeNeverUsed,
    /// -3009: no space for more custom passcodes.
    PasscodeNoSpace,
    /// -2012
    NoGateway,
    /// -3002
    GatewayOffline,
    /// -3003
    GatewayBusy,
    /// -3036
    LockOffline,
    /// -3037
    LockBusy,
    /// -4037
    GatewayNotFound,
    Other(i32),
}

impl ErrorCode {
    pub fn from_code(code: i32) -> Self {
        match code {
            1 => Self::Failed,
            10000 => Self::ClientIdUnknown,
            10001 => Self::InvalidClient,
            10003 => Self::TokenUnknown,
            10004 => Self::TokenInvalid,
            10007 => Self::InvalidAccount,
            10011 => Self::InvalidRefreshToken,
            20002 => Self::NotLockAdmin,
            30005 => Self::PasswordNotMd5,
            30006 => Self::RateLimited,
            30007 => Self::MonthlyQuotaExceeded,
            30008 => Self::WrongRegion,
            80000 => Self::DateSkew,
            80002 => Self::InvalidJson,
            90000 => Self::InternalServerError,
            -3 => Self::InvalidParameter,
            -1003 => Self::LockNotFound,
            -2018 => Self::PermissionDenied,
            -2025 => Self::LockFrozen,
            -4043 => Self::Unsupported,
            -2009 => Self::PasscodeNotFound,
            -2032 => Self::PasscodeTooSimple,
            -3006 => Self::PasscodeInvalid,
            -3007 => Self::PasscodeExists,
            -3008 => Self::PasscodeNeverUsed,
            -3009 => Self::PasscodeNoSpace,
            -2012 => Self::NoGateway,
            -3002 => Self::GatewayOffline,
            -3003 => Self::GatewayBusy,
            -3036 => Self::LockOffline,
            -3037 => Self::LockBusy,
            -4037 => Self::GatewayNotFound,
            other => Self::Other(other),
        }
    }

    pub fn code(self) -> i32 {
        match self {
            Self::Failed => 1,
            Self::ClientIdUnknown => 10000,
            Self::InvalidClient => 10001,
            Self::TokenUnknown => 10003,
            Self::TokenInvalid => 10004,
            Self::InvalidAccount => 10007,
            Self::InvalidRefreshToken => 10011,
            Self::NotLockAdmin => 20002,
            Self::PasswordNotMd5 => 30005,
            Self::RateLimited => 30006,
            Self::MonthlyQuotaExceeded => 30007,
            Self::WrongRegion => 30008,
            Self::DateSkew => 80000,
            Self::InvalidJson => 80002,
            Self::InternalServerError => 90000,
            Self::InvalidParameter => -3,
            Self::LockNotFound => -1003,
            Self::PermissionDenied => -2018,
            Self::LockFrozen => -2025,
            Self::Unsupported => -4043,
            Self::PasscodeNotFound => -2009,
            Self::PasscodeTooSimple => -2032,
            Self::PasscodeInvalid => -3006,
            Self::PasscodeExists => -3007,
            Self::PasscodeNeverUsed => -3008,
            Self::PasscodeNoSpace => -3009,
            Self::NoGateway => -2012,
            Self::GatewayOffline => -3002,
            Self::GatewayBusy => -3003,
            Self::LockOffline => -3036,
            Self::LockBusy => -3037,
            Self::GatewayNotFound => -4037,
            Self::Other(code) => code,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({})", self, self.code())
    }
}

/// What a caller may do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient; the same request may be sent again after a pause.
    Retryable,
    /// The gateway (-3003) or the lock (-3037) was busy with another command and refused
    /// this one before relaying it. Unlike errcode 1, which TTLock also answers when the
    /// lock acted but its confirmation was lost, a busy refusal proves nothing reached
    /// the lock, so even an unlock may be sent again: until the command's deadline, not
    /// a fixed number of times, since the other command may take the gateway for tens of
    /// seconds.
    Busy,
    /// The token was refused; renew it and send again.
    ReAuthenticate,
    /// Sending again gives the same answer.
    Permanent,
    /// A command may have reached the lock; sending it again could act twice.
    UnsafeToRetry,
}

/// Whether an operation changes the physical lock, and so whether an ambiguous failure
/// may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reads and cloud-only changes: any failure is safe to repeat.
    Idempotent,
    /// Remote lock/unlock and passcode writes through a gateway: a failure that does
    /// not prove the command was refused becomes [`Error::Unconfirmed`].
    Actuating,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TTLock answered with a non-zero `errcode`. `errmsg` is kept for operators only.
    #[error("TTLock error {code}: {errmsg}")]
    Api { code: ErrorCode, errmsg: String },
    /// A non-200 HTTP status (proxies, outages).
    #[error("TTLock HTTP status {status}")]
    Http { status: u16 },
    #[error("TTLock request timed out")]
    Timeout,
    /// The connection could not be opened: the request never left.
    #[error("TTLock connection failed: {0}")]
    Connect(String),
    /// The connection failed after the request may have been sent.
    #[error("TTLock transport error: {0}")]
    Transport(String),
    #[error("TTLock response not understood: {0}")]
    Decode(String),
    #[error("TTLock client configuration: {0}")]
    Config(String),
    /// The command's deadline passed while it waited for its gateway: it was never sent.
    #[error("the gateway stayed busy with other commands until the deadline; not sent")]
    NoTurn,
    /// The replicas' shared state (pace, gateway turns, token) could not be reached, so
    /// nothing was sent.
    #[error("coordination with other replicas failed: {0}")]
    Coordination(String),
    /// A command failed in a way that leaves open whether the lock acted. It is never
    /// retried; the caller must confirm (lock records, passcode list) before acting again.
    #[error("TTLock command unconfirmed: {cause}")]
    Unconfirmed { cause: Box<Error> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn api(code: i32, errmsg: impl Into<String>) -> Self {
        Self::Api {
            code: ErrorCode::from_code(code),
            errmsg: errmsg.into(),
        }
    }

    /// The `errcode` when TTLock sent one (looking through [`Error::Unconfirmed`]).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            Self::Unconfirmed { cause } => cause.code(),
            _ => None,
        }
    }

    /// How this failure may be handled, independent of the operation.
    pub fn class(&self) -> ErrorClass {
        use ErrorCode as C;
        match self {
            Self::Api { code, .. } => match code {
                C::GatewayBusy | C::LockBusy => ErrorClass::Busy,
                C::InternalServerError | C::RateLimited | C::Failed => ErrorClass::Retryable,
                C::TokenUnknown | C::TokenInvalid => ErrorClass::ReAuthenticate,
                _ => ErrorClass::Permanent,
            },
            Self::Http { status } if *status >= 500 || *status == 429 => ErrorClass::Retryable,
            Self::Http { .. } => ErrorClass::Permanent,
            Self::Timeout | Self::Connect(_) | Self::Transport(_) => ErrorClass::Retryable,
            Self::Decode(_) | Self::Config(_) | Self::NoTurn | Self::Coordination(_) => {
                ErrorClass::Permanent
            }
            Self::Unconfirmed { .. } => ErrorClass::UnsafeToRetry,
        }
    }

    /// Whether, for an actuating command, this failure leaves open that the lock acted:
    /// errcode 1, server errors, timeouts and broken connections after sending.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Self::Api { code, .. } => {
                matches!(code, ErrorCode::Failed | ErrorCode::InternalServerError)
            }
            Self::Http { status } => *status >= 500,
            Self::Timeout | Self::Transport(_) | Self::Decode(_) => true,
            Self::Connect(_)
            | Self::Config(_)
            | Self::NoTurn
            | Self::Coordination(_)
            | Self::Unconfirmed { .. } => false,
        }
    }

    /// This failure as seen by an operation with `effect`.
    pub fn for_effect(self, effect: Effect) -> Self {
        if effect == Effect::Actuating && self.is_ambiguous() {
            Self::Unconfirmed {
                cause: Box::new(self),
            }
        } else {
            self
        }
    }

    /// Converts a reqwest failure without its URL: GET URLs carry the access token.
    pub(crate) fn from_reqwest(error: reqwest::Error) -> Self {
        let error = error.without_url();
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_connect() {
            Self::Connect(error.to_string())
        } else if error.is_decode() {
            Self::Decode(error.to_string())
        } else if let Some(status) = error.status() {
            Self::Http {
                status: status.as_u16(),
            }
        } else {
            Self::Transport(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in [
            1, 10000, 10001, 10003, 10004, 10007, 10011, 20002, 30005, 30006, 30007, 30008, 80000,
            80002, 90000, -3, -1003, -2018, -2025, -4043, -2009, -2032, -3006, -3007, -3008, -3009,
            -2012, -3002, -3003, -3036, -3037, -4037, 12345,
        ] {
            assert_eq!(ErrorCode::from_code(code).code(), code);
        }
        assert_eq!(ErrorCode::from_code(12345), ErrorCode::Other(12345));
    }

    #[test]
    fn classification_follows_the_reference() {
        let class = |code| Error::api(code, "").class();
        for code in [90000, 30006] {
            assert_eq!(class(code), ErrorClass::Retryable, "{code}");
        }
        for code in [-3003, -3037] {
            assert_eq!(class(code), ErrorClass::Busy, "{code}");
        }
        for code in [10003, 10004] {
            assert_eq!(class(code), ErrorClass::ReAuthenticate, "{code}");
        }
        for code in [-3, -3007, -3009, -2032, -4043, -2012, -3002, -3006, 80000] {
            assert_eq!(class(code), ErrorClass::Permanent, "{code}");
        }
        assert_eq!(Error::Timeout.class(), ErrorClass::Retryable);
        assert_eq!(Error::Http { status: 502 }.class(), ErrorClass::Retryable);
        assert_eq!(Error::Http { status: 404 }.class(), ErrorClass::Permanent);
    }

    #[test]
    fn ambiguous_failures_of_commands_are_unsafe_to_retry() {
        for error in [
            Error::api(1, "failed or means no"),
            Error::api(90000, ""),
            Error::Timeout,
            Error::Http { status: 503 },
        ] {
            let error = error.for_effect(Effect::Actuating);
            assert_eq!(error.class(), ErrorClass::UnsafeToRetry, "{error}");
        }
        // Refusals prove the command was not executed.
        for code in [-3003, -3037, 30006, 10004, -3002] {
            let error = Error::api(code, "").for_effect(Effect::Actuating);
            assert_ne!(error.class(), ErrorClass::UnsafeToRetry, "{code}");
        }
        assert_eq!(
            Error::api(1, "").for_effect(Effect::Idempotent).class(),
            ErrorClass::Retryable
        );
        assert_eq!(
            Error::Connect("refused".into())
                .for_effect(Effect::Actuating)
                .class(),
            ErrorClass::Retryable
        );
    }
}
