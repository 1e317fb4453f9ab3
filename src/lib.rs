//! The latchkey contract and the runtime both services share.
//!
//! - [`pb`]: the protobuf messages, gRPC clients and servers generated from `proto/`.
//! - [`auth`]: bearer JWT verification, caller identity and the per-method role policy.
//! - [`clock`]: the injectable wall clock.
//! - [`error`]: the gRPC error vocabulary (field violations, stable reasons) and the one
//!   mapping of database and pool failures by meaning.
//! - [`db`]: the connection pool factory, embedded migrations and database health.
//! - [`telemetry`]: tracing and OpenTelemetry setup and W3C trace context over gRPC.
//! - [`server`]: health, reflection and graceful shutdown around a tonic router.
//! - [`request_check`]: every request decoded against its descriptor before a service
//!   sees it (NUL characters, oversized strings, undecodable bodies refused).
//! - [`deferred`]: a service mounted before it can be built, refusing calls until then.

pub mod announcements;
pub mod auth;
pub mod clock;
pub mod db;
pub mod deferred;
pub mod error;
pub mod pagination;
pub mod pb;
pub mod request_check;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
