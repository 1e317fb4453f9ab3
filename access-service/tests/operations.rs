//! Operating the service: migrations, reflection, health that follows the database (also
//! from a start without it), pool exhaustion, and a graceful shutdown that lets in-flight
//! calls finish.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use latchkey::db::DbConfig;
use latchkey::pb::access::v1::{CreatePropertyRequest, ListPropertiesRequest, Property};
use latchkey::testkit::{TcpProxy, TestDb, authorized, postgres_addr, token};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_types::StatusExt;

const DIRECTORY: &str = "latchkey.access.v1.DirectoryService";

/// The server's overall health, as a Watch stream.
async fn watch_health(
    health: &mut HealthClient<tonic::transport::Channel>,
) -> tonic::Streaming<HealthCheckResponse> {
    health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Reads a health Watch stream until it reports `wanted`.
async fn wait_for(stream: &mut tonic::Streaming<HealthCheckResponse>, wanted: ServingStatus) {
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(update) = stream.next().await {
            if update.unwrap().status == wanted as i32 {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "health never became {wanted:?}");
}

fn new_property() -> CreatePropertyRequest {
    CreatePropertyRequest {
        property: Some(Property {
            name: "Office".into(),
            time_zone: "Europe/Madrid".into(),
            ..Property::default()
        }),
        request_id: String::new(),
    }
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_rerun_as_a_no_op() {
    let db = TestDb::empty().await;
    let config = DbConfig::for_url(db.url());
    let first = access_service::migrate(&config).await.unwrap();
    assert!(!first.is_empty());
    let again = access_service::migrate(&config).await.unwrap();
    assert!(again.is_empty(), "nothing left to apply: {again:?}");
    let tables = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = 'access' AND table_name IN ('tenants', 'properties')",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(tables, 2);
}

#[tokio::test]
async fn reflection_lists_the_services_in_both_protocol_versions() {
    use tonic_reflection::pb::{v1, v1alpha};
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&DIRECTORY.to_owned()), "{names:?}");
    assert!(
        names.contains(&"latchkey.access.v1.RuleService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                DIRECTORY.to_owned(),
            ),
        ),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = answers.next().await.unwrap().unwrap().message_response;
    assert!(
        matches!(
            response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref files))
                if !files.file_descriptor_proto.is_empty()
        ),
        "{response:?}"
    );
}

#[tokio::test]
async fn health_follows_the_database_without_a_restart() {
    let db = common::database().await;
    let proxy = TcpProxy::start(postgres_addr()).await;
    let server = common::start(common::config(&proxy.url_through(db.url()))).await;
    let mut health = HealthClient::new(server.channel().await);
    let mut directory = common::directory(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);

    let mut watch = watch_health(&mut health).await;
    wait_for(&mut watch, ServingStatus::Serving).await;

    proxy.cut();
    wait_for(&mut watch, ServingStatus::NotServing).await;
    let check = health
        .check(HealthCheckRequest {
            service: DIRECTORY.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(check.status, ServingStatus::NotServing as i32);
    let status = directory
        .list_properties(authorized(ListPropertiesRequest::default(), &admin))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    proxy.restore();
    wait_for(&mut watch, ServingStatus::Serving).await;
    let listed = directory
        .list_properties(authorized(ListPropertiesRequest::default(), &admin))
        .await;
    assert!(listed.is_ok(), "{listed:?}");
}

#[tokio::test]
async fn a_service_started_while_the_database_is_away_answers_and_serves_once_it_is_back() {
    let db = common::database().await;
    let proxy = TcpProxy::start(postgres_addr()).await;
    proxy.cut();
    let server = common::start(common::config(&proxy.url_through(db.url()))).await;
    let mut health = HealthClient::new(server.channel().await);
    let mut directory = common::directory(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);

    // Probes and calls are answered at once, not left hanging on the port.
    let check = tokio::time::timeout(
        Duration::from_secs(10),
        health.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("health answers while the database is away")
    .unwrap()
    .into_inner();
    assert_eq!(check.status, ServingStatus::NotServing as i32);
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        directory.list_properties(authorized(ListPropertiesRequest::default(), &admin)),
    )
    .await
    .expect("a call is answered while the database is away")
    .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    proxy.restore();
    let mut watch = watch_health(&mut health).await;
    wait_for(&mut watch, ServingStatus::Serving).await;
    let created = directory
        .create_property(authorized(new_property(), &admin))
        .await;
    assert!(created.is_ok(), "{created:?}");
    let listed = directory
        .list_properties(authorized(ListPropertiesRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.properties.len(), 1);
}

#[tokio::test]
async fn an_exhausted_pool_answers_unavailable_instead_of_hanging() {
    let db = common::database().await;
    let mut config = common::config(db.url());
    config.db.db_pool_size = 1;
    config.db.db_pool_wait_timeout_ms = 200;
    let server = common::start(config).await;
    let admin = token("t1", "adm", &["ADMIN"]);
    let mut first = common::directory(&server).await;
    let mut second = common::directory(&server).await;

    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE access.properties IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let admin_first = admin.clone();
    let blocked = tokio::spawn(async move {
        first
            .list_properties(authorized(ListPropertiesRequest::default(), &admin_first))
            .await
    });
    common::wait_until_blocked(&db, "access-service").await;

    let status = second
        .list_properties(authorized(ListPropertiesRequest::default(), &admin))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "DATABASE_BUSY"
    );

    lock.commit().await.unwrap();
    assert!(blocked.await.unwrap().is_ok());
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_call_finish() {
    let db = common::database().await;
    let mut server = common::start(common::config(db.url())).await;
    let admin = token("t1", "adm", &["ADMIN"]);
    let mut directory = common::directory(&server).await;
    directory
        .create_property(authorized(new_property(), &admin))
        .await
        .unwrap();
    let mut health = HealthClient::new(server.channel().await);
    let mut watch = watch_health(&mut health).await;
    wait_for(&mut watch, ServingStatus::Serving).await;

    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE access.properties IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let in_flight = tokio::spawn(async move {
        directory
            .list_properties(authorized(ListPropertiesRequest::default(), &admin))
            .await
    });
    common::wait_until_blocked(&db, "access-service").await;

    server.begin_shutdown();
    wait_for(&mut watch, ServingStatus::NotServing).await;
    drop(watch);
    lock.commit().await.unwrap();

    let answer = in_flight.await.unwrap().unwrap().into_inner();
    assert_eq!(answer.properties.len(), 1);
    server.finished().await.unwrap();
}
