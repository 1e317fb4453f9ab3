//! Configuration, read once from the environment with command-line flags overriding.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use latchkey::auth::JwtConfig;
use latchkey::db::DbConfig;
use latchkey::telemetry::TelemetryConfig;
use secrecy::SecretString;

/// Default gRPC listen address.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50051";
/// The role created by the migrations for the service to act as.
pub const DEFAULT_DB_ROLE: &str = "latchkey_access_app";
/// Default lock-gateway address.
pub const DEFAULT_LOCK_GATEWAY_URL: &str = "http://127.0.0.1:50061";

#[derive(Debug, clap::Parser)]
#[command(
    name = "access-service",
    version,
    about = "latchkey access-service: access decisions, codes and the audit log"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve gRPC.
    Serve {
        /// Apply pending migrations before serving.
        #[arg(long)]
        migrate: bool,
        #[command(flatten)]
        config: Config,
        #[command(flatten)]
        telemetry: TelemetryConfig,
    },
    /// Apply pending migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DbConfig,
    },
    /// Print a bearer token signed with JWT_SECRET (for local use and operations).
    Token {
        #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = latchkey::auth::parse_secret)]
        jwt_secret: SecretString,
        /// Tenant the token acts in.
        #[arg(long)]
        tenant: String,
        /// User id (`sub`).
        #[arg(long)]
        user: String,
        /// Roles, repeatable: ADMIN, MANAGER, SERVICE or any member role.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 12)]
        ttl_hours: u64,
        #[arg(long, env = "JWT_ISSUER")]
        jwt_issuer: Option<String>,
        #[arg(long, env = "JWT_AUDIENCE")]
        jwt_audience: Option<String>,
    },
}

/// Everything `run` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to serve gRPC on.
    #[arg(long, env = "GRPC_ADDR", default_value = DEFAULT_GRPC_ADDR)]
    pub grpc_addr: SocketAddr,
    /// lock-gateway's gRPC URL.
    #[arg(long, env = "LOCK_GATEWAY_URL", default_value = DEFAULT_LOCK_GATEWAY_URL)]
    pub lock_gateway_url: String,
    /// HS256 secret for the SERVICE tokens presented to lock-gateway; JWT_SECRET when unset.
    #[arg(long, env = "LOCK_GATEWAY_JWT_SECRET", hide_env_values = true, value_parser = latchkey::auth::parse_secret)]
    pub lock_gateway_jwt_secret: Option<SecretString>,
    /// PEM private key (RSA or Ed25519) for the SERVICE tokens presented to lock-gateway;
    /// used instead of a secret when set.
    #[arg(long, env = "LOCK_GATEWAY_JWT_PRIVATE_KEY_FILE")]
    pub lock_gateway_jwt_private_key_file: Option<PathBuf>,
    /// Deadline for each call to lock-gateway, in milliseconds: longer than lock-gateway's
    /// TTLOCK_REMOTE_TIMEOUT_SECS, so a slow unlock is answered by lock-gateway rather
    /// than cut off here.
    #[arg(long, env = "LOCK_GATEWAY_TIMEOUT_MS", default_value_t = 45_000)]
    pub lock_gateway_timeout_ms: u64,
    /// How long in-flight calls may run once shutdown begins, in milliseconds: longer
    /// than LOCK_GATEWAY_TIMEOUT_MS, so an unlock in flight ends with its real outcome;
    /// one still running after it is recorded as unconfirmed and abandoned.
    #[arg(long, env = "SHUTDOWN_GRACE_MS", default_value_t = 50_000)]
    pub shutdown_grace_ms: u64,
    /// Concurrent audit group-commit workers.
    #[arg(long, env = "AUDIT_WRITERS", default_value_t = 2)]
    pub audit_writers: usize,
    /// Most audit rows committed in one transaction.
    #[arg(long, env = "AUDIT_MAX_BATCH", default_value_t = 512)]
    pub audit_max_batch: usize,
    /// How long decisions may go on with a tenant's snapshot after another replica
    /// changed it, while the change is read, in milliseconds (0: they wait for it).
    #[arg(long, env = "SNAPSHOT_STALE_LIMIT_MS", default_value_t = 500)]
    pub snapshot_stale_limit_ms: u64,
    /// Audit rows older than this many days are purged (0 keeps everything).
    #[arg(long, env = "AUDIT_RETENTION_DAYS", default_value_t = 365)]
    pub audit_retention_days: u32,
    /// How often the retention job runs, in seconds.
    #[arg(long, env = "AUDIT_RETENTION_INTERVAL_SECS", default_value_t = 3600)]
    pub audit_retention_interval_secs: u64,
    /// Days an unlock's or a create's request id is remembered (repeats replay, another
    /// request under it is refused); 0 keeps them for ever. Swept every
    /// AUDIT_RETENTION_INTERVAL_SECS.
    #[arg(long, env = "REQUEST_ID_RETENTION_DAYS", default_value_t = 30)]
    pub request_id_retention_days: u32,
    /// Failed attempts of one user or IP address within the window that flag a row.
    #[arg(long, env = "SUSPICIOUS_THRESHOLD", default_value_t = 5)]
    pub suspicious_threshold: i64,
    /// The window of live failure-burst detection, in minutes.
    #[arg(long, env = "SUSPICIOUS_WINDOW_MINUTES", default_value_t = 5)]
    pub suspicious_window_minutes: i64,
    /// The database role every connection acts as (`SET ROLE`); it may not update or
    /// delete audit rows. Empty: the login role's own rights.
    #[arg(long, env = "DB_ROLE", default_value = DEFAULT_DB_ROLE)]
    pub db_role: String,
    /// 64 hex characters: the key access codes are hashed (HMAC-SHA256) and, until
    /// written to their locks, sealed (AES-256-GCM) with.
    #[arg(long, env = "ACCESS_CODE_KEY", hide_env_values = true, value_parser = latchkey::auth::parse_secret)]
    pub access_code_key: SecretString,
    /// A code is written to its lock this many hours before its window opens.
    #[arg(long, env = "PROVISIONING_LEAD_HOURS", default_value_t = 72)]
    pub provisioning_lead_hours: u32,
    /// Provisioning intents worked on at once by this process.
    #[arg(long, env = "PROVISIONING_CONCURRENCY", default_value_t = 4)]
    pub provisioning_concurrency: usize,
    /// How often provisioning looks for due intents and expired codes when nothing wakes
    /// it, in milliseconds.
    #[arg(long, env = "PROVISIONING_POLL_MS", default_value_t = 1000)]
    pub provisioning_poll_ms: u64,
    /// How long a claim on an intent lasts without renewal, in seconds: a living worker
    /// renews it every third of this while it works (however long TTLock takes), so
    /// this bounds how long a crashed worker's intents wait before another takes over.
    #[arg(long, env = "PROVISIONING_LEASE_SECS", default_value_t = 6)]
    pub provisioning_lease_secs: u32,
    /// How often an event stream with nothing to send sends its current cursor, in
    /// seconds.
    #[arg(long, env = "EVENT_HEARTBEAT_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub event_heartbeat_secs: u64,
    /// How long an event stream waits for a consumer that takes nothing while events wait
    /// before ending it with RESOURCE_EXHAUSTED, in seconds.
    #[arg(long, env = "EVENT_STREAM_STALL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub event_stream_stall_secs: u64,
    /// How often every lock's passcodes are reconciled with the codes that should be on
    /// it, in seconds (0: only on request).
    #[arg(long, env = "RECONCILE_INTERVAL_SECS", default_value_t = 900)]
    pub reconcile_interval_secs: u64,
    /// Follow lock-gateway's device events for every tenant with a door on a lock.
    #[arg(long, env = "FOLLOW_DEVICE_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub follow_device_events: bool,
    /// How often the tenants whose device events to follow are looked for (new doors on
    /// locks, leases other replicas gave up), in milliseconds.
    #[arg(long, env = "DEVICE_EVENTS_SCAN_MS", default_value_t = 10_000)]
    pub device_events_scan_ms: u64,
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub jwt: JwtConfig,
    /// The clock code windows, lead times and expiry are judged by; tests inject one,
    /// deployments use the host's.
    #[arg(skip)]
    pub clock: Option<latchkey::clock::SharedClock>,
}

/// The key [`Config::new`] hashes codes with; for tests only, never for deployments.
const TEST_CODE_KEY: &str = "6c617463686b65792d636f64652d6b65792d666f722d74657374732d6f6e6c79";

impl Config {
    /// A configuration with defaults for everything but the database and JWT secret,
    /// hashing codes with a fixed key and reconciling only on request: the seam tests
    /// use. Deployments set their own key.
    pub fn new(database_url: &str, jwt_secret: &str) -> Self {
        Self {
            grpc_addr: DEFAULT_GRPC_ADDR
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 50051))),
            lock_gateway_url: DEFAULT_LOCK_GATEWAY_URL.to_owned(),
            lock_gateway_jwt_secret: None,
            lock_gateway_jwt_private_key_file: None,
            lock_gateway_timeout_ms: 45_000,
            shutdown_grace_ms: 50_000,
            db_role: DEFAULT_DB_ROLE.to_owned(),
            audit_writers: 2,
            audit_max_batch: 512,
            snapshot_stale_limit_ms: 500,
            audit_retention_days: 365,
            audit_retention_interval_secs: 3600,
            request_id_retention_days: 30,
            suspicious_threshold: 5,
            suspicious_window_minutes: 5,
            access_code_key: SecretString::from(TEST_CODE_KEY.to_owned()),
            provisioning_lead_hours: 72,
            provisioning_concurrency: 4,
            provisioning_poll_ms: 1000,
            provisioning_lease_secs: 6,
            event_heartbeat_secs: 5,
            event_stream_stall_secs: 60,
            reconcile_interval_secs: 0,
            follow_device_events: true,
            device_events_scan_ms: 10_000,
            db: DbConfig::for_url(database_url),
            jwt: JwtConfig {
                jwt_secret: Some(SecretString::from(jwt_secret.to_owned())),
                ..JwtConfig::default()
            },
            clock: None,
        }
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}
