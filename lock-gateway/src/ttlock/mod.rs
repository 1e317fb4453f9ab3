//! TTLock cloud API v3 client.
//!
//! - [`client`]: [`TtlockClient`], one per account, and its configuration.
//! - [`auth`]: the password hash and the OAuth token lifecycle.
//! - [`discipline`]: rate limit, per-gateway serialisation, backoff.
//! - [`error`]: `errcode` values and how each failure may be handled.
//! - [`types`]: wire types, lenient where TTLock is inconsistent.
//! - [`clock`]: the injectable wall clock behind `date` and token expiry.

pub mod auth;
pub mod client;
pub mod clock;
mod de;
pub mod discipline;
pub mod error;
pub mod types;

#[cfg(test)]
mod samples;

pub use auth::{Password, TokenSet, md5_hex};
pub use client::{
    AccountConfig, ClientConfig, DEFAULT_BASE_URL, PasscodeChange, TtlockClient, Validity,
};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use discipline::RetryPolicy;
pub use error::{Effect, Error, ErrorClass, ErrorCode};
pub use types::PasscodeText;
