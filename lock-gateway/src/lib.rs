//! lock-gateway: the only holder of TTLock credentials.
//!
//! [`run`] is the seam the binary and the tests share: it serves on a bound listener
//! until `shutdown` resolves, then drains in-flight calls.

pub mod accounts;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod db;
pub mod digest_key;
pub mod error;
pub mod events;
pub mod fingerprint;
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
use std::sync::{Arc, Mutex};

use latchkey::auth::{AuthLayer, JwtVerifier};
use latchkey::db::DbPool;
use latchkey::deferred::Deferred;
use latchkey::pb::gateway::v1::lock_gateway_server::LockGatewayServer;
use latchkey::request_check::RequestCheckLayer;
use latchkey::server::{Health, reflection, serve_with_grace};
use latchkey::telemetry::grpc_trace_layer;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
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
    let grace = config.shutdown_grace();
    let patience = std::time::Duration::from_millis(config.start_wait_ms);
    let pool = latchkey::db::build_pool(&config.db, db::SCHEMA, APPLICATION, None)?;
    let verifier = JwtVerifier::from_config(&config.jwt)?;
    let sealer = crypto::Sealer::new(
        &config.encryption_key_id,
        &config.encryption_key,
        config.previous_encryption_keys.as_ref(),
    )?;

    // The port answers from the start: health says NOT_SERVING and the gateway's calls
    // are refused UNAVAILABLE until the database has been reached (see `start`).
    let gateway = Deferred::<Gateway>::new(error::DOMAIN, patience);
    let services = vec![<Gateway as NamedService>::NAME];
    let (health, health_service) = Health::new(services.clone()).await;
    let (reflection_v1, reflection_v1alpha) = reflection(&services)?;
    let router = tonic::transport::Server::builder()
        .layer(
            tower::ServiceBuilder::new()
                .layer(grpc_trace_layer())
                .layer(AuthLayer::new(verifier, grpc::policy))
                .layer(RequestCheckLayer)
                .layer(grpc::deadline::DeadlineLayer),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(gateway.clone());

    let (stopping, shutdown_seen) = tokio::sync::watch::channel(false);
    // The callback receiver answers from the start too: a callback waits up to
    // START_WAIT_MS for the gateway to start, then is refused 503 (TTLock delivers it
    // again, and the records read finds it), instead of hanging on a port nothing reads.
    let callback_app = Deferred::<axum::Router>::new(error::DOMAIN, patience);
    let receiver = callbacks
        .map(|listener| serve_callbacks(listener, callback_app.clone(), shutdown_seen.clone()));
    let started = Arc::new(Mutex::new(Started::default()));
    let (failed, failure) = tokio::sync::oneshot::channel::<()>();
    let startup = tokio::spawn(start(
        Startup {
            config,
            pool,
            sealer,
            callbacks: callback_secret.map(|secret| (callback_app, secret)),
            gateway,
            health: health.clone(),
            shutdown: shutdown_seen,
        },
        Arc::clone(&started),
        failed,
    ));

    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "lock-gateway serving");
    let incoming = latchkey::server::incoming(listener);
    let stop_started = Arc::clone(&started);
    serve_with_grace(
        |signal| router.serve_with_incoming_shutdown(incoming, signal),
        async move {
            // A start that cannot succeed stops the server too.
            tokio::select! {
                () = shutdown => {}
                Ok(()) = failure => {}
            }
        },
        async move {
            // Under the lock, so a start finishing now either is stopped here or sees
            // that it must not begin.
            let monitor = {
                let mut started = lock(&stop_started);
                started.stopped = true;
                started.monitor.take()
            };
            if let Some(monitor) = monitor {
                monitor.abort();
            }
            health.stop_serving().await;
            // Streams and background work end; the receiver finishes what it holds.
            let _ = stopping.send(true);
        },
        grace,
    )
    .await?;
    let started = std::mem::take(&mut *lock(&started));
    for task in started.background {
        task.abort();
    }
    if let Some(receiver) = receiver {
        let _ = receiver.await;
    }
    match startup.await {
        Ok(Err(error)) => return Err(error),
        Ok(Ok(())) => {}
        Err(error) => tracing::error!(%error, "lock-gateway's start did not finish"),
    }
    tracing::info!("lock-gateway stopped");
    Ok(())
}

type Gateway = LockGatewayServer<grpc::gateway::GatewayApi>;

/// What [`start`] needs.
struct Startup {
    config: Config,
    pool: DbPool,
    sealer: crypto::Sealer,
    /// Where the callback routes go once the gateway has started, and their secret.
    callbacks: Option<(Deferred<axum::Router>, SecretString)>,
    gateway: Deferred<Gateway>,
    health: Health,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// The tasks [`start`] began, ended when the server stops.
#[derive(Default)]
struct Started {
    /// Set once shutdown has begun: nothing may start after it.
    stopped: bool,
    monitor: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

fn lock(started: &Mutex<Started>) -> std::sync::MutexGuard<'_, Started> {
    // Only handles are kept; a panic elsewhere cannot leave them inconsistent.
    started
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits for the database, then begins serving the gateway and its background work.
/// Digests must match those stored before any key rotation, so nothing is served until
/// the stored key is known. `failed` is told when the gateway can never start.
async fn start(
    startup: Startup,
    started: Arc<Mutex<Started>>,
    failed: tokio::sync::oneshot::Sender<()>,
) -> Result<(), RunError> {
    let Startup {
        config,
        pool,
        sealer,
        callbacks,
        gateway,
        health,
        mut shutdown,
    } = startup;
    let sealer = tokio::select! {
        adopted = digest_key::adopt_when_reachable(&pool, sealer) => match adopted {
            Ok(sealer) => sealer,
            Err(error) => {
                let _ = failed.send(());
                return Err(error.into());
            }
        },
        _ = shutdown.wait_for(|stopping| *stopping) => {
            tracing::info!("lock-gateway stopped before the database was reachable");
            return Ok(());
        }
    };
    let announcements =
        latchkey::announcements::Hub::new(&[db::events::CHANNEL, cluster::turns::CHANNEL]);
    let cluster = cluster::Cluster::new(
        pool.clone(),
        announcements.clone(),
        config.gateway_turn_lease(),
    );
    let state = AppState {
        pool: pool.clone(),
        accounts: accounts::Accounts::new(
            sealer.clone(),
            config.ttlock_client(),
            config.clock.clone().unwrap_or_else(ttlock::clock::system),
            cluster.clone(),
        ),
        remote_timeout: chrono::Duration::from_std(config.ttlock_client().remote_timeout)
            .unwrap_or(chrono::Duration::seconds(40)),
        low_battery_percent: config.low_battery_percent,
        inbox_wake: Arc::new(Notify::new()),
        announcements,
        shutdown: shutdown.clone(),
    };
    let mut started = lock(&started);
    if started.stopped {
        return Ok(());
    }
    started.background = vec![
        tokio::spawn(
            state
                .announcements
                .clone()
                .listen(config.db.database_url.clone()),
        ),
        cluster.spawn_heartbeat(),
        events::inbox::Publisher {
            pool: pool.clone(),
            sealer: sealer.clone(),
            low_battery_percent: config.low_battery_percent,
        }
        .spawn(state.inbox_wake.clone(), shutdown.clone()),
    ];
    if config.lock_sync_interval_secs > 0 {
        started.background.push(locks::spawn_periodic(
            state.clone(),
            std::time::Duration::from_secs(config.lock_sync_interval_secs),
            shutdown.clone(),
        ));
    }
    let days = |days: u32| (days > 0).then(|| chrono::Duration::days(i64::from(days)));
    let kept = retention::Retention {
        claims: days(config.operation_retention_days),
        callbacks: days(config.callback_retention_days),
        events: days(config.device_event_retention_days),
    };
    if kept.sweeps() {
        started.background.push(retention::spawn(
            pool.clone(),
            kept,
            std::time::Duration::from_secs(config.retention_interval_secs),
            shutdown.clone(),
        ));
    }
    if let Some((app, secret)) = callbacks {
        app.set(events::callback::router(
            pool.clone(),
            sealer,
            secret,
            state.inbox_wake.clone(),
        ));
    }
    gateway.set(LockGatewayServer::new(grpc::gateway::GatewayApi::new(
        state,
    )));
    started.monitor = Some(health.spawn_monitor(
        pool,
        std::time::Duration::from_millis(config.db.db_health_interval_ms),
    ));
    tracing::info!("lock-gateway reached its database; serving the gateway");
    Ok(())
}

/// Serves the callback receiver on `listener` until shutdown: the routes in `app` once
/// they are set; before, a callback waits for them as long as `app` allows, then gets
/// `503 starting`.
fn serve_callbacks(
    listener: TcpListener,
    app: Deferred<axum::Router>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    use tower::ServiceExt as _;
    let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let app = app.clone();
        async move {
            match app.ready().await {
                Some(routes) => match routes.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                None => axum::response::IntoResponse::into_response((
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    [(axum::http::header::CONTENT_TYPE, "text/plain")],
                    "starting",
                )),
            }
        }
    });
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "TTLock callback receiver listening");
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "callback receiver stopped");
        }
    })
}
