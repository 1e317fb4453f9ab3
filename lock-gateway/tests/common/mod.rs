//! The setup every lock-gateway suite over a real socket shares: lock-gateway on its own
//! PostgreSQL database, the TTLock simulator over HTTP, and the simulator's account
//! registered through `RegisterAccount`. Each suite uses part of it.

#![allow(dead_code, clippy::unwrap_used)]

use chrono::{DateTime, SubsecRound, Utc};
use latchkey::pb::gateway::v1 as pb;
use latchkey::pb::gateway::v1::lock_gateway_client::LockGatewayClient;
use latchkey::pb::timestamp;
use latchkey::testkit::{RunningServer, TEST_JWT_SECRET, TestDb, authorized, token};
use lock_gateway::sim::{SimConfig, SimHandle, Simulator};
use lock_gateway::{Config, RunError};
use prost_types::Timestamp;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// Locks of the simulator's default fixture.
pub const FRONT_DOOR: i64 = 7_252_408;
/// Same gateway as the front door, and a lock clock in step with the cloud's.
pub const ROOM_101: i64 = 6_901_284;
/// Bluetooth only: no gateway reaches it.
pub const STORAGE: i64 = 1_928_723;
pub const LOBBY_GATEWAY: i64 = 34_144;

pub const ADD: &str = "/v3/keyboardPwd/add";
pub const CHANGE: &str = "/v3/keyboardPwd/change";
pub const DELETE: &str = "/v3/keyboardPwd/delete";

pub struct Harness {
    pub sim: SimHandle,
    pub db: TestDb,
    pub _server: RunningServer<RunError>,
    pub client: LockGatewayClient<Channel>,
    pub account: String,
    pub service: String,
}

impl Harness {
    /// lock-gateway on a fresh database, with the simulator's account registered the way
    /// a caller would: through `RegisterAccount` with a SERVICE token.
    pub async fn start() -> Self {
        Self::start_with(SimConfig::default()).await
    }

    pub async fn start_with(sim: SimConfig) -> Self {
        let sim = Simulator::start(sim).await.unwrap();
        let db = TestDb::migrated(vec![(
            lock_gateway::db::SCHEMA,
            lock_gateway::db::MIGRATIONS,
            lock_gateway::db::MIGRATIONS_DIR,
        )])
        .await;
        let config = Config::new(db.url(), TEST_JWT_SECRET);
        let server = RunningServer::spawn(|listener, shutdown| {
            lock_gateway::run(listener, config, shutdown)
        })
        .await;
        let client = LockGatewayClient::new(server.channel().await);
        let service = token("acme", "access-service", &["SERVICE"]);
        let mut h = Self {
            sim,
            db,
            _server: server,
            client,
            account: String::new(),
            service,
        };
        h.account = h.register(&h.service.clone()).await;
        h
    }

    /// Registers the simulator's account for the tenant of `service`; returns its id.
    pub async fn register(&self, service: &str) -> String {
        self.client
            .clone()
            .register_account(authorized(self.sim.register_request(), service))
            .await
            .unwrap()
            .into_inner()
            .id
    }

    pub fn req<T>(&self, message: T) -> Request<T> {
        authorized(message, &self.service)
    }

    pub fn new_passcode(
        &self,
        lock_id: i64,
        code: &str,
        window: Option<(DateTime<Utc>, DateTime<Utc>)>,
        request_id: &str,
    ) -> pb::CreatePasscodeRequest {
        pb::CreatePasscodeRequest {
            account_id: self.account.clone(),
            lock_id,
            code: code.into(),
            name: "Guest".into(),
            start_time: window.map(|(start, _)| timestamp(start)),
            end_time: window.map(|(_, end)| timestamp(end)),
            request_id: request_id.into(),
        }
    }

    pub async fn create(
        &self,
        lock_id: i64,
        code: &str,
        window: Option<(DateTime<Utc>, DateTime<Utc>)>,
        request_id: &str,
    ) -> pb::PasscodeResult {
        let request = self.new_passcode(lock_id, code, window, request_id);
        self.client
            .clone()
            .create_passcode(self.req(request))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn change(&self, request: pb::ChangePasscodeRequest) -> pb::PasscodeResult {
        self.client
            .clone()
            .change_passcode(self.req(request))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn delete(
        &self,
        lock_id: i64,
        passcode_id: i64,
        request_id: &str,
    ) -> pb::PasscodeResult {
        let request = pb::DeletePasscodeRequest {
            account_id: self.account.clone(),
            lock_id,
            passcode_id,
            request_id: request_id.into(),
        };
        self.client
            .clone()
            .delete_passcode(self.req(request))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn list(&self, lock_id: i64) -> pb::ListPasscodesResponse {
        let request = pb::ListPasscodesRequest {
            account_id: self.account.clone(),
            lock_id,
        };
        self.client
            .clone()
            .list_passcodes(self.req(request))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn records(
        &self,
        lock_id: i64,
        since: Option<Timestamp>,
    ) -> pb::ListLockRecordsResponse {
        let request = pb::ListLockRecordsRequest {
            account_id: self.account.clone(),
            lock_id,
            since,
        };
        self.client
            .clone()
            .list_lock_records(self.req(request))
            .await
            .unwrap()
            .into_inner()
    }

    /// Requests the simulator received on `path`.
    pub fn sent(&self, path: &str) -> u64 {
        self.sim
            .stats()
            .requests_by_path
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Every row of every table of the `gateway` schema, as text (bytea as hex).
    pub async fn stored(&self) -> String {
        let client = self.db.client().await;
        let tables = client
            .query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = 'gateway' AND table_type = 'BASE TABLE'",
                &[],
            )
            .await
            .unwrap();
        let mut dump = String::new();
        for table in tables {
            let name: String = table.get(0);
            let sql = format!("SELECT t::text FROM gateway.\"{name}\" t");
            for row in client.query(&sql, &[]).await.unwrap() {
                dump.push_str(&row.get::<_, String>(0));
                dump.push('\n');
            }
        }
        dump
    }

    /// Every row of every table of the `gateway` schema as JSON, without its bytea
    /// columns: where a code stored as text would show. The hex of digests and
    /// ciphertexts is left out, where a short code would turn up by chance.
    pub async fn stored_text(&self) -> String {
        let client = self.db.client().await;
        let tables = client
            .query(
                "SELECT t.table_name::text, coalesce(array_agg(c.column_name::text) \
                   FILTER (WHERE c.data_type = 'bytea'), '{}') \
                 FROM information_schema.tables t JOIN information_schema.columns c \
                   ON c.table_schema = t.table_schema AND c.table_name = t.table_name \
                 WHERE t.table_schema = 'gateway' AND t.table_type = 'BASE TABLE' \
                 GROUP BY t.table_name",
                &[],
            )
            .await
            .unwrap();
        let mut dump = String::new();
        for table in tables {
            let name: String = table.get(0);
            let bytea: Vec<String> = table.get(1);
            let sql = format!("SELECT (to_jsonb(t) - $1::text[])::text FROM gateway.\"{name}\" t");
            for row in client.query(&sql, &[&bytea]).await.unwrap() {
                dump.push_str(&row.get::<_, String>(0));
                dump.push('\n');
            }
        }
        dump
    }

    /// No code is in the database, as text or as the hex a bytea would show.
    pub async fn assert_not_stored(&self, codes: &[&str]) {
        let stored = self.stored().await;
        let text = self.stored_text().await;
        assert!(stored.contains("CREATE"), "the claims are part of the dump");
        assert!(
            text.contains("CREATE"),
            "the claims' text is part of the text dump"
        );
        for code in codes {
            assert!(!text.contains(code), "{code} stored");
            assert!(
                !stored.contains(&hex::encode(code)),
                "{code} stored as bytes"
            );
        }
    }
}

/// Now, to the second: TTLock counts milliseconds and the lock whole seconds.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

pub fn fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut fields: Vec<String> = status
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    fields.sort();
    fields
}

pub fn outcome(result: &pb::PasscodeResult) -> pb::PasscodeOutcome {
    pb::PasscodeOutcome::try_from(result.outcome).unwrap()
}
