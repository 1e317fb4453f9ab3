//! Provisioning: every code reaches each of its doors' locks, or a terminal, explained
//! failure, and leaves them when revoked or expired. Changes write intents into the
//! outbox in their own transaction ([`intents`]); workers on any replica carry them out.

pub mod intents;
pub mod reconcile;
