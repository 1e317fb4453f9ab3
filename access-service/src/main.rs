use std::time::Duration;

use access_service::config::{Cli, Command};
use anyhow::Context;
use clap::Parser;
use latchkey::auth::JwtSigner;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve {
            migrate,
            config,
            telemetry,
        } => {
            let guard = latchkey::telemetry::init("access-service", &telemetry)?;
            if migrate {
                let applied = access_service::migrate(&config.db).await?;
                tracing::info!(?applied, "migrations applied");
            }
            let listener = tokio::net::TcpListener::bind(config.grpc_addr)
                .await
                .with_context(|| format!("binding {}", config.grpc_addr))?;
            let result =
                access_service::run(listener, config, latchkey::server::termination_signal()).await;
            guard.shutdown();
            result?;
        }
        Command::Migrate { db } => {
            let applied = access_service::migrate(&db).await?;
            eprintln!(
                "applied {} migration(s): {}",
                applied.len(),
                applied.join(", ")
            );
        }
        Command::Token {
            jwt_secret,
            tenant,
            user,
            roles,
            ttl_hours,
            jwt_issuer,
            jwt_audience,
        } => {
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            let token = JwtSigner::hs256(&jwt_secret)
                .with_issuer_and_audience(jwt_issuer, jwt_audience)
                .sign(
                    &user,
                    &tenant,
                    &roles,
                    Duration::from_secs(ttl_hours * 3600),
                )?;
            #[allow(clippy::print_stdout)]
            {
                println!("{token}");
            }
        }
    }
    Ok(())
}
