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
                let message = format!("invalid {}", violations.fields().join(", "));
                for (field, description) in violations.0 {
                    details.add_bad_request_violation(field, description);
                }
                info(&mut details, "INVALID_ARGUMENT", HashMap::new());
                (Code::InvalidArgument, message)
            }
            Self::NotFound { resource, id } => {
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
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                info(&mut details, "INTERNAL", HashMap::new());
                (Code::Internal, "internal error".to_owned())
            }
        };
        Status::with_error_details(code, message, details)
    }
}

/// Database errors by meaning. Constraint names are mapped to fields by the caller where
/// a violation is the client's fault; what is left here is not.
impl From<DieselError> for ApiError {
    fn from(error: DieselError) -> Self {
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
                DatabaseErrorKind::ClosedConnection => {
                    Self::unavailable("DATABASE_UNAVAILABLE", "the database is unavailable")
                }
                _ if is_statement_timeout(info.message()) => {
                    Self::unavailable("DATABASE_TIMEOUT", "the database did not answer in time")
                }
                _ => Self::internal(&error),
            },
            DieselError::BrokenTransactionManager => {
                Self::unavailable("DATABASE_UNAVAILABLE", "the database is unavailable")
            }
            _ => Self::internal(&error),
        }
    }
}

fn is_statement_timeout(message: &str) -> bool {
    message.contains("statement timeout") || message.contains("canceling statement")
}

/// Pool exhaustion or a database that cannot be reached: `UNAVAILABLE`, never a hang.
impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        use deadpool::managed::PoolError;
        tracing::warn!(error = %error, "database pool");
        match error {
            PoolError::Timeout(_) => Self::unavailable(
                "DATABASE_BUSY",
                "no database connection became free in time",
            ),
            _ => Self::unavailable("DATABASE_UNAVAILABLE", "the database is unavailable"),
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
}
