//! lock-gateway serves SERVICE callers only, each scoped to its tenant.

#![allow(clippy::unwrap_used)]

use latchkey::pb::gateway::v1::ListAccountsRequest;
use latchkey::pb::gateway::v1::lock_gateway_client::LockGatewayClient;
use std::time::Duration;

use latchkey::testkit::{
    RunningServer, TEST_JWT_SECRET, TcpProxy, TestDb, authorized, postgres_addr, token,
};
use lock_gateway::{Config, RunError};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

async fn start(db: &TestDb) -> RunningServer<RunError> {
    let mut config = Config::new(db.url(), TEST_JWT_SECRET);
    config.db.db_health_interval_ms = 50;
    RunningServer::spawn(|listener, shutdown| lock_gateway::run(listener, config, shutdown)).await
}

/// Waits until the gateway's health reports SERVING: it has reached its database.
async fn serving(server: &RunningServer<RunError>) {
    let mut watch = HealthClient::new(server.channel().await)
        .watch(HealthCheckRequest {
            service: "latchkey.gateway.v1.LockGateway".into(),
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(update) = watch.next().await {
        if update.unwrap().status == ServingStatus::Serving as i32 {
            return;
        }
    }
    panic!("health ended before reporting SERVING");
}

const CALLBACK_SECRET: &str = "callback-secret-of-the-api-tests";

/// Posts a TTLock lock-record callback to the receiver.
async fn post_callback(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            "lockId=7252408&notifyType=1&records=%5B%7B%22lockId%22%3A7252408%2C%22recordType%22%3A7%2C%22success%22%3A1%2C%22lockDate%22%3A1680810186000%7D%5D",
        )
        .send()
        .await
        .unwrap()
}

async fn database() -> TestDb {
    TestDb::migrated(vec![(
        lock_gateway::db::SCHEMA,
        lock_gateway::db::MIGRATIONS,
        lock_gateway::db::MIGRATIONS_DIR,
    )])
    .await
}

async fn insert_account(db: &TestDb, tenant: &str, username: &str) {
    db.client()
        .await
        .execute(
            "INSERT INTO gateway.ttlock_accounts \
             (id, tenant_id, name, base_url, client_id, username, key_id, client_secret_enc, password_md5_enc) \
             VALUES ($1::text::uuid, $2, $3, 'https://euapi.ttlock.com', 'client', $3, 'k1', '\\x00', '\\x00')",
            &[&uuid::Uuid::now_v7().to_string(), &tenant, &username],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn only_service_callers_are_served() {
    let db = database().await;
    let server = start(&db).await;
    let mut client = LockGatewayClient::new(server.channel().await);

    let status = client
        .list_accounts(ListAccountsRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    for roles in [&["ADMIN"][..], &["MANAGER"], &["member"]] {
        let status = client
            .list_accounts(authorized(
                ListAccountsRequest {},
                &token("t1", "someone", roles),
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{roles:?}");
    }
    let served = client
        .list_accounts(authorized(
            ListAccountsRequest {},
            &token("t1", "access-service", &["SERVICE"]),
        ))
        .await;
    assert!(served.is_ok(), "{served:?}");
}

#[tokio::test]
async fn accounts_are_scoped_to_the_callers_tenant() {
    let db = database().await;
    insert_account(&db, "t1", "owner-one@example.com").await;
    insert_account(&db, "t2", "owner-two@example.com").await;
    let server = start(&db).await;
    let mut client = LockGatewayClient::new(server.channel().await);

    let accounts = client
        .list_accounts(authorized(
            ListAccountsRequest {},
            &token("t1", "access-service", &["SERVICE"]),
        ))
        .await
        .unwrap()
        .into_inner()
        .accounts;
    let usernames: Vec<_> = accounts.iter().map(|a| a.username.as_str()).collect();
    assert_eq!(usernames, ["owner-one@example.com"]);
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    use tonic_reflection::pb::v1;
    let db = database().await;
    let server = start(&db).await;
    serving(&server).await;

    let mut reflection =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "latchkey.gateway.v1.LockGateway")
    );
}

#[tokio::test]
async fn a_gateway_started_while_the_database_is_away_answers_at_once_and_serves_once_it_is_back() {
    let db = database().await;
    let proxy = TcpProxy::start(postgres_addr()).await;
    proxy.cut();
    let mut config = Config::new(&proxy.url_through(db.url()), TEST_JWT_SECRET);
    config.db.db_health_interval_ms = 50;
    config.start_wait_ms = 100;
    config.callback_secret = Some(secrecy::SecretString::from(CALLBACK_SECRET.to_owned()));
    let callbacks = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback_url = format!(
        "http://{}/ttlock/callback/{CALLBACK_SECRET}",
        callbacks.local_addr().unwrap()
    );
    let server = RunningServer::spawn(|listener, shutdown| {
        lock_gateway::run_with_callbacks(listener, Some(callbacks), config, shutdown)
    })
    .await;
    // It keeps trying rather than giving up at the first refusal.
    tokio::time::timeout(Duration::from_secs(30), proxy.refused_at_least(2))
        .await
        .expect("the gateway went on trying the database");

    // Meanwhile the port answers: probes hear NOT_SERVING, calls are refused UNAVAILABLE.
    let mut health = HealthClient::new(server.channel().await);
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        health.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("health answers while the database is away")
    .unwrap()
    .into_inner()
    .status;
    assert_eq!(status, ServingStatus::NotServing as i32);
    let service_caller = token("t1", "access-service", &["SERVICE"]);
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        LockGatewayClient::new(server.channel().await)
            .list_accounts(authorized(ListAccountsRequest {}, &service_caller)),
    )
    .await
    .expect("a call is answered while the database is away")
    .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(
        refused.get_error_details().error_info().unwrap().reason,
        "STARTING"
    );
    // TTLock's callbacks are refused for now, so it delivers them again later.
    let early = tokio::time::timeout(Duration::from_secs(5), post_callback(&callback_url))
        .await
        .expect("the callback receiver answers while the database is away");
    assert_eq!(early.status(), 503);
    // Still authenticated: no token, no answer about the gateway's state.
    let anonymous = LockGatewayClient::new(server.channel().await)
        .list_accounts(ListAccountsRequest {})
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    proxy.restore();
    serving(&server).await;
    let listed = LockGatewayClient::new(server.channel().await)
        .list_accounts(authorized(ListAccountsRequest {}, &service_caller))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.accounts.is_empty());
    let stored = post_callback(&callback_url).await;
    assert_eq!(stored.status(), 200);
    assert_eq!(stored.text().await.unwrap(), "success");
    server.stop().await.unwrap();

    // Stopped while it waits, it ends without having served.
    proxy.cut();
    let refused = proxy.refused();
    let config = Config::new(&proxy.url_through(db.url()), TEST_JWT_SECRET);
    let waiting =
        RunningServer::spawn(|listener, shutdown| lock_gateway::run(listener, config, shutdown))
            .await;
    tokio::time::timeout(Duration::from_secs(30), proxy.refused_at_least(refused + 1))
        .await
        .expect("the second gateway tried the database");
    tokio::time::timeout(Duration::from_secs(10), waiting.stop())
        .await
        .expect("it stops while waiting")
        .unwrap();
}

#[tokio::test]
async fn a_gateway_whose_stored_key_it_cannot_open_stops_with_the_reason() {
    let db = database().await;
    // A first start stores the digest key, sealed under the configured key "k1".
    let first = start(&db).await;
    serving(&first).await;
    first.stop().await.unwrap();
    // The key is replaced without keeping the old one for reading.
    let mut config = Config::new(db.url(), TEST_JWT_SECRET);
    config.encryption_key = secrecy::SecretString::from(
        "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0".to_owned(),
    );
    config.encryption_key_id = "k2".to_owned();
    let server =
        RunningServer::spawn(|listener, shutdown| lock_gateway::run(listener, config, shutdown))
            .await;
    let ended = tokio::time::timeout(Duration::from_secs(30), server.finished())
        .await
        .expect("the gateway stops by itself");
    assert!(matches!(ended, Err(RunError::Crypto(_))), "{ended:?}");
}
