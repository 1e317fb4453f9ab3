//! lock-gateway: the only holder of TTLock credentials.
//!
//! [`run`] is the seam the binary and the tests share: it serves on a bound listener
//! until `shutdown` resolves, then drains in-flight calls.

pub mod accounts;
pub mod config;
pub mod crypto;
pub mod db;
pub mod digest_key;
pub mod error;
pub mod events;
pub mod grpc;
pub mod locks;
pub mod passcodes;
pub mod records;
pub mod remote;
pub mod retention;
pub mod sim;
pub mod state;
pub mod ttlock;

use std::future::Future;
use std::sync::Arc;

use latchkey::auth::{AuthLayer, JwtVerifier};
use latchkey::pb::gateway::v1::lock_gateway_server::LockGatewayServer;
use latchkey::server::{Health, reflection, serve_with_grace};
use latchkey::telemetry::grpc_trace_layer;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::Notify;
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
    #[error("callback receiver: {0}")]
    Callback(String),
}

/// Applies lock-gateway's pending migrations; returns the versions applied.
pub async fn migrate(db: &latchkey::db::DbConfig) -> Result<Vec<String>, RunError> {
    Ok(latchkey::db::migrate(&db.database_url, db::SCHEMA, db::MIGRATIONS).await?)
}

/// Serves lock-gateway on `listener` until `shutdown` resolves, with the callback
/// receiver on `CALLBACK_ADDR` when configured.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let callbacks = match config.callback_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| RunError::Callback(format!("binding {addr}: {e}")))?,
        ),
        None => None,
    };
    run_with_callbacks(listener, callbacks, config, shutdown).await
}

/// [`run`] with the callback receiver on a bound listener (tests bind `127.0.0.1:0`).
pub async fn run_with_callbacks(
    listener: TcpListener,
    callbacks: Option<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let callback_secret = match (&callbacks, &config.callback_secret) {
        (None, _) => None,
        (Some(_), Some(secret)) if secret.expose_secret().len() >= 24 => Some(secret.clone()),
        (Some(_), _) => {
            return Err(RunError::Callback(
                "CALLBACK_SECRET of at least 24 characters is required with a callback address"
                    .to_owned(),
            ));
        }
    };
    let pool = latchkey::db::build_pool(&config.db, db::SCHEMA, APPLICATION, None)?;
    let verifier = JwtVerifier::from_config(&config.jwt)?;
    let sealer = crypto::Sealer::new(
        &config.encryption_key_id,
        &config.encryption_key,
        config.previous_encryption_keys.as_ref(),
    )?;
    // Digests must match those stored before any key rotation, so nothing is served
    // until the stored key is known; a database that is away is waited for.
    let mut shutdown = Box::pin(shutdown);
    let sealer = tokio::select! {
        adopted = digest_key::adopt_when_reachable(&pool, sealer) => adopted?,
        () = &mut shutdown => {
            tracing::info!("lock-gateway stopped before the database was reachable");
            return Ok(());
        }
    };
    let (stopping, shutdown_seen) = tokio::sync::watch::channel(false);
    let state = AppState {
        pool: pool.clone(),
        accounts: accounts::Accounts::new(
            sealer.clone(),
            config.ttlock_client(),
            config.clock.clone().unwrap_or_else(ttlock::clock::system),
        ),
        remote_timeout: chrono::Duration::from_std(config.ttlock_client().remote_timeout)
            .unwrap_or(chrono::Duration::seconds(40)),
        low_battery_percent: config.low_battery_percent,
        inbox_wake: Arc::new(Notify::new()),
        events: events::watch::Hub::new(),
        shutdown: shutdown_seen.clone(),
    };
    let mut background = vec![
        tokio::spawn(state.events.clone().listen(config.db.database_url.clone())),
        events::inbox::Publisher {
            pool: pool.clone(),
            sealer: sealer.clone(),
            low_battery_percent: config.low_battery_percent,
        }
        .spawn(state.inbox_wake.clone(), shutdown_seen.clone()),
    ];
    if config.lock_sync_interval_secs > 0 {
        background.push(locks::spawn_periodic(
            state.clone(),
            std::time::Duration::from_secs(config.lock_sync_interval_secs),
            shutdown_seen.clone(),
        ));
    }
    let days = |days: u32| (days > 0).then(|| chrono::Duration::days(i64::from(days)));
    let kept = retention::Retention {
        claims: days(config.operation_retention_days),
        callbacks: days(config.callback_retention_days),
    };
    if kept.claims.is_some() || kept.callbacks.is_some() {
        background.push(retention::spawn(
            pool.clone(),
            kept,
            std::time::Duration::from_secs(config.retention_interval_secs),
            shutdown_seen.clone(),
        ));
    }
    let receiver = match (callbacks, callback_secret) {
        (Some(listener), Some(secret)) => {
            let router =
                events::callback::router(pool.clone(), sealer, secret, state.inbox_wake.clone());
            let mut stop = shutdown_seen.clone();
            tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "TTLock callback receiver listening");
            Some(tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.changed().await;
                    })
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "callback receiver stopped");
                }
            }))
        }
        _ => None,
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
    let incoming = latchkey::server::incoming(listener);
    serve_with_grace(
        |signal| router.serve_with_incoming_shutdown(incoming, signal),
        shutdown,
        async move {
            monitor.abort();
            health.stop_serving().await;
            // Streams and background work end; the receiver finishes what it holds.
            let _ = stopping.send(true);
        },
        config.shutdown_grace(),
    )
    .await?;
    for task in background {
        task.abort();
    }
    if let Some(receiver) = receiver {
        let _ = receiver.await;
    }
    tracing::info!("lock-gateway stopped");
    Ok(())
}
