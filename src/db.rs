//! PostgreSQL: one pool factory from typed config, embedded migrations run as a
//! deliberate step, and the health monitor that reports whether the database answers.
//!
//! Each service keeps its tables in its own schema; every pooled connection has its
//! `search_path`, `statement_timeout` and `application_name` set when it is made.

use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use secrecy::{ExposeSecret, SecretString};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// A pool of connections to one service's schema.
pub type DbPool = Pool<AsyncPgConnection>;

/// Default `DATABASE_URL`: the local PostgreSQL with trust authentication.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/latchkey";

/// Database settings, shared by both binaries.
#[derive(Debug, Clone, clap::Args)]
pub struct DbConfig {
    /// PostgreSQL URL. The service keeps its tables in its own schema of this database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = crate::auth::parse_secret,
          default_value = DEFAULT_DATABASE_URL)]
    pub database_url: SecretString,
    /// Largest number of pooled connections.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,
    /// How long a request waits for a free connection before failing with UNAVAILABLE.
    #[arg(long, env = "DB_POOL_WAIT_TIMEOUT_MS", default_value_t = 2000)]
    pub db_pool_wait_timeout_ms: u64,
    /// How long making a new connection may take.
    #[arg(long, env = "DB_CONNECT_TIMEOUT_MS", default_value_t = 3000)]
    pub db_connect_timeout_ms: u64,
    /// `statement_timeout` of every pooled connection.
    #[arg(long, env = "DB_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub db_statement_timeout_ms: u64,
    /// How often the health monitor checks that the database answers.
    #[arg(long, env = "DB_HEALTH_INTERVAL_MS", default_value_t = 1000)]
    pub db_health_interval_ms: u64,
}

impl DbConfig {
    /// Settings for `url` with every other value at its default.
    pub fn for_url(url: &str) -> Self {
        Self {
            database_url: SecretString::from(url.to_owned()),
            db_pool_size: 16,
            db_pool_wait_timeout_ms: 2000,
            db_connect_timeout_ms: 3000,
            db_statement_timeout_ms: 5000,
            db_health_interval_ms: 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("building the connection pool: {0}")]
    Pool(#[from] deadpool::managed::BuildError),
    #[error("connecting to PostgreSQL: {0}")]
    Connect(#[from] ConnectionError),
    #[error("running migrations: {0}")]
    Migration(String),
    #[error("{0:?} is not a plain role name (lowercase letters, digits, underscores)")]
    Role(String),
}

/// The session settings a service's connections start with. `schema` and `application`
/// are the service's own constants, never input.
fn session_setup(
    schema: &str,
    application: &str,
    role: Option<&str>,
    statement_timeout_ms: u64,
) -> String {
    let mut sql = format!(
        "SET search_path TO {schema}; SET statement_timeout = {statement_timeout_ms}; \
         SET application_name = '{application}'"
    );
    if let Some(role) = role {
        sql.push_str(&format!("; SET ROLE {role}"));
    }
    sql
}

/// Whether `name` can be used as a role name without quoting.
pub fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// Builds the pool of `application`'s connections to `schema`, each acting as `role`
/// when given. No connection is made until one is needed, so a service starts while the
/// database is still down.
pub fn build_pool(
    config: &DbConfig,
    schema: &'static str,
    application: &'static str,
    role: Option<&str>,
) -> Result<DbPool, DbSetupError> {
    if let Some(role) = role
        && !is_plain_identifier(role)
    {
        return Err(DbSetupError::Role(role.to_owned()));
    }
    let setup = session_setup(schema, application, role, config.db_statement_timeout_ms);
    let connect_timeout = Duration::from_millis(config.db_connect_timeout_ms);
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    // A broken connection fails its first query and is dropped; the health monitor
    // pings on its own schedule, so checkouts need no extra round trip.
    manager_config.recycling_method = RecyclingMethod::Fast;
    manager_config.custom_setup = Box::new(move |url| {
        let setup = setup.clone();
        let url = url.to_owned();
        Box::pin(async move {
            let mut connection =
                tokio::time::timeout(connect_timeout, AsyncPgConnection::establish(&url))
                    .await
                    .map_err(|_| {
                        ConnectionError::BadConnection("connect timed out".to_owned())
                    })??;
            connection
                .batch_execute(&setup)
                .await
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(connection)
        })
    });
    let manager = AsyncDieselConnectionManager::new_with_config(
        config.database_url.expose_secret(),
        manager_config,
    );
    let pool = Pool::builder(manager)
        .max_size(config.db_pool_size.max(1))
        .wait_timeout(Some(Duration::from_millis(config.db_pool_wait_timeout_ms)))
        .create_timeout(Some(connect_timeout))
        .recycle_timeout(Some(connect_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?;
    Ok(pool)
}

/// Applies `migrations` to `schema`, creating the schema first. An advisory lock keeps
/// replicas that start together from migrating at once. Returns the versions applied.
pub async fn migrate(
    database_url: &SecretString,
    schema: &'static str,
    migrations: EmbeddedMigrations,
) -> Result<Vec<String>, DbSetupError> {
    let url = database_url.expose_secret().to_owned();
    tokio::task::spawn_blocking(move || {
        use diesel::connection::SimpleConnection;
        let mut connection = <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)?;
        let lock_key = advisory_key(schema);
        SimpleConnection::batch_execute(
            &mut connection,
            &format!(
                "SELECT pg_advisory_lock({lock_key}); CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
            ),
        )
            .map_err(|e| DbSetupError::Migration(e.to_string()))?;
        let applied = connection
            .run_pending_migrations(migrations)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|e| DbSetupError::Migration(e.to_string()));
        let _ = SimpleConnection::batch_execute(&mut connection, &format!("SELECT pg_advisory_unlock({lock_key})"));
        applied
    })
    .await
    .map_err(|e| DbSetupError::Migration(e.to_string()))?
}

/// Where an FNV-1a hash starts.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// `hash` (FNV-1a) continued over `bytes`: stable across builds and machines, unlike
/// std's hasher.
pub(crate) fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A stable advisory-lock key per schema, so it never changes across builds.
fn advisory_key(schema: &str) -> i64 {
    i64::from_ne_bytes(fnv1a(FNV_OFFSET, schema.as_bytes()).to_ne_bytes())
}

/// Whether the database answers a trivial query through the pool within `timeout`.
pub async fn ping(pool: &DbPool, timeout: Duration) -> bool {
    let check = async {
        let mut connection = pool.get().await.ok()?;
        diesel::sql_query("SELECT 1")
            .execute(&mut connection)
            .await
            .ok()
    };
    matches!(tokio::time::timeout(timeout, check).await, Ok(Some(_)))
}

/// Keeps the health status of `services` (and the server as a whole, `""`) in step with
/// the database: NOT_SERVING while it does not answer, SERVING again once it does.
pub async fn monitor_health(
    pool: DbPool,
    reporter: HealthReporter,
    services: Vec<&'static str>,
    interval: Duration,
) {
    let mut last = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let healthy = ping(&pool, interval.max(Duration::from_millis(500))).await;
        if last == Some(healthy) {
            continue;
        }
        if healthy {
            tracing::info!("database reachable: serving");
        } else {
            tracing::warn!("database unreachable: not serving");
        }
        let status = if healthy {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in std::iter::once("").chain(services.iter().copied()) {
            reporter.set_service_status(service, status).await;
        }
        last = Some(healthy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advisory_keys_differ_per_schema_and_are_stable() {
        assert_eq!(advisory_key("access"), advisory_key("access"));
        assert_ne!(advisory_key("access"), advisory_key("gateway"));
    }

    #[test]
    fn session_setup_sets_every_setting() {
        let sql = session_setup("access", "access-service", Some("app_role"), 5000);
        assert!(sql.ends_with("SET ROLE app_role"));
        assert!(sql.contains("search_path TO access"));
        assert!(sql.contains("statement_timeout = 5000"));
        assert!(sql.contains("application_name = 'access-service'"));
    }
}
