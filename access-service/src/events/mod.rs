//! The tenant's events for mobile backends and integrations: a projection of the audit
//! log, so an event exists exactly when its row is committed and the row's per-tenant
//! sequence is its position.
//!
//! - [`cursor`]: positions as signed, opaque cursors.
//! - [`project`]: which rows are events, and their typed form.
//! - [`filter`]: what a subscription asks for, and who may see what.
//! - [`tail`]: one reader per tenant per replica, following the log as PostgreSQL
//!   announces new rows, shared by every stream of the tenant.
//! - [`watch`]: a stream: replay from the log, then live from the tail.
//! - [`list`]: pages for backends that poll, and where a start position points.

pub mod cursor;
pub mod filter;
pub mod list;
pub mod project;
pub mod tail;
pub mod watch;

/// Where PostgreSQL announces appended audit rows; the payload is the tenant.
pub const CHANNEL: &str = "latchkey_audit";
