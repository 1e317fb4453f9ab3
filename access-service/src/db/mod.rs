//! access-service's tables (schema `access`) and the queries over them, as plain
//! functions over `&mut AsyncPgConnection`.

pub mod properties;
pub mod schema;
pub mod tenants;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

/// The PostgreSQL schema that holds access-service's tables.
pub const SCHEMA: &str = "access";

/// access-service's migrations, embedded in the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
