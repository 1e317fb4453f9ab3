//! Starting access-service in-process on its own database.

#![allow(dead_code, clippy::unwrap_used)]

use access_service::{Config, RunError};
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::testkit::{RunningServer, TEST_JWT_SECRET, TestDb, authorized};
use tonic::transport::Channel;

pub async fn database() -> TestDb {
    TestDb::migrated(vec![(
        access_service::db::SCHEMA,
        access_service::db::MIGRATIONS,
        access_service::db::MIGRATIONS_DIR,
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
    // Tests that purge do it themselves; the retention job has a test of its own.
    config.audit_retention_days = 0;
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

/// Waits until a query of a pool named `application` (the service's, or [`pool`]'s:
/// `access-service-test`) waits on a lock the test holds.
pub async fn wait_until_blocked(db: &TestDb, application: &str) {
    let observer = db.client().await;
    for _ in 0..1500 {
        let row = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&application],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no query of {application} ever blocked on the test's lock");
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

pub async fn rules(
    server: &RunningServer<RunError>,
) -> latchkey::pb::access::v1::rule_service_client::RuleServiceClient<Channel> {
    latchkey::pb::access::v1::rule_service_client::RuleServiceClient::new(server.channel().await)
}

/// The fields an `INVALID_ARGUMENT` names, in order.
pub fn fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// The stable `ErrorInfo` reason of an error.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// The tenant's audit rows as (action, target_type, target_id), in chain order.
pub async fn audit_rows(db: &TestDb, tenant: &str) -> Vec<(String, String, String)> {
    db.client()
        .await
        .query(
            "SELECT action, target_type, target_id FROM access.audit_log \
             WHERE tenant_id = $1 ORDER BY sequence",
            &[&tenant],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// An expected audit row.
pub fn audited(action: &str, target_type: &str, target_id: &str) -> (String, String, String) {
    (
        action.to_owned(),
        target_type.to_owned(),
        target_id.to_owned(),
    )
}

/// Creates a property in the token's tenant.
pub async fn property(
    client: &mut DirectoryServiceClient<Channel>,
    token: &str,
    name: &str,
    time_zone: &str,
) -> pb::Property {
    let request = pb::CreatePropertyRequest {
        property: Some(pb::Property {
            name: name.into(),
            time_zone: time_zone.into(),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    client
        .create_property(authorized(request, token))
        .await
        .unwrap()
        .into_inner()
}

/// An active entrance of `property_id` with no zone or lock of its own.
pub fn door_spec(property_id: &str, name: &str) -> pb::Door {
    pb::Door {
        property_id: property_id.into(),
        name: name.into(),
        r#type: pb::DoorType::Entrance.into(),
        active: true,
        ..Default::default()
    }
}

pub async fn door(
    client: &mut DirectoryServiceClient<Channel>,
    token: &str,
    spec: pb::Door,
) -> pb::Door {
    let request = pb::CreateDoorRequest {
        door: Some(spec),
        request_id: String::new(),
    };
    client
        .create_door(authorized(request, token))
        .await
        .unwrap()
        .into_inner()
}

/// An active user with the given name and roles.
pub async fn user(
    client: &mut DirectoryServiceClient<Channel>,
    token: &str,
    name: &str,
    roles: &[&str],
) -> pb::User {
    let request = pb::CreateUserRequest {
        user: Some(pb::User {
            name: name.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            active: true,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    client
        .create_user(authorized(request, token))
        .await
        .unwrap()
        .into_inner()
}

/// An active rule on `door_id` granting `user_id` at any time.
pub async fn grant(
    rules: &mut latchkey::pb::access::v1::rule_service_client::RuleServiceClient<Channel>,
    token: &str,
    door_id: &str,
    user_id: &str,
    name: &str,
) -> pb::Rule {
    let request = pb::CreateRuleRequest {
        rule: Some(pb::Rule {
            door_id: door_id.into(),
            name: name.into(),
            user_ids: vec![user_id.into()],
            active: true,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    rules
        .create_rule(authorized(request, token))
        .await
        .unwrap()
        .into_inner()
}

/// A field mask of `paths`.
pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

/// A port nothing listens on now, for a process the test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects once the process on `port` listens (it was just started; nothing else to
/// wait on).
pub async fn connect(port: u16) -> Channel {
    for _ in 0..500 {
        if let Ok(channel) =
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                .unwrap()
                .connect()
                .await
        {
            return channel;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("access-service never listened on {port}");
}
