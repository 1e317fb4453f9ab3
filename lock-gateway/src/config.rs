//! Configuration, read once from the environment with command-line flags overriding.

use std::net::SocketAddr;
use std::time::Duration;

use latchkey::auth::JwtConfig;
use latchkey::db::DbConfig;
use latchkey::telemetry::TelemetryConfig;
use secrecy::SecretString;

/// The key [`Config::new`] seals with; for tests only, never for deployments.
const TEST_KEY: &str = "6c617463686b65792d746573742d6b65792d6e6f742d666f722d70726f642121";

/// Default gRPC listen address.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50061";

#[derive(Debug, clap::Parser)]
#[command(
    name = "lock-gateway",
    version,
    about = "latchkey lock-gateway: TTLock locks, passcodes and device events"
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
}

/// Everything `run` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to serve gRPC on.
    #[arg(long, env = "GRPC_ADDR", default_value = DEFAULT_GRPC_ADDR)]
    pub grpc_addr: SocketAddr,
    /// How long in-flight calls may run once shutdown begins, in milliseconds: longer
    /// than TTLOCK_REMOTE_TIMEOUT_SECS, so a relayed command in flight gets its answer.
    #[arg(long, env = "SHUTDOWN_GRACE_MS", default_value_t = 45_000)]
    pub shutdown_grace_ms: u64,
    /// How long a gateway call or TTLock callback made while the gateway is still
    /// waiting for its database waits for it before being refused (UNAVAILABLE, 503), in
    /// milliseconds.
    #[arg(long, env = "START_WAIT_MS", default_value_t = 3_000)]
    pub start_wait_ms: u64,
    /// AES-256 key (64 hex characters) that seals TTLock secrets and tokens at rest.
    #[arg(long, env = "GATEWAY_ENCRYPTION_KEY", hide_env_values = true, value_parser = latchkey::auth::parse_secret)]
    pub encryption_key: SecretString,
    /// The id stored with every value sealed under the current key.
    #[arg(long, env = "GATEWAY_ENCRYPTION_KEY_ID", default_value = "k1")]
    pub encryption_key_id: String,
    /// Earlier keys still accepted for reading, as `id=hex,id=hex`, during a rotation.
    #[arg(long, env = "GATEWAY_PREVIOUS_ENCRYPTION_KEYS", hide_env_values = true, value_parser = latchkey::auth::parse_secret)]
    pub previous_encryption_keys: Option<SecretString>,
    /// Most TTLock requests per second per TTLock account, summed over all replicas.
    #[arg(long, env = "TTLOCK_REQUESTS_PER_SECOND", default_value_t = 5.0)]
    pub ttlock_requests_per_second: f64,
    /// TTLock requests an account may send at once after a quiet spell, summed over all
    /// replicas.
    #[arg(long, env = "TTLOCK_BURST", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub ttlock_burst: u32,
    /// How long a gateway's turn outlives the last renewal by its replica, in seconds: a
    /// replica that dies holding a gateway frees it this long after.
    #[arg(long, env = "GATEWAY_TURN_LEASE_SECS", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub gateway_turn_lease_secs: u64,
    /// Deadline of gateway-relayed TTLock commands (unlock, lock, passcodes), in seconds.
    #[arg(long, env = "TTLOCK_REMOTE_TIMEOUT_SECS", default_value_t = 40)]
    pub ttlock_remote_timeout_secs: u64,
    /// Where the TTLock callback receiver listens (HTTP); none when unset.
    #[arg(long, env = "CALLBACK_ADDR")]
    pub callback_addr: Option<SocketAddr>,
    /// The secret path segment of the callback URL (`/ttlock/callback/<secret>`), at least
    /// 24 characters; required with `CALLBACK_ADDR`.
    #[arg(long, env = "CALLBACK_SECRET", hide_env_values = true, value_parser = latchkey::auth::parse_secret)]
    pub callback_secret: Option<SecretString>,
    /// Battery percentage at or below which a lock is LOW_BATTERY.
    #[arg(long, env = "LOW_BATTERY_PERCENT", default_value_t = 20, value_parser = clap::value_parser!(i32).range(0..=100))]
    pub low_battery_percent: i32,
    /// How often each account's locks and records are synced, in seconds (0: only on
    /// request).
    #[arg(long, env = "LOCK_SYNC_INTERVAL_SECS", default_value_t = 300)]
    pub lock_sync_interval_secs: u64,
    /// Days a remote operation's or passcode write's request id is remembered, so a
    /// repeat replays its first outcome (0: forever). A repeat after that is carried out
    /// again.
    #[arg(long, env = "OPERATION_RETENTION_DAYS", default_value_t = 30)]
    pub operation_retention_days: u32,
    /// Days a processed callback is kept, so a redelivery is recognised without being
    /// published again (0: forever).
    #[arg(long, env = "CALLBACK_RETENTION_DAYS", default_value_t = 7)]
    pub callback_retention_days: u32,
    /// Days a device event is kept for consumers that were away (0: forever). Cursors
    /// increase by one per event, so a consumer away longer sees them jump past the
    /// deleted ones. Longer than TTLock redelivers callbacks and records are read back,
    /// so a record already an event is still recognised.
    #[arg(long, env = "DEVICE_EVENT_RETENTION_DAYS", default_value_t = 30)]
    pub device_event_retention_days: u32,
    /// How often forgotten request ids, old callbacks and old events are swept, in
    /// seconds.
    #[arg(long, env = "RETENTION_INTERVAL_SECS", default_value_t = 3600)]
    pub retention_interval_secs: u64,
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub jwt: JwtConfig,
    /// The clock TTLock requests are dated with; tests inject one, deployments use the
    /// host's.
    #[arg(skip)]
    pub clock: Option<latchkey::clock::SharedClock>,
}

impl Config {
    /// A configuration with defaults for everything but the database and JWT secret,
    /// sealing with a fixed key and syncing only on request: the seam tests use.
    /// Deployments set their own key.
    pub fn new(database_url: &str, jwt_secret: &str) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50061)),
            shutdown_grace_ms: 45_000,
            start_wait_ms: 3_000,
            encryption_key: SecretString::from(TEST_KEY.to_owned()),
            encryption_key_id: "k1".to_owned(),
            previous_encryption_keys: None,
            ttlock_requests_per_second: 50.0,
            ttlock_burst: 5,
            gateway_turn_lease_secs: 4,
            ttlock_remote_timeout_secs: 40,
            callback_addr: None,
            callback_secret: None,
            low_battery_percent: 20,
            lock_sync_interval_secs: 0,
            operation_retention_days: 30,
            callback_retention_days: 7,
            device_event_retention_days: 30,
            retention_interval_secs: 3600,
            db: DbConfig::for_url(database_url),
            jwt: JwtConfig {
                jwt_secret: Some(SecretString::from(jwt_secret.to_owned())),
                ..JwtConfig::default()
            },
            clock: None,
        }
    }

    pub fn ttlock_client(&self) -> crate::ttlock::ClientConfig {
        crate::ttlock::ClientConfig {
            requests_per_second: self.ttlock_requests_per_second.max(0.1),
            burst: self.ttlock_burst.max(1),
            remote_timeout: Duration::from_secs(self.ttlock_remote_timeout_secs.max(30)),
            ..crate::ttlock::ClientConfig::default()
        }
    }

    pub fn gateway_turn_lease(&self) -> Duration {
        Duration::from_secs(self.gateway_turn_lease_secs.max(1))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}
