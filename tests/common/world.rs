//! A world for access-code tests: both services on one database, the TTLock simulator,
//! one injectable clock for all three, a property, and a registered TTLock account.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use latchkey::clock::ManualClock;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_code_service_client::AccessCodeServiceClient;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::pb::gateway::v1::lock_gateway_client::LockGatewayClient;
use latchkey::testkit::{RunningServer, TEST_JWT_SECRET, TestDb, authorized, token};
use lock_gateway::sim::{SimConfig, SimHandle, Simulator};
use lock_gateway::ttlock::{
    AccountConfig, ClientConfig, PasscodeText, Password, TtlockClient, Validity,
};
use secrecy::SecretString;
use tonic::transport::Channel;

pub const FRONT_DOOR: i64 = 7_252_408;
pub const ROOM_101: i64 = 6_901_284;
pub const ANNEX: i64 = 2_182_419;
pub const BIKE_SHED: i64 = 18_951_786;
pub const LOBBY_GATEWAY: i64 = 34_144;

pub struct World {
    pub db: TestDb,
    pub clock: ManualClock,
    pub sim: SimHandle,
    pub gateway: RunningServer<lock_gateway::RunError>,
    pub access: Vec<RunningServer<access_service::RunError>>,
    pub admin: String,
    pub account: String,
    pub property: pb::Property,
    /// A SERVICE token of the tenant, for lock-gateway.
    pub service: String,
}

pub fn access_config(db: &TestDb, gateway: &str, clock: &ManualClock) -> access_service::Config {
    let mut config = super::access_config(db, gateway.to_owned());
    config.clock = Some(Arc::new(clock.clone()));
    config.provisioning_poll_ms = 20;
    config.provisioning_lease_secs = 2;
    config.follow_device_events = false;
    config.device_events_scan_ms = 50;
    config
}

impl World {
    pub async fn new(replicas: usize, settings: pb::CodeSettings) -> Self {
        Self::with_follower(replicas, settings, false).await
    }

    /// `follow`: access-service follows lock-gateway's device events.
    pub async fn with_follower(replicas: usize, settings: pb::CodeSettings, follow: bool) -> Self {
        let db = super::database().await;
        let clock = ManualClock::starting_now();
        let sim = Simulator::start(SimConfig {
            clock: Arc::new(clock.clone()),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let mut gateway_config = lock_gateway::Config::new(db.url(), TEST_JWT_SECRET);
        gateway_config.clock = Some(Arc::new(clock.clone()));
        gateway_config.ttlock_requests_per_second = 2000.0;
        let gateway = RunningServer::spawn(|listener, shutdown| {
            lock_gateway::run(listener, gateway_config, shutdown)
        })
        .await;
        let mut access = Vec::new();
        for _ in 0..replicas {
            let mut config = access_config(&db, &gateway.url(), &clock);
            config.follow_device_events = follow;
            access.push(super::start_access(config).await);
        }
        let service = token("acme", "access-service", &["SERVICE"]);
        let service_token = service.clone();
        let account = LockGatewayClient::new(gateway.channel().await)
            .register_account(authorized(sim.register_request(), &service))
            .await
            .unwrap()
            .into_inner()
            .id;
        let admin = token("acme", "admin", &["ADMIN"]);
        let property = DirectoryServiceClient::new(access[0].channel().await)
            .create_property(authorized(
                pb::CreatePropertyRequest {
                    property: Some(pb::Property {
                        name: "Casa Azul".into(),
                        time_zone: "Europe/Madrid".into(),
                        code_settings: Some(settings),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        Self {
            db,
            clock,
            sim,
            gateway,
            access,
            admin,
            account,
            property,
            service: service_token,
        }
    }

    pub async fn channel(&self, replica: usize) -> Channel {
        self.access[replica].channel().await
    }

    pub async fn codes(&self, replica: usize) -> AccessCodeServiceClient<Channel> {
        AccessCodeServiceClient::new(self.channel(replica).await)
    }

    pub async fn door(&self, name: &str, lock: Option<i64>) -> String {
        DirectoryServiceClient::new(self.channel(0).await)
            .create_door(authorized(
                pb::CreateDoorRequest {
                    door: Some(pb::Door {
                        property_id: self.property.id.clone(),
                        name: name.into(),
                        r#type: pb::DoorType::Unit as i32,
                        active: true,
                        lock: lock.map(|lock_id| pb::LockBinding {
                            account_id: self.account.clone(),
                            lock_id,
                        }),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &self.admin,
            ))
            .await
            .unwrap()
            .into_inner()
            .id
    }

    pub async fn issue(
        &self,
        replica: usize,
        doors: &[&str],
        code: &str,
        window: Option<(DateTime<Utc>, DateTime<Utc>)>,
        request_id: &str,
    ) -> pb::IssueAccessCodeResponse {
        let (kind, start, end) = match window {
            Some((start, end)) => (
                pb::CodeType::Temporary,
                Some(latchkey::pb::timestamp(start)),
                Some(latchkey::pb::timestamp(end)),
            ),
            None => (pb::CodeType::Permanent, None, None),
        };
        self.codes(replica)
            .await
            .issue_access_code(authorized(
                pb::IssueAccessCodeRequest {
                    door_ids: doors.iter().map(|d| (*d).to_owned()).collect(),
                    grantee: Some(pb::Grantee {
                        r#type: pb::GranteeType::Provider as i32,
                        name: format!("Provider {request_id}"),
                        ..Default::default()
                    }),
                    purpose: pb::CodePurpose::Maintenance as i32,
                    r#type: kind as i32,
                    start_time: start,
                    end_time: end,
                    code: code.into(),
                    request_id: request_id.into(),
                    ..Default::default()
                },
                &self.admin,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// A generated code of `length` digits.
    pub async fn issue_with_length(
        &self,
        replica: usize,
        doors: &[&str],
        length: i32,
        window: Option<(DateTime<Utc>, DateTime<Utc>)>,
        request_id: &str,
    ) -> pb::IssueAccessCodeResponse {
        let (start, end) = window.unzip();
        self.codes(replica)
            .await
            .issue_access_code(authorized(
                pb::IssueAccessCodeRequest {
                    door_ids: doors.iter().map(|d| (*d).to_owned()).collect(),
                    grantee: Some(pb::Grantee {
                        r#type: pb::GranteeType::Guest as i32,
                        name: format!("Guest {request_id}"),
                        ..Default::default()
                    }),
                    purpose: pb::CodePurpose::Stay as i32,
                    r#type: pb::CodeType::Temporary as i32,
                    start_time: start.map(latchkey::pb::timestamp),
                    end_time: end.map(latchkey::pb::timestamp),
                    code_length: length,
                    request_id: request_id.into(),
                    ..Default::default()
                },
                &self.admin,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn code(&self, id: &str) -> pb::AccessCode {
        self.codes(0)
            .await
            .get_access_code(authorized(
                pb::GetAccessCodeRequest { id: id.into() },
                &self.admin,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn door_state(&self, code: &str) -> pb::SyncState {
        self.code(code).await.doors[0].sync_state()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db
            .client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    pub fn adds(&self) -> u64 {
        self.sim
            .stats()
            .requests_by_path
            .get("/v3/keyboardPwd/add")
            .copied()
            .unwrap_or(0)
    }

    /// A passcode put on a lock with the TTLock app, outside latchkey.
    pub async fn app_passcode(&self, lock_id: i64, code: &str, name: &str) {
        let fixture = &self.sim.accounts()[0];
        TtlockClient::new(
            AccountConfig::new(
                fixture.client_id.clone(),
                SecretString::from(fixture.client_secret.clone()),
                fixture.username.clone(),
                Password::Plain(SecretString::from(fixture.password.clone())),
            )
            .with_base_url(self.sim.base_url()),
            ClientConfig::default(),
            Arc::new(self.clock.clone()),
        )
        .unwrap()
        .add_passcode(
            lock_id,
            &PasscodeText::new(code),
            Some(name),
            Validity::Permanent,
        )
        .await
        .unwrap();
    }

    /// Every row of both services' tables as text, for looking for plaintext.
    pub async fn stored_text(&self) -> String {
        let client = self.db.client().await;
        let tables = client
            .query(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables \
                 WHERE table_schema IN ('access', 'gateway') AND table_type = 'BASE TABLE'",
                &[],
            )
            .await
            .unwrap();
        let mut all = String::new();
        for table in tables {
            let name: String = table.get(0);
            for row in client
                .query(&format!("SELECT t::text FROM {name} t"), &[])
                .await
                .unwrap()
            {
                all.push_str(&row.get::<_, String>(0));
                all.push('\n');
            }
        }
        all
    }
}

/// Waits for `done` to hold, failing after a generous deadline instead of hanging.
pub async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn madrid(date: chrono::NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    chrono_tz::Europe::Madrid
        .from_local_datetime(&date.and_hms_opt(hour, minute, 0).unwrap())
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

pub fn date(d: chrono::NaiveDate) -> pb::Date {
    pb::Date {
        year: d.year(),
        month: i32::try_from(d.month()).unwrap(),
        day: i32::try_from(d.day()).unwrap(),
    }
}

pub fn settings() -> pb::CodeSettings {
    pb::CodeSettings {
        auto_generate: true,
        default_code_length: 6,
        check_in_time: "15:00".into(),
        check_out_time: "11:00".into(),
        ..Default::default()
    }
}

impl World {
    pub async fn door_state_of(&self, code: &str, door: &str) -> pb::SyncState {
        self.code(code)
            .await
            .doors
            .iter()
            .find(|d| d.door_id == door)
            .map_or(pb::SyncState::Unspecified, |d| d.sync_state())
    }
}

impl World {
    /// lock-gateway reads the account's locks and their new records.
    pub async fn sync_locks(&self) {
        LockGatewayClient::new(self.gateway.channel().await)
            .sync_locks(authorized(
                latchkey::pb::gateway::v1::SyncLocksRequest {
                    account_id: self.account.clone(),
                },
                &self.service,
            ))
            .await
            .unwrap();
    }

    pub async fn logs(&self, filter: pb::LogFilter) -> Vec<pb::AccessLog> {
        latchkey::pb::access::v1::audit_service_client::AuditServiceClient::new(
            self.channel(0).await,
        )
        .query_access_logs(authorized(
            pb::QueryAccessLogsRequest {
                filter: Some(filter),
                page_size: 1000,
                page_token: String::new(),
            },
            &self.admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .logs
    }
}
