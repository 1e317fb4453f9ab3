//! `ttlock-sim`: the TTLock cloud simulator for local development.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use lock_gateway::sim::{DEFAULT_ADDR, Fixture, SimConfig, Simulator};

#[derive(Debug, Parser)]
#[command(
    name = "ttlock-sim",
    version,
    about = "A TTLock cloud API v3 simulator"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TTLOCK_SIM_ADDR", default_value = DEFAULT_ADDR)]
    addr: SocketAddr,
    /// JSON fixture of accounts, gateways and locks; the shipped default when absent.
    #[arg(long, env = "TTLOCK_SIM_FIXTURE")]
    fixture: Option<PathBuf>,
    /// Where to POST lock-record callbacks.
    #[arg(long, env = "TTLOCK_SIM_CALLBACK_URL")]
    callback_url: Option<String>,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(
        long,
        env = "TTLOCK_SIM_TOKEN_LIFETIME_SECS",
        default_value_t = 7_776_000
    )]
    token_lifetime_secs: u64,
    /// Latency of gateway-relayed commands, in milliseconds.
    #[arg(long, env = "TTLOCK_SIM_REMOTE_LATENCY_MS", default_value_t = 0)]
    remote_latency_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    latchkey::telemetry::init(
        "ttlock-sim",
        &latchkey::telemetry::TelemetryConfig::default(),
    )?;
    let fixture = match &args.fixture {
        Some(path) => {
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Fixture::from_json(&json).with_context(|| format!("parsing {}", path.display()))?
        }
        None => Fixture::default_fixture(),
    };
    let mut config = SimConfig {
        fixture,
        callback_url: args.callback_url,
        token_lifetime: Duration::from_secs(args.token_lifetime_secs),
        ..SimConfig::default()
    };
    config.faults.remote_latency_ms = args.remote_latency_ms;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let handle = Simulator::start_on(listener, config)?;
    // These are the simulator's own fake credentials, printed so a developer can
    // register the account with a local lock-gateway.
    eprintln!("ttlock-sim listening on {}", handle.base_url());
    for account in handle.accounts() {
        eprintln!(
            "account: base_url={} client_id={} client_secret={} username={} password={:?} locks={:?}",
            handle.base_url(),
            account.client_id,
            account.client_secret,
            account.username,
            account.password,
            account.locks.iter().map(|l| l.lock_id).collect::<Vec<_>>(),
        );
    }
    eprintln!(
        "faults: POST {}/_sim/faults (JSON), stats: GET {}/_sim/stats",
        handle.base_url(),
        handle.base_url()
    );
    latchkey::server::termination_signal().await;
    handle.shutdown().await;
    Ok(())
}
