//! The gRPC error vocabulary shared by both services.
//!
//! Each service has its own error enum; every variant ends in an [`ApiError`], and
//! [`ApiError`] is turned into a `tonic::Status` here, once, with google.rpc rich
//! details: `BadRequest` field violations for invalid input and `ErrorInfo` with a stable
//! reason for everything else. Internal causes are logged where they are mapped and never
//! reach the caller.

use std::collections::HashMap;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The field violations of one request, gathered before anything is stored.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldViolations(Vec<(String, String)>);

impl FieldViolations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fields(&self) -> Vec<&str> {
        self.0.iter().map(|(field, _)| field.as_str()).collect()
    }

    /// `Ok(())` when nothing was violated, else the invalid-argument error.
    pub fn check(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self))
        }
    }

    /// A single violation as an error.
    pub fn single(field: impl Into<String>, description: impl Into<String>) -> ApiError {
        let mut violations = Self::default();
        violations.add(field, description);
        ApiError::InvalidArgument(violations)
    }
}

/// What the caller is told. `reason` strings are stable, upper snake case, and part of
/// the API contract.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid argument: {}", .0.fields().join(", "))]
    InvalidArgument(FieldViolations),
    #[error("{resource} not found")]
    NotFound { resource: &'static str, id: String },
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    PermissionDenied {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    Unavailable {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    Aborted {
        reason: &'static str,
        message: String,
    },
    /// A position past what is kept; `metadata` names what is (e.g. the oldest cursor).
    #[error("{message}")]
    OutOfRange {
        reason: &'static str,
        message: String,
        metadata: Vec<(&'static str, String)>,
    },
    #[error("{message}")]
    ResourceExhausted {
        reason: &'static str,
        message: String,
    },
    /// The cause is logged when mapped; the caller sees only that something failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn not_found(resource: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            resource,
            id: id.into(),
        }
    }

    pub fn failed_precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    pub fn unavailable(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Unavailable {
            reason,
            message: message.into(),
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// The gRPC status, with the given `ErrorInfo` domain (the service's name).
    pub fn into_status(self, domain: &str) -> Status {
        let info = |details: &mut ErrorDetails, reason: &str, meta: HashMap<String, String>| {
            details.set_error_info(reason, domain, meta);
        };
        let mut details = ErrorDetails::new();
        let (code, message) = match self {
            Self::InvalidArgument(violations) => {
                let mut fields: Vec<&str> = Vec::new();
                for field in violations.fields() {
                    if !fields.contains(&field) {
                        fields.push(field);
                    }
                }
                let message = format!("invalid {}", fields.join(", "));
                let total = violations.0.len();
                for (field, description) in violations.0.into_iter().take(MAX_VIOLATIONS) {
                    details.add_bad_request_violation(
                        capped(field, MAX_FIELD_BYTES),
                        capped(description, MAX_DESCRIPTION_BYTES),
                    );
                }
                if total > MAX_VIOLATIONS {
                    details.add_bad_request_violation(
                        "",
                        format!("and {} more violations", total - MAX_VIOLATIONS),
                    );
                }
                info(&mut details, "INVALID_ARGUMENT", HashMap::new());
                (Code::InvalidArgument, message)
            }
            Self::NotFound { resource, id } => {
                let id = capped(id, MAX_FIELD_BYTES);
                let meta = HashMap::from([
                    ("resource".to_owned(), resource.to_owned()),
                    ("id".to_owned(), id.clone()),
                ]);
                info(&mut details, "NOT_FOUND", meta);
                (Code::NotFound, format!("{resource} {id} not found"))
            }
            Self::AlreadyExists { reason, message } => {
                info(&mut details, reason, HashMap::new());
                (Code::AlreadyExists, message)
            }
            Self::FailedPrecondition { reason, message } => {
                info(&mut details, reason, HashMap::new());
                (Code::FailedPrecondition, message)
            }
            Self::PermissionDenied { reason, message } => {
                info(&mut details, reason, HashMap::new());
                (Code::PermissionDenied, message)
            }
            Self::Unavailable { reason, message } => {
                info(&mut details, reason, HashMap::new());
                (Code::Unavailable, message)
            }
            Self::Aborted { reason, message } => {
                info(&mut details, reason, HashMap::new());
                (Code::Aborted, message)
            }
            Self::OutOfRange {
                reason,
                message,
                metadata,
            } => {
                let meta = metadata
                    .into_iter()
                    .map(|(key, value)| (key.to_owned(), capped(value, MAX_FIELD_BYTES)))
                    .collect();
                info(&mut details, reason, meta);
                (Code::OutOfRange, message)
            }
            Self::ResourceExhausted { reason, message } => {
                info(&mut details, reason, HashMap::new());
                (Code::ResourceExhausted, message)
            }
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                info(&mut details, "INTERNAL", HashMap::new());
                (Code::Internal, "internal error".to_owned())
            }
        };
        Status::with_error_details(code, capped(message, MAX_MESSAGE_BYTES), details)
    }
}

/// Violations listed in one answer; the rest are counted. With the caps below, any
/// error's trailers (message and base64 details) stay well under 8 KiB, inside every
/// gRPC client's default 16 KiB metadata limit.
pub const MAX_VIOLATIONS: usize = 10;
const MAX_FIELD_BYTES: usize = 128;
const MAX_DESCRIPTION_BYTES: usize = 256;
const MAX_MESSAGE_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
fn capped(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// Database errors by meaning. Constraint names are mapped to fields by the caller where
/// a violation is the client's fault; what is left here is not.
impl From<DieselError> for ApiError {
    fn from(error: DieselError) -> Self {
        if is_database_gone(&error) {
            tracing::warn!(error = %error, "database connection lost");
            return database_unavailable();
        }
        match &error {
            DieselError::NotFound => Self::not_found("row", ""),
            DieselError::DatabaseError(kind, info) => match kind {
                DatabaseErrorKind::UniqueViolation => Self::AlreadyExists {
                    reason: "ALREADY_EXISTS",
                    message: format!(
                        "conflicts with an existing record ({})",
                        info.constraint_name().unwrap_or("unique")
                    ),
                },
                DatabaseErrorKind::ForeignKeyViolation => Self::failed_precondition(
                    "REFERENCED",
                    "the record is referenced by or refers to another record",
                ),
                DatabaseErrorKind::SerializationFailure => Self::Aborted {
                    reason: "CONCURRENT_CHANGE",
                    message: "a concurrent change conflicted; retry".to_owned(),
                },
                _ if is_statement_timeout(info.message()) => {
                    Self::unavailable("DATABASE_TIMEOUT", "the database did not answer in time")
                }
                _ => Self::internal(&error),
            },
            _ => Self::internal(&error),
        }
    }
}

fn database_unavailable() -> ApiError {
    ApiError::unavailable("DATABASE_UNAVAILABLE", "the database is unavailable")
}

fn is_statement_timeout(message: &str) -> bool {
    message.contains("statement timeout") || message.contains("canceling statement")
}

/// Whether `error` says the database went away (shut down, crashed, restarting, or the
/// connection was lost mid-query): another attempt, on another connection, may succeed.
///
/// diesel-async (0.9, `pg/error_helper.rs`) keeps only two things of a tokio-postgres
/// error: errors PostgreSQL sent with a SQLSTATE become `DatabaseError(kind, info)`, the
/// kind set for a few constraint and transaction codes and `Unknown` for every other,
/// with only the server's message text kept (the SQLSTATE is not reachable through
/// `DatabaseErrorInformation`); errors without one (I/O, a closed connection, the
/// connection's task gone) become `UnableToSendCommand` with tokio-postgres's `Display`
/// text. So the SQLSTATEs this stands for are recognised by their messages:
/// - 57P01 admin_shutdown, 57P02 crash_shutdown, 57P05 idle_session_timeout, 25P03 and
///   the recovery conflicts: PostgreSQL's FATAL "terminating connection ..." (fast and
///   immediate shutdown, `pg_terminate_backend`, a crashed backend, timeouts);
/// - 57P03 cannot_connect_now: "the database system is starting up / shutting down / in
///   recovery mode / not yet accepting connections" (usually met when connecting, as a
///   pool error; matched here too should a session meet it);
/// - class 08 (connection exceptions) is detected by the client, not sent: it arrives as
///   tokio-postgres's own texts for a closed connection, an I/O error, a timeout or a
///   protocol desynchronisation, matched on `UnableToSendCommand` only.
///
/// `UnableToSendCommand` alone does not mean the server went away: diesel also uses it
/// for a query it could not encode (too many bind parameters), which is a defect and
/// stays `INTERNAL`. The server's texts are English unless the server's `lc_messages`
/// says otherwise (a superuser-only setting a service cannot fix for its sessions); on
/// a server speaking another language those conditions stay `INTERNAL` while the
/// client-side ones (closed connection, I/O) are still recognised.
pub fn is_database_gone(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand, info) => {
            is_lost_connection(info.message())
        }
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            is_server_going_away(info.message())
        }
        // A commit whose rollback failed too: the outcome is whatever lost the connection.
        DieselError::RollbackErrorOnCommit {
            rollback_error,
            commit_error,
        } => is_database_gone(commit_error) || is_database_gone(rollback_error),
        // The transaction manager gave up on the connection after a failed rollback.
        DieselError::BrokenTransactionManager => true,
        _ => false,
    }
}

/// tokio-postgres's texts (its `Error` `Display`) for a connection that failed under a
/// query, and diesel-async's for a connection whose driving task ended.
fn is_lost_connection(message: &str) -> bool {
    const LOST: [&str; 7] = [
        "connection closed",
        "error communicating with the server",
        "timeout waiting for server",
        "error connecting to server",
        "unexpected message from server",
        "error parsing response from server",
        "channel closed",
    ];
    LOST.iter().any(|text| message.starts_with(text))
}

/// PostgreSQL's texts for a session it is ending or cannot serve (see
/// [`is_database_gone`]).
fn is_server_going_away(message: &str) -> bool {
    message.starts_with("terminating connection ") || message.starts_with("the database system is ")
}

/// Pool exhaustion or a database that cannot be reached: `UNAVAILABLE`, never a hang.
/// Waiting for a free connection is the pool being busy; failing or timing out while
/// making one (or checking an idle one) is the database being away.
impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        use deadpool::managed::{PoolError, TimeoutType};
        tracing::warn!(error = %error, "database pool");
        match error {
            PoolError::Timeout(TimeoutType::Wait) => Self::unavailable(
                "DATABASE_BUSY",
                "no database connection became free in time",
            ),
            _ => database_unavailable(),
        }
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn invalid_argument_names_every_field() {
        let mut v = FieldViolations::default();
        v.add("property.name", "must not be empty");
        v.add("property.time_zone", "is not an IANA time zone");
        let status = v.check().unwrap_err().into_status("access.latchkey");
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .unwrap()
            .field_violations
            .iter()
            .map(|f| f.field.clone())
            .collect();
        assert_eq!(fields, ["property.name", "property.time_zone"]);
    }

    #[test]
    fn any_error_fits_in_8_kib_of_trailers() {
        let mut v = FieldViolations::default();
        for i in 0..5000 {
            v.add(
                format!("rule.user_ids[{i}]{}", "x".repeat(300)),
                "é".repeat(2000),
            );
        }
        let status = v.check().unwrap_err().into_status("access.latchkey");
        let details = status.details().len() * 4 / 3 + 4;
        assert!(status.message().len() + details < 8 * 1024, "{details}");
        let listed = status
            .get_error_details()
            .bad_request()
            .unwrap()
            .field_violations
            .len();
        assert_eq!(listed, MAX_VIOLATIONS + 1);

        let huge = ApiError::not_found("door", "d".repeat(1 << 20)).into_status("x");
        assert!(huge.message().len() + huge.details().len() * 4 / 3 < 8 * 1024);
        assert_eq!(capped("aé".to_owned(), 2), "…".to_owned());
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status = ApiError::internal("relation \"secret_table\" does not exist")
            .into_status("access.latchkey");
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret_table"));
        assert_eq!(
            status.get_error_details().error_info().unwrap().reason,
            "INTERNAL"
        );
    }

    #[test]
    fn domain_errors_carry_a_stable_reason() {
        let status = ApiError::failed_precondition("PROPERTY_HAS_DOORS", "remove its doors first")
            .into_status("access.latchkey");
        assert_eq!(status.code(), Code::FailedPrecondition);
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "PROPERTY_HAS_DOORS");
        assert_eq!(info.domain, "access.latchkey");
    }

    fn database_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    fn code_and_reason(error: ApiError) -> (Code, String) {
        let status = error.into_status("latchkey");
        let reason = status
            .get_error_details()
            .error_info()
            .map(|info| info.reason.clone())
            .unwrap_or_default();
        (status.code(), reason)
    }

    fn unavailable() -> (Code, String) {
        (Code::Unavailable, "DATABASE_UNAVAILABLE".to_owned())
    }

    #[test]
    fn a_server_ending_the_session_is_unavailable() {
        use DatabaseErrorKind::Unknown;
        for message in [
            // 57P01: pg_ctl stop -m fast, pg_terminate_backend.
            "terminating connection due to administrator command",
            // 57P01: pg_ctl stop -m immediate (PostgreSQL 14 and later).
            "terminating connection due to immediate shutdown command",
            // 57P02: another backend crashed and the server resets.
            "terminating connection because of crash of another server process",
            "terminating connection due to unexpected postmaster exit",
            // 57P05 and 25P03.
            "terminating connection due to idle-session timeout",
            "terminating connection due to idle-in-transaction timeout",
            // 57P03.
            "the database system is shutting down",
            "the database system is starting up",
            "the database system is in recovery mode",
            "the database system is not yet accepting connections",
        ] {
            let error = database_error(Unknown, message);
            assert!(is_database_gone(&error), "{message}");
            assert_eq!(code_and_reason(error.into()), unavailable(), "{message}");
        }
    }

    #[test]
    fn a_connection_lost_under_a_query_is_unavailable() {
        use DatabaseErrorKind::{ClosedConnection, UnableToSendCommand};
        for message in [
            "connection closed",
            "error communicating with the server",
            "error communicating with the server: Connection reset by peer (os error 104)",
            "timeout waiting for server",
            "unexpected message from server",
            // diesel-async: the task driving the connection is gone.
            "channel closed",
        ] {
            let error = database_error(UnableToSendCommand, message);
            assert_eq!(code_and_reason(error.into()), unavailable(), "{message}");
        }
        let closed = database_error(ClosedConnection, "server closed the connection");
        assert_eq!(code_and_reason(closed.into()), unavailable());
        assert_eq!(
            code_and_reason(DieselError::BrokenTransactionManager.into()),
            unavailable()
        );
    }

    #[test]
    fn a_commit_that_lost_its_connection_is_unavailable() {
        let lost = DieselError::RollbackErrorOnCommit {
            commit_error: Box::new(database_error(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            )),
            rollback_error: Box::new(database_error(
                DatabaseErrorKind::UnableToSendCommand,
                "connection closed",
            )),
        };
        assert_eq!(code_and_reason(lost.into()), unavailable());
    }

    #[test]
    fn other_database_errors_keep_their_meaning() {
        use DatabaseErrorKind::{UnableToSendCommand, Unknown};
        // Defects, not outages: retrying would not help.
        for error in [
            database_error(Unknown, "invalid byte sequence for encoding \"UTF8\": 0x00"),
            database_error(Unknown, "relation \"doors\" does not exist"),
            database_error(UnableToSendCommand, "error encoding message to server"),
            database_error(
                UnableToSendCommand,
                "expected 70000 parameters but got 4464",
            ),
            DieselError::RollbackErrorOnCommit {
                commit_error: Box::new(database_error(Unknown, "deferred constraint")),
                rollback_error: Box::new(DieselError::NotInTransaction),
            },
        ] {
            assert!(!is_database_gone(&error), "{error}");
            assert_eq!(code_and_reason(error.into()).0, Code::Internal);
        }
        let timeout = database_error(Unknown, "canceling statement due to statement timeout");
        assert_eq!(
            code_and_reason(timeout.into()),
            (Code::Unavailable, "DATABASE_TIMEOUT".to_owned())
        );
        let unique = database_error(DatabaseErrorKind::UniqueViolation, "duplicate key");
        assert_eq!(code_and_reason(unique.into()).0, Code::AlreadyExists);
    }

    #[test]
    fn a_pool_that_cannot_connect_is_unavailable_and_a_full_one_busy() {
        use deadpool::managed::{PoolError, TimeoutType};
        use diesel_async::pooled_connection::PoolError as Backend;
        let busy = ApiError::from(PoolError::Timeout(TimeoutType::Wait));
        assert_eq!(
            code_and_reason(busy),
            (Code::Unavailable, "DATABASE_BUSY".to_owned())
        );
        for error in [
            PoolError::Timeout(TimeoutType::Create),
            PoolError::Timeout(TimeoutType::Recycle),
            PoolError::Backend(Backend::ConnectionError(
                diesel::ConnectionError::BadConnection(
                    "Connection refused (os error 111)".to_owned(),
                ),
            )),
            PoolError::Backend(Backend::QueryError(database_error(
                DatabaseErrorKind::UnableToSendCommand,
                "connection closed",
            ))),
        ] {
            assert_eq!(code_and_reason(ApiError::from(error)), unavailable());
        }
    }
}
