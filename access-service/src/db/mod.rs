//! access-service's tables (schema `access`) and the queries over them, as plain
//! functions over `&mut AsyncPgConnection`.

pub mod codes;
pub mod device_events;
pub mod doors;
pub mod events;
pub mod memberships;
pub mod outbox;
pub mod properties;
pub mod request_fingerprints;
pub mod rules;
pub mod schema;
pub mod tenants;
pub mod unlock_requests;
pub mod users;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

/// The PostgreSQL schema that holds access-service's tables.
pub const SCHEMA: &str = "access";

/// access-service's migrations, embedded in the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The directory [`MIGRATIONS`] are embedded from; tests name their template databases
/// after its SQL, so that editing a migration builds a new template.
pub const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");

/// Escapes LIKE wildcards so a search matches the text literally.
pub(crate) fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A `%needle%` pattern that matches `needle` literally.
pub(crate) fn contains_pattern(needle: &str) -> String {
    format!("%{}%", escape_like(needle))
}
