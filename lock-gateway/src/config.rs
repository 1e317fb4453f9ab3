//! Configuration, read once from the environment with command-line flags overriding.

use std::net::SocketAddr;
use std::time::Duration;

use latchkey::auth::JwtConfig;
use latchkey::db::DbConfig;
use latchkey::telemetry::TelemetryConfig;
use secrecy::SecretString;

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
    /// How long in-flight calls may run once shutdown begins, in milliseconds.
    #[arg(long, env = "SHUTDOWN_GRACE_MS", default_value_t = 20_000)]
    pub shutdown_grace_ms: u64,
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub jwt: JwtConfig,
}

impl Config {
    /// A configuration with defaults for everything but the database and JWT secret;
    /// the seam tests and embedders use.
    pub fn new(database_url: &str, jwt_secret: &str) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50061)),
            shutdown_grace_ms: 20_000,
            db: DbConfig::for_url(database_url),
            jwt: JwtConfig {
                jwt_secret: Some(SecretString::from(jwt_secret.to_owned())),
                ..JwtConfig::default()
            },
        }
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}
