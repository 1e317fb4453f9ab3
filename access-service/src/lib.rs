//! access-service: decides who may open which door and when.
//!
//! [`run`] is the seam the binary and the tests share: it serves on a bound listener
//! until `shutdown` resolves, then drains in-flight calls.

pub mod access;
pub mod actuations;
pub mod audit;
pub mod audit_ops;
pub mod code_keys;
pub mod codes;
pub mod config;
pub mod db;
pub mod decision;
pub mod device_events;
pub mod directory;
pub mod doors;
pub mod error;
pub mod events;
pub mod gateway;
pub mod grpc;
pub mod memberships;
pub mod passcode_names;
pub mod policy;
pub mod provisioning;
pub mod request_ids;
pub mod rules;
pub mod snapshot;
pub mod state;
pub mod time_slot;
pub mod unlock;
pub mod users;

use std::future::Future;

use latchkey::auth::{AuthLayer, JwtVerifier};
use latchkey::pb::access::v1::access_code_service_server::AccessCodeServiceServer;
use latchkey::pb::access::v1::access_service_server::AccessServiceServer;
use latchkey::pb::access::v1::audit_service_server::AuditServiceServer;
use latchkey::pb::access::v1::directory_service_server::DirectoryServiceServer;
use latchkey::pb::access::v1::event_service_server::EventServiceServer;
use latchkey::pb::access::v1::rule_service_server::RuleServiceServer;
use latchkey::request_check::RequestCheckLayer;
use latchkey::server::{Health, reflection, serve_with_grace};
use latchkey::telemetry::grpc_trace_layer;
use tokio::net::TcpListener;
use tonic::server::NamedService;

pub use config::Config;

use crate::audit::writer::AuditWriter;
use crate::gateway::GatewayClient;
use crate::state::AppState;

/// The application name connections report to PostgreSQL.
pub const APPLICATION: &str = "access-service";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Db(#[from] latchkey::db::DbSetupError),
    #[error("JWT settings: {0}")]
    Auth(#[from] latchkey::auth::AuthConfigError),
    #[error(transparent)]
    Gateway(#[from] gateway::GatewaySetupError),
    #[error(transparent)]
    Server(#[from] latchkey::server::ServerError),
    #[error(transparent)]
    CodeKey(#[from] code_keys::CodeKeyError),
}

/// Applies access-service's pending migrations; returns the versions applied.
pub async fn migrate(db: &latchkey::db::DbConfig) -> Result<Vec<String>, RunError> {
    Ok(latchkey::db::migrate(&db.database_url, db::SCHEMA, db::MIGRATIONS).await?)
}

/// Serves access-service on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let role = (!config.db_role.is_empty()).then_some(config.db_role.as_str());
    let pool = latchkey::db::build_pool(&config.db, db::SCHEMA, APPLICATION, role)?;
    let verifier = JwtVerifier::from_config(&config.jwt)?;
    // The audit writer drives its own connections on its own thread; it needs one per
    // tenant it is committing for at once.
    let writer_db = latchkey::db::DbConfig {
        db_pool_size: (config.db.db_pool_size / 2).max(2),
        ..config.db.clone()
    };
    let writer_pool = latchkey::db::build_pool(&writer_db, db::SCHEMA, APPLICATION, role)?;
    let (audit, audit_workers) = AuditWriter::spawn(
        writer_pool,
        audit::writer::WriterConfig::from_config(&config),
    );
    let retention = (config.audit_retention_days > 0).then(|| {
        tokio::spawn(audit_ops::retention_job(
            pool.clone(),
            audit.clone(),
            chrono::Duration::days(i64::from(config.audit_retention_days)),
            std::time::Duration::from_secs(config.audit_retention_interval_secs.max(1)),
        ))
    });
    let request_id_retention = (config.request_id_retention_days > 0).then(|| {
        tokio::spawn(request_ids::retention_job(
            pool.clone(),
            chrono::Duration::days(i64::from(config.request_id_retention_days)),
            std::time::Duration::from_secs(config.audit_retention_interval_secs.max(1)),
        ))
    });
    let snapshots = snapshot::SnapshotCache::with_stale_limit(
        pool.clone(),
        std::time::Duration::from_millis(config.snapshot_stale_limit_ms),
    );
    let listener_task =
        tokio::spawn(std::sync::Arc::clone(&snapshots).listen(config.db.database_url.clone()));
    let state = AppState {
        pool: pool.clone(),
        gateway: GatewayClient::new(&config)?,
        audit,
        snapshots,
        clock: config.clock.clone().unwrap_or_else(latchkey::clock::system),
        code_keys: code_keys::CodeKeys::new(&config.access_code_key)?,
        provisioning_wake: std::sync::Arc::new(tokio::sync::Notify::new()),
        lead_hours: config.provisioning_lead_hours,
        actuations: actuations::Actuations::default(),
    };
    // What shutdown needs once the router is gone.
    let after_grace = state.clone();

    let (stopping, stop_seen) = tokio::sync::watch::channel(false);
    let provisioning = provisioning::worker::spawn(
        state.clone(),
        config.provisioning_concurrency.max(1),
        std::time::Duration::from_millis(config.provisioning_poll_ms.max(10)),
        config.provisioning_lease_secs,
        stop_seen.clone(),
    );
    let reconciliation = (config.reconcile_interval_secs > 0).then(|| {
        provisioning::reconcile::spawn_periodic(
            state.clone(),
            std::time::Duration::from_secs(config.reconcile_interval_secs),
            stop_seen.clone(),
        )
    });
    // Followers release their leases at shutdown so another replica takes over at once.
    let device_events = config.follow_device_events.then(|| {
        device_events::Follower::spawn(
            pool.clone(),
            state.gateway.clone(),
            state.clock.clone(),
            device_events::Settings::from_config(&config),
        )
    });

    // One LISTEN connection carries new audit rows to this replica's event tails.
    let announcements = latchkey::announcements::Hub::new(&[events::CHANNEL]);
    let announcer = tokio::spawn(announcements.clone().listen(config.db.database_url.clone()));
    let event_service =
        EventServiceServer::new(grpc::events::EventApi::new(events::watch::Streams {
            pool: state.pool.clone(),
            keys: state.code_keys.clone(),
            tails: std::sync::Arc::new(events::tail::Tails::new(
                state.pool.clone(),
                state.code_keys.clone(),
                announcements,
            )),
            heartbeat: std::time::Duration::from_secs(config.event_heartbeat_secs.max(1)),
            stall_limit: std::time::Duration::from_secs(config.event_stream_stall_secs.max(1)),
            shutdown: stop_seen.clone(),
        }));
    let directory = DirectoryServiceServer::new(grpc::directory::DirectoryApi::new(state.clone()));
    let audit_service = AuditServiceServer::new(grpc::audit::AuditApi::new(state.clone()));
    let rules = RuleServiceServer::new(grpc::rules::RuleApi::new(state.clone()));
    let access_codes = AccessCodeServiceServer::new(grpc::codes::AccessCodeApi::new(state.clone()));
    let access_service = AccessServiceServer::new(grpc::access::AccessApi::new(state));
    let services = vec![
        <DirectoryServiceServer<grpc::directory::DirectoryApi> as NamedService>::NAME,
        <AuditServiceServer<grpc::audit::AuditApi> as NamedService>::NAME,
        <RuleServiceServer<grpc::rules::RuleApi> as NamedService>::NAME,
        <AccessServiceServer<grpc::access::AccessApi> as NamedService>::NAME,
        <AccessCodeServiceServer<grpc::codes::AccessCodeApi> as NamedService>::NAME,
        <EventServiceServer<grpc::events::EventApi> as NamedService>::NAME,
    ];
    let (health, health_service) = Health::new(services.clone()).await;
    let monitor = health.spawn_monitor(
        pool,
        std::time::Duration::from_millis(config.db.db_health_interval_ms),
    );
    let (reflection_v1, reflection_v1alpha) = reflection(&services)?;

    let router = tonic::transport::Server::builder()
        // Event streams sit idle between events: pings keep proxies from cutting them
        // and find dead peers.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .layer(
            tower::ServiceBuilder::new()
                .layer(grpc_trace_layer())
                .layer(AuthLayer::new(verifier, grpc::policy))
                .layer(RequestCheckLayer),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(directory)
        .add_service(audit_service)
        .add_service(rules)
        .add_service(access_service)
        .add_service(access_codes)
        .add_service(event_service);

    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "access-service serving");
    let incoming = latchkey::server::incoming(listener);
    serve_with_grace(
        |signal| router.serve_with_incoming_shutdown(incoming, signal),
        shutdown,
        async move {
            monitor.abort();
            listener_task.abort();
            announcer.abort();
            if let Some(retention) = retention {
                retention.abort();
            }
            if let Some(sweep) = request_id_retention {
                sweep.abort();
            }
            if let Some(device_events) = device_events {
                device_events.stop().await;
            }
            health.stop_serving().await;
            // Background work stops taking new intents; one in flight is settled by
            // its lease lapsing and the next attempt reading the lock.
            let _ = stopping.send(true);
        },
        config.shutdown_grace(),
    )
    .await?;
    // Calls still running past the grace are abandoned: an unlock among them may have
    // opened its door, so it is recorded as unconfirmed before the process exits.
    let abandoned = after_grace
        .actuations
        .abandon_all(&after_grace.audit, &after_grace.pool)
        .await;
    if abandoned > 0 {
        tracing::warn!(
            abandoned,
            "unlocks still waiting for lock-gateway were recorded as unconfirmed"
        );
    }
    // Abandoned calls may still hold handles to the audit writer: it is closed rather
    // than waited on, commits what is queued and stops.
    after_grace.audit.close();
    drop(after_grace);
    provisioning.abort();
    let _ = provisioning.await;
    if let Some(reconciliation) = reconciliation {
        reconciliation.abort();
        let _ = reconciliation.await;
    }
    // A runtime torn down meanwhile cancels the wait; that is no reason to panic.
    let mut audit_workers = audit_workers;
    while let Some(ended) = audit_workers.join_next().await {
        if let Err(error) = ended {
            tracing::warn!(%error, "the audit writer's watch ended early");
        }
    }
    tracing::info!("access-service stopped");
    Ok(())
}
