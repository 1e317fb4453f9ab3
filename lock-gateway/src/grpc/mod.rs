//! The gRPC surface: thin methods that unpack requests, call domain code and convert.

pub mod deadline;
pub mod events;
pub mod gateway;
pub mod locks;
pub mod passcodes;

use latchkey::auth::{Access, roles};

/// lock-gateway serves internal callers only.
pub fn policy(_path: &str) -> Access {
    Access::Roles(&[roles::SERVICE])
}
