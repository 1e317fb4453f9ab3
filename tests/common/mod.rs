//! The pair, started in-process on one database holding both services' schemas.

#![allow(dead_code, clippy::unwrap_used)]

use latchkey::testkit::{RunningServer, TEST_JWT_SECRET, TestDb};

pub struct Pair {
    pub db: TestDb,
    pub gateway: RunningServer<lock_gateway::RunError>,
    pub access: RunningServer<access_service::RunError>,
}

pub async fn database() -> TestDb {
    TestDb::migrated(vec![
        (access_service::db::SCHEMA, access_service::db::MIGRATIONS),
        (lock_gateway::db::SCHEMA, lock_gateway::db::MIGRATIONS),
    ])
    .await
}

pub async fn start_gateway(db: &TestDb) -> RunningServer<lock_gateway::RunError> {
    let config = lock_gateway::Config::new(db.url(), TEST_JWT_SECRET);
    RunningServer::spawn(|listener, shutdown| lock_gateway::run(listener, config, shutdown)).await
}

pub fn access_config(db: &TestDb, gateway_url: String) -> access_service::Config {
    let mut config = access_service::Config::new(db.url(), TEST_JWT_SECRET);
    config.lock_gateway_url = gateway_url;
    config
}

pub async fn start_access(
    config: access_service::Config,
) -> RunningServer<access_service::RunError> {
    RunningServer::spawn(|listener, shutdown| access_service::run(listener, config, shutdown)).await
}

pub async fn start() -> Pair {
    let db = database().await;
    let gateway = start_gateway(&db).await;
    let access = start_access(access_config(&db, gateway.url())).await;
    Pair {
        db,
        gateway,
        access,
    }
}

/// Registers a TTLock account row for `tenant` directly in lock-gateway's schema.
pub async fn insert_account(db: &TestDb, tenant: &str, username: &str) {
    db.client()
        .await
        .execute(
            "INSERT INTO gateway.ttlock_accounts \
             (id, tenant_id, name, base_url, client_id, username, key_id, client_secret_enc, password_md5_enc) \
             VALUES (gen_random_uuid(), $1, $2, 'https://euapi.ttlock.com', 'client', $2, 'k1', '\\x00', '\\x00')",
            &[&tenant, &username],
        )
        .await
        .unwrap();
}
