//! lock-gateway's tables (schema `gateway`) and the queries over them, as plain
//! functions over `&mut AsyncPgConnection`.

pub mod accounts;
pub mod events;
pub mod inbox;
pub mod locks;
pub mod passcode_operations;
pub mod remote_operations;
pub mod retention;
pub mod schema;
pub mod secrets;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

/// The PostgreSQL schema that holds lock-gateway's tables.
pub const SCHEMA: &str = "gateway";

/// lock-gateway's migrations, embedded in the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The directory [`MIGRATIONS`] are embedded from; tests name their template databases
/// after its SQL, so that editing a migration builds a new template.
pub const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
