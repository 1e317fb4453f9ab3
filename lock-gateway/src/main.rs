use anyhow::Context;
use clap::Parser;
use lock_gateway::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve {
            migrate,
            config,
            telemetry,
        } => {
            let guard = latchkey::telemetry::init("lock-gateway", &telemetry)?;
            if migrate {
                let applied = lock_gateway::migrate(&config.db).await?;
                tracing::info!(?applied, "migrations applied");
            }
            let listener = tokio::net::TcpListener::bind(config.grpc_addr)
                .await
                .with_context(|| format!("binding {}", config.grpc_addr))?;
            let result =
                lock_gateway::run(listener, config, latchkey::server::termination_signal()).await;
            guard.shutdown();
            result?;
        }
        Command::Migrate { db } => {
            let applied = lock_gateway::migrate(&db).await?;
            eprintln!(
                "applied {} migration(s): {}",
                applied.len(),
                applied.join(", ")
            );
        }
    }
    Ok(())
}
