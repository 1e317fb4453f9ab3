//! lock-gateway: the only holder of TTLock credentials.
//!
//! [`run`] is the seam the binary and the tests share: it serves on a bound listener
//! until `shutdown` resolves, then drains in-flight calls.

pub mod accounts;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod grpc;
pub mod passcodes;
pub mod records;
pub mod remote;
pub mod sim;
pub mod state;
pub mod ttlock;

use std::future::Future;

use latchkey::auth::{AuthLayer, JwtVerifier};
use latchkey::pb::gateway::v1::lock_gateway_server::LockGatewayServer;
use latchkey::server::{Health, reflection, serve_with_grace};
use latchkey::telemetry::grpc_trace_layer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::server::NamedService;

pub use config::Config;

use crate::state::AppState;

/// The application name connections report to PostgreSQL.
pub const APPLICATION: &str = "lock-gateway";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Db(#[from] latchkey::db::DbSetupError),
    #[error("JWT settings: {0}")]
    Auth(#[from] latchkey::auth::AuthConfigError),
    #[error(transparent)]
    Server(#[from] latchkey::server::ServerError),
    #[error("GATEWAY_ENCRYPTION_KEY: {0}")]
    Crypto(#[from] crypto::CryptoError),
}

/// Applies lock-gateway's pending migrations; returns the versions applied.
pub async fn migrate(db: &latchkey::db::DbConfig) -> Result<Vec<String>, RunError> {
    Ok(latchkey::db::migrate(&db.database_url, db::SCHEMA, db::MIGRATIONS).await?)
}

/// Serves lock-gateway on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let pool = latchkey::db::build_pool(&config.db, db::SCHEMA, APPLICATION, None)?;
    let verifier = JwtVerifier::from_config(&config.jwt)?;
    let sealer = crypto::Sealer::new(
        &config.encryption_key_id,
        &config.encryption_key,
        config.previous_encryption_keys.as_ref(),
    )?;
    let state = AppState {
        pool: pool.clone(),
        accounts: accounts::Accounts::new(sealer, config.ttlock_client(), ttlock::clock::system()),
    };

    let gateway = LockGatewayServer::new(grpc::gateway::GatewayApi::new(state));
    let services = vec![<LockGatewayServer<grpc::gateway::GatewayApi> as NamedService>::NAME];
    let (health, health_service) = Health::new(services.clone()).await;
    let monitor = health.spawn_monitor(
        pool,
        std::time::Duration::from_millis(config.db.db_health_interval_ms),
    );
    let (reflection_v1, reflection_v1alpha) = reflection(&services)?;

    let router = tonic::transport::Server::builder()
        .layer(
            tower::ServiceBuilder::new()
                .layer(grpc_trace_layer())
                .layer(AuthLayer::new(verifier, grpc::policy)),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(gateway);

    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "lock-gateway serving");
    let incoming = TcpListenerStream::new(listener);
    serve_with_grace(
        |signal| router.serve_with_incoming_shutdown(incoming, signal),
        shutdown,
        async move {
            monitor.abort();
            health.stop_serving().await;
        },
        config.shutdown_grace(),
    )
    .await?;
    tracing::info!("lock-gateway stopped");
    Ok(())
}
