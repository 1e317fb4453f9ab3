//! access-service's error type and its one mapping to `tonic::Status`.

use latchkey::error::{ApiError, FieldViolations};
use tonic::Status;

/// The `ErrorInfo` domain of access-service errors.
pub const DOMAIN: &str = "access.latchkey";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// lock-gateway answered with an error or could not be reached.
    #[error("lock-gateway: {0}")]
    Gateway(Status),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Self::Api(error.into())
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for Error {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::Api(error.into())
    }
}

impl From<FieldViolations> for Error {
    fn from(violations: FieldViolations) -> Self {
        Self::Api(ApiError::InvalidArgument(violations))
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Api(api) => api.into_status(DOMAIN),
            Error::Gateway(status) => {
                use tonic::Code;
                let api = match status.code() {
                    Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::Cancelled
                    | Code::Unknown => ApiError::unavailable(
                        "LOCK_GATEWAY_UNAVAILABLE",
                        "lock-gateway is unavailable",
                    ),
                    Code::ResourceExhausted => ApiError::unavailable(
                        "LOCK_GATEWAY_BUSY",
                        "lock-gateway is busy; try again later",
                    ),
                    // lock-gateway refused what it was asked about this tenant's lock or
                    // account (unknown lock, removed account): the caller's to fix.
                    Code::NotFound
                    | Code::FailedPrecondition
                    | Code::InvalidArgument
                    | Code::AlreadyExists
                    | Code::OutOfRange => ApiError::failed_precondition(
                        "LOCK_GATEWAY_REFUSED",
                        format!("lock-gateway refused: {}", status.message()),
                    ),
                    code => ApiError::internal(format!(
                        "lock-gateway answered {code:?}: {}",
                        status.message()
                    )),
                };
                api.into_status(DOMAIN)
            }
        }
    }
}
