//! Starting access-service in-process on its own database.

#![allow(dead_code, clippy::unwrap_used)]

use access_service::{Config, RunError};
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::testkit::{RunningServer, TEST_JWT_SECRET, TestDb};
use tonic::transport::Channel;

pub async fn database() -> TestDb {
    TestDb::migrated(vec![(
        access_service::db::SCHEMA,
        access_service::db::MIGRATIONS,
    )])
    .await
}

pub fn config(database_url: &str) -> Config {
    let mut config = Config::new(database_url, TEST_JWT_SECRET);
    config.db.db_health_interval_ms = 50;
    config.db.db_connect_timeout_ms = 1000;
    config.db.db_pool_wait_timeout_ms = 1000;
    // Nothing listens here: calls that reach for lock-gateway fail fast.
    config.lock_gateway_url = "http://127.0.0.1:9".to_owned();
    config
}

pub async fn start(config: Config) -> RunningServer<RunError> {
    RunningServer::spawn(|listener, shutdown| access_service::run(listener, config, shutdown)).await
}

pub async fn directory(server: &RunningServer<RunError>) -> DirectoryServiceClient<Channel> {
    DirectoryServiceClient::new(server.channel().await)
}

/// A pool on the test database acting as the service's role, for appending audit rows
/// directly.
pub fn pool(db: &TestDb) -> latchkey::db::DbPool {
    latchkey::db::build_pool(
        &latchkey::db::DbConfig::for_url(db.url()),
        access_service::db::SCHEMA,
        "access-service-test",
        Some(access_service::config::DEFAULT_DB_ROLE),
    )
    .unwrap()
}

/// A denied or granted attempt at `door` by `user` from `ip`.
pub fn attempt(
    tenant: &str,
    user: &str,
    ip: &str,
    door: &str,
    granted: bool,
) -> access_service::audit::AuditEntry {
    use access_service::audit::{AuditAction, AuditEntry};
    let action = if granted {
        AuditAction::AccessGranted
    } else {
        AuditAction::AccessDenied
    };
    let mut entry = AuditEntry::new(tenant, "door-controller", action, granted);
    entry.user_id = user.to_owned();
    entry.client_ip = ip.to_owned();
    entry.door_id = door.to_owned();
    entry.door_name = format!("Door {door}");
    entry.method = "CARD".to_owned();
    entry.reason_code = if granted {
        "GRANTED"
    } else {
        "NO_MATCHING_RULE"
    }
    .to_owned();
    entry
}
