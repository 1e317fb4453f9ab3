//! Locks synced from the TTLock simulator, the callback receiver and its inbox, and the
//! device event stream resumed by cursor, over real sockets and a real PostgreSQL.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use latchkey::pb::gateway::v1 as pb;
use latchkey::pb::gateway::v1::lock_gateway_client::LockGatewayClient;
use latchkey::testkit::{RunningServer, TEST_JWT_SECRET, TestDb, authorized, token};
use lock_gateway::db::retention::{purge_callbacks_processed_before, purge_events_received_before};
use lock_gateway::sim::{SimConfig, SimHandle, Simulator, callback_form};
use lock_gateway::ttlock::{
    AccountConfig, ClientConfig, ManualClock, PasscodeText, Password, TtlockClient, Validity, clock,
};
use lock_gateway::{Config, RunError};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const SECRET: &str = "cb-7f3e9a1c5d2b8e4f6a0c9d1e";
const FRONT_DOOR: i64 = 7_252_408;
const ROOM_101: i64 = 6_901_284;
const ANNEX: i64 = 2_182_419;
const ANNEX_GATEWAY: i64 = 34_145;
const LOBBY_GATEWAY: i64 = 34_144;
const STORAGE: i64 = 1_928_723;

/// The real callback body from the reference (§8.2): an IC card unlock of lock 7252408.
const CAPTURED_BODY: &str = "lockId=7252408&notifyType=1&records=%5B%7B%22lockId%22%3A7252408%2C%22electricQuantity%22%3A93%2C%22serverDate%22%3A1680810180029%2C%22recordTypeFromLock%22%3A17%2C%22recordType%22%3A7%2C%22success%22%3A1%2C%22lockMac%22%3A%2216%3A72%3A4C%3ACC%3A01%3AC4%22%2C%22keyboardPwd%22%3A%221292195345%22%2C%22lockDate%22%3A1680810186000%2C%22username%22%3A%22Jonas%22%7D%5D&admin=jonas%40lemon.nz&lockMac=16%3A72%3A4C%3ACC%3A01%3AC4";

struct Gateway {
    server: RunningServer<RunError>,
    callbacks: SocketAddr,
}

impl Gateway {
    async fn start(db: &TestDb) -> Self {
        Self::start_with(db, |_| {}).await
    }

    async fn start_with(db: &TestDb, adjust: impl FnOnce(&mut Config)) -> Self {
        let callbacks = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = callbacks.local_addr().unwrap();
        let mut config = Config::new(db.url(), TEST_JWT_SECRET);
        config.callback_secret = Some(SecretString::from(SECRET.to_owned()));
        adjust(&mut config);
        let server = RunningServer::spawn(move |listener, shutdown| {
            lock_gateway::run_with_callbacks(listener, Some(callbacks), config, shutdown)
        })
        .await;
        Self {
            server,
            callbacks: addr,
        }
    }

    fn callback_url(&self, secret: &str) -> String {
        format!("http://{}/ttlock/callback/{secret}", self.callbacks)
    }

    async fn client(&self) -> LockGatewayClient<Channel> {
        LockGatewayClient::new(self.server.channel().await)
    }
}

struct Env {
    db: TestDb,
    sim: SimHandle,
    /// The simulated cloud's and locks' clock.
    clock: ManualClock,
    gateway: Gateway,
    account: String,
    service: String,
}

async fn env() -> Env {
    let db = TestDb::migrated(vec![(
        lock_gateway::db::SCHEMA,
        lock_gateway::db::MIGRATIONS,
        lock_gateway::db::MIGRATIONS_DIR,
    )])
    .await;
    let clock = ManualClock::starting_now();
    let sim = Simulator::start(SimConfig {
        clock: std::sync::Arc::new(clock.clone()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gateway = Gateway::start(&db).await;
    let service = token("acme", "access-service", &["SERVICE"]);
    let account = gateway
        .client()
        .await
        .register_account(authorized(sim.register_request(), &service))
        .await
        .unwrap()
        .into_inner()
        .id;
    Env {
        db,
        sim,
        clock,
        gateway,
        account,
        service,
    }
}

impl Env {
    async fn sync(&self) -> pb::SyncLocksResponse {
        self.gateway
            .client()
            .await
            .sync_locks(authorized(
                pb::SyncLocksRequest {
                    account_id: self.account.clone(),
                },
                &self.service,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    async fn watch(&self, after: i64) -> tonic::Streaming<pb::DeviceEvent> {
        self.gateway
            .client()
            .await
            .watch_device_events(authorized(
                pb::WatchDeviceEventsRequest {
                    after_cursor: after,
                },
                &self.service,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// A passcode put on the simulated lock by the TTLock app, outside this gateway.
    async fn app_passcode(&self, lock_id: i64, code: &str, name: &str) {
        let fixture = &self.sim.accounts()[0];
        let client = TtlockClient::new(
            AccountConfig::new(
                fixture.client_id.clone(),
                SecretString::from(fixture.client_secret.clone()),
                fixture.username.clone(),
                Password::Plain(SecretString::from(fixture.password.clone())),
            )
            .with_base_url(self.sim.base_url()),
            ClientConfig::default(),
            clock::system(),
        )
        .unwrap();
        client
            .add_passcode(
                lock_id,
                &PasscodeText::new(code),
                Some(name),
                Validity::Permanent,
            )
            .await
            .unwrap();
    }

    /// Every text the gateway's tables hold, for looking for plaintext.
    async fn stored_text(&self) -> String {
        let client = self.db.client().await;
        let mut all = String::new();
        for table in [
            "callback_inbox",
            "device_events",
            "locks",
            "remote_operations",
        ] {
            for row in client
                .query(&format!("SELECT t::text FROM gateway.{table} t"), &[])
                .await
                .unwrap()
            {
                all.push_str(&row.get::<_, String>(0));
                all.push('\n');
            }
        }
        all
    }

    /// The cursor of the newest event, to watch what comes after it.
    async fn head(&self) -> i64 {
        self.count("SELECT coalesce(max(cursor), 0) FROM gateway.device_events")
            .await
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db
            .client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// The next `n` events, failing rather than hanging when they do not come.
async fn take(stream: &mut tonic::Streaming<pb::DeviceEvent>, n: usize) -> Vec<pb::DeviceEvent> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events arrived: {events:#?}", events.len()));
        events.push(next.expect("stream ended").unwrap());
    }
    events
}

fn kinds(events: &[pb::DeviceEvent]) -> Vec<(i64, pb::DeviceEventKind)> {
    events.iter().map(|e| (e.lock_id, e.kind())).collect()
}

async fn post(url: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sync_reports_added_changed_and_removed_locks_with_their_events() {
    let env = env().await;
    let first = env.sync().await;
    let mut added: Vec<i64> = first.added.iter().map(|l| l.lock_id).collect();
    added.sort_unstable();
    assert_eq!(added, [STORAGE, ANNEX, ROOM_101, FRONT_DOOR, 18_951_786]);
    assert!(first.removed.is_empty() && first.changed.is_empty());

    let mut client = env.gateway.client().await;
    let front = client
        .get_lock(authorized(
            pb::GetLockRequest {
                account_id: env.account.clone(),
                lock_id: FRONT_DOOR,
            },
            &env.service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            front.alias.as_str(),
            front.mac.as_str(),
            front.model.as_str()
        ),
        ("Front Door", "16:72:4C:CC:01:C4", "SN9206_PV53")
    );
    assert_eq!(
        (front.battery_percent, front.timezone_offset_ms),
        (90, 3_600_000)
    );
    assert!(front.has_gateway && front.online && front.remote_capable);
    assert_eq!(front.gateway_ids, [LOBBY_GATEWAY]);
    assert_eq!(front.status(), pb::LockStatus::Unknown, "no bolt event yet");
    let storage = first.added.iter().find(|l| l.lock_id == STORAGE).unwrap();
    assert!(!storage.has_gateway && !storage.remote_capable);

    // Pages of one lock walk every lock once.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_locks(authorized(
                pb::ListLocksRequest {
                    account_id: String::new(),
                    page_size: 2,
                    page_token: page_token.clone(),
                },
                &env.service,
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.locks.iter().map(|l| l.lock_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    seen.sort_unstable();
    assert_eq!(seen, added);

    // The battery falls, the annex gateway drops, the storage lock is reset.
    assert!(env.sim.set_battery(ROOM_101, 15));
    env.sim
        .update_faults(|f| f.offline_gateways.push(ANNEX_GATEWAY));
    assert!(env.sim.remove_lock(STORAGE));
    let second = env.sync().await;
    let mut changed: Vec<(i64, pb::LockStatus)> = second
        .changed
        .iter()
        .map(|l| (l.lock_id, l.status()))
        .collect();
    changed.sort_unstable();
    assert_eq!(
        changed,
        [
            (ANNEX, pb::LockStatus::Offline),
            (ROOM_101, pb::LockStatus::LowBattery)
        ]
    );
    assert_eq!(
        second.removed.iter().map(|l| l.lock_id).collect::<Vec<_>>(),
        [STORAGE]
    );
    assert!(second.added.is_empty());
    assert_eq!(second.unchanged, 2);

    // The same story as events, in cursor order, each cursor one more than the last.
    let mut stream = env.watch(0).await;
    let events = take(&mut stream, 8).await;
    assert_eq!(
        events.iter().map(|e| e.cursor).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    let mut first_five = kinds(&events[..5]);
    first_five.sort_unstable();
    assert!(
        first_five
            .iter()
            .all(|(_, k)| *k == pb::DeviceEventKind::LockAdded)
    );
    let mut later = kinds(&events[5..]);
    later.sort_unstable();
    assert_eq!(
        later,
        [
            (STORAGE, pb::DeviceEventKind::LockRemoved),
            (ANNEX, pb::DeviceEventKind::LockOffline),
            (ROOM_101, pb::DeviceEventKind::LowBattery),
        ]
    );
    let low = events
        .iter()
        .find(|e| e.kind() == pb::DeviceEventKind::LowBattery)
        .unwrap();
    assert_eq!(
        (low.battery_percent, low.source()),
        (15, pb::EventSource::Sync)
    );

    // Nothing changed: a third sync adds no events.
    let third = env.sync().await;
    assert_eq!((third.changed.len(), third.unchanged), (0, 4));
    assert_eq!(
        env.count("SELECT count(*) FROM gateway.device_events")
            .await,
        8
    );
}

#[tokio::test]
async fn locks_are_the_tenants_own_and_bad_input_names_its_field() {
    let env = env().await;
    env.sync().await;
    let mut client = env.gateway.client().await;
    let stranger = token("other", "access-service", &["SERVICE"]);

    let none = client
        .list_locks(authorized(pb::ListLocksRequest::default(), &stranger))
        .await
        .unwrap()
        .into_inner();
    assert!(none.locks.is_empty());
    let hidden = client
        .get_lock(authorized(
            pb::GetLockRequest {
                account_id: env.account.clone(),
                lock_id: FRONT_DOOR,
            },
            &stranger,
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let foreign_sync = client
        .sync_locks(authorized(
            pb::SyncLocksRequest {
                account_id: env.account.clone(),
            },
            &stranger,
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign_sync.code(), Code::NotFound);

    let fields = |status: tonic::Status| {
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
    };
    let get = client
        .get_lock(authorized(
            pb::GetLockRequest {
                account_id: "not-a-uuid".into(),
                lock_id: -4,
            },
            &env.service,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(get), ["account_id", "lock_id"]);
    let list = client
        .list_locks(authorized(
            pb::ListLocksRequest {
                account_id: "x".into(),
                page_size: -1,
                page_token: "garbage".into(),
            },
            &env.service,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(list), ["account_id", "page_size", "page_token"]);
    let sync = client
        .sync_locks(authorized(
            pb::SyncLocksRequest {
                account_id: "42".into(),
            },
            &env.service,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(sync), ["account_id"]);
    let watch = client
        .watch_device_events(authorized(
            pb::WatchDeviceEventsRequest { after_cursor: -1 },
            &env.service,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(watch), ["after_cursor"]);

    // The other tenant's stream carries none of these events.
    let mut theirs = client
        .watch_device_events(authorized(
            pb::WatchDeviceEventsRequest { after_cursor: 0 },
            &stranger,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut ours = env.watch(0).await;
    take(&mut ours, 5).await;
    let response = post(&env.gateway.callback_url(SECRET), CAPTURED_BODY).await;
    assert_eq!(response.status(), 200);
    let ours_next = take(&mut ours, 1).await;
    assert_eq!(ours_next[0].kind(), pb::DeviceEventKind::UnlockCard);
    let theirs_next = tokio::time::timeout(Duration::from_millis(300), theirs.next()).await;
    assert!(
        theirs_next.is_err(),
        "another tenant received {theirs_next:?}"
    );
}

#[tokio::test]
async fn captured_callback_is_stored_once_masked_and_published_once() {
    let env = env().await;
    env.sync().await;
    let mut stream = env.watch(5).await;

    let url = env.gateway.callback_url(SECRET);
    for _ in 0..2 {
        let response = post(&url, CAPTURED_BODY).await;
        assert_eq!(response.status(), 200);
        assert!(
            response
                .headers()
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert_eq!(response.text().await.unwrap(), "success");
    }
    let event = take(&mut stream, 1).await.remove(0);
    assert_eq!(
        (event.lock_id, event.kind(), event.source()),
        (
            FRONT_DOOR,
            pb::DeviceEventKind::UnlockCard,
            pb::EventSource::Callback
        )
    );
    assert_eq!(
        (event.credential.as_str(), event.username.as_str()),
        ("****45", "Jonas")
    );
    assert_eq!(
        (event.battery_percent, event.record_type, event.success),
        (93, 7, true)
    );
    assert_eq!(
        event.occur_time.unwrap().seconds * 1000,
        1_680_810_186_000,
        "the lock's clock"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM gateway.callback_inbox")
            .await,
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM gateway.device_events WHERE kind = 'DEVICE_EVENT_KIND_UNLOCK_CARD'").await,
        1
    );

    // A wrong secret is refused and stores nothing; an unknown type is kept and answered.
    let refused = post(
        &env.gateway.callback_url("not-the-secret-at-all-000000"),
        CAPTURED_BODY,
    )
    .await;
    assert_eq!(refused.status(), 404);
    let unknown = post(&url, "notifyType=99&lockId=7252408&something=else").await;
    assert_eq!(unknown.text().await.unwrap(), "success");
    assert_eq!(
        env.count("SELECT count(*) FROM gateway.callback_inbox")
            .await,
        2
    );

    // The annex gateway goes offline: the gateway's and the lock's events.
    let offline = post(
        &url,
        "notifyType=2&gatewayId=34145&gatewayName=G2_annex&gatewayMac=D6%3AE0%3A88%3ACE%3AEE%3A97&gatewayVersion=2&networkName=annex-wifi&isOnline=0",
    )
    .await;
    assert_eq!(offline.status(), 200);
    let events = take(&mut stream, 2).await;
    assert_eq!(
        kinds(&events),
        [
            (ANNEX, pb::DeviceEventKind::GatewayOffline),
            (ANNEX, pb::DeviceEventKind::LockOffline)
        ]
    );
    assert_eq!(events[0].gateway_id, ANNEX_GATEWAY);
    let annex = env
        .gateway
        .client()
        .await
        .get_lock(authorized(
            pb::GetLockRequest {
                account_id: env.account.clone(),
                lock_id: ANNEX,
            },
            &env.service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(annex.status(), pb::LockStatus::Offline);

    let stored = env.stored_text().await;
    assert!(
        !stored.contains("1292195345"),
        "the card number is stored in plaintext"
    );
    assert!(stored.contains("****45"));
}

#[tokio::test]
async fn a_callback_holding_a_nul_is_refused_and_the_next_one_stored() {
    let env = env().await;
    env.sync().await;
    let mut stream = env.watch(5).await;
    let url = env.gateway.callback_url(SECRET);
    // In a plain field, and escaped inside the records' JSON.
    for body in [
        CAPTURED_BODY.replace("admin=jonas%40lemon.nz", "admin=jo%00nas"),
        CAPTURED_BODY.replace("%22Jonas%22", "%22Jo%5Cu0000nas%22"),
    ] {
        let response = post(&url, &body).await;
        assert_eq!(response.status(), 400);
    }
    assert_eq!(
        env.count("SELECT count(*) FROM gateway.callback_inbox")
            .await,
        0
    );
    let response = post(&url, CAPTURED_BODY).await;
    assert_eq!(response.status(), 200);
    let event = take(&mut stream, 1).await.remove(0);
    assert_eq!(event.username, "Jonas");
}

#[tokio::test]
async fn keypad_unlocks_arrive_once_from_callbacks_and_records() {
    let env = env().await;
    env.sync().await;
    env.app_passcode(FRONT_DOOR, "480263", "Guest Ana").await;
    env.sim
        .set_callback_url(Some(env.gateway.callback_url(SECRET)));
    let mut stream = env.watch(5).await;

    assert_eq!(env.sim.keypad(FRONT_DOOR, "480263"), Some(true));
    let unlock = take(&mut stream, 1).await.remove(0);
    assert_eq!(
        (
            unlock.kind(),
            unlock.source(),
            unlock.credential.as_str(),
            unlock.username.as_str()
        ),
        (
            pb::DeviceEventKind::UnlockPasscode,
            pb::EventSource::Callback,
            "****63",
            "Guest Ana"
        )
    );
    assert_eq!(env.sim.keypad(FRONT_DOOR, "111555"), Some(false));
    let wrong = take(&mut stream, 1).await.remove(0);
    assert_eq!(
        (wrong.kind(), wrong.success),
        (pb::DeviceEventKind::WrongPasscode, false)
    );
    let front = env
        .gateway
        .client()
        .await
        .get_lock(authorized(
            pb::GetLockRequest {
                account_id: env.account.clone(),
                lock_id: FRONT_DOOR,
            },
            &env.service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(front.status(), pb::LockStatus::Unlocked);

    // The lock's records hold the same two entries (and the passcode's addition): reading
    // them adds nothing the callbacks already brought.
    env.sync().await;
    assert_eq!(
        env.count("SELECT count(*) FROM gateway.device_events WHERE kind IN ('DEVICE_EVENT_KIND_UNLOCK_PASSCODE', 'DEVICE_EVENT_KIND_WRONG_PASSCODE')").await,
        2
    );
    // Without callbacks, the records alone bring the unlock.
    env.sim.set_callback_url(None);
    env.clock.advance(Duration::from_secs(5));
    assert_eq!(env.sim.keypad(FRONT_DOOR, "480263"), Some(true));
    env.sync().await;
    let client = env.db.client().await;
    let unlocks = client
        .query(
            "SELECT source, credential, username FROM gateway.device_events \
             WHERE kind = 'DEVICE_EVENT_KIND_UNLOCK_PASSCODE' ORDER BY cursor",
            &[],
        )
        .await
        .unwrap();
    let unlocks: Vec<(String, String, String)> = unlocks
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        unlocks,
        [
            (
                "EVENT_SOURCE_CALLBACK".to_owned(),
                "****63".to_owned(),
                "Guest Ana".to_owned()
            ),
            (
                "EVENT_SOURCE_RECORDS".to_owned(),
                "****63".to_owned(),
                "Guest Ana".to_owned()
            ),
        ]
    );
    let stored = env.stored_text().await;
    assert!(!stored.contains("480263") && !stored.contains("111555"));
}

#[tokio::test]
async fn records_alike_but_for_the_clouds_milliseconds_are_two_events_and_a_redelivery_none() {
    let env = env().await;
    env.sync().await;
    let mut stream = env.watch(env.head().await).await;
    let url = env.gateway.callback_url(SECRET);

    // The same card in the same second of the lock's clock, uploaded twice: only the
    // cloud's serverDate (to the millisecond) tells the two apart.
    let second = CAPTURED_BODY.replace("1680810180029", "1680810180517");
    assert_eq!(post(&url, CAPTURED_BODY).await.status(), 200);
    assert_eq!(post(&url, &second).await.status(), 200);
    let both = take(&mut stream, 2).await;
    for event in &both {
        assert_eq!(event.kind(), pb::DeviceEventKind::UnlockCard);
        assert_eq!(event.occur_time.unwrap().seconds * 1000, 1_680_810_186_000);
    }

    // TTLock delivers the first again, as it was and in another encoding of the same
    // form; then a later entry follows, and is the next event.
    assert_eq!(post(&url, CAPTURED_BODY).await.status(), 200);
    let mut fields: Vec<(String, String)> = serde_urlencoded::from_str(CAPTURED_BODY).unwrap();
    fields.reverse();
    let reencoded = serde_urlencoded::to_string(&fields).unwrap();
    assert_ne!(reencoded, CAPTURED_BODY);
    assert_eq!(post(&url, &reencoded).await.status(), 200);
    let later = CAPTURED_BODY
        .replace("1680810186000", "1680810246000")
        .replace("1680810180029", "1680810240112");
    assert_eq!(post(&url, &later).await.status(), 200);
    let next = take(&mut stream, 1).await.remove(0);
    assert_eq!(
        next.occur_time.unwrap().seconds * 1000,
        1_680_810_246_000,
        "a redelivered record was announced again"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM gateway.device_events WHERE kind = 'DEVICE_EVENT_KIND_UNLOCK_CARD'").await,
        3
    );

    // Two remote locks within one second of the lock's clock, each called back.
    env.sim
        .set_callback_url(Some(env.gateway.callback_url(SECRET)));
    let mut client = env.gateway.client().await;
    for request_id in ["lock-evening-1", "lock-evening-2"] {
        let answer = client
            .remote_lock(authorized(
                pb::RemoteOperationRequest {
                    account_id: env.account.clone(),
                    lock_id: FRONT_DOOR,
                    request_id: request_id.into(),
                },
                &env.service,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.outcome(), pb::RemoteOutcome::Confirmed);
    }
    let locked = take(&mut stream, 2).await;
    assert_eq!(
        kinds(&locked),
        [
            (FRONT_DOOR, pb::DeviceEventKind::Lock),
            (FRONT_DOOR, pb::DeviceEventKind::Lock)
        ]
    );
}

#[tokio::test]
async fn keypad_entries_in_one_second_are_one_event_each_from_callbacks_and_records() {
    let env = env().await;
    env.sync().await;
    env.app_passcode(FRONT_DOOR, "480263", "Guest Ana").await;
    let url = env.gateway.callback_url(SECRET);
    let unlocks = "SELECT count(*) FROM gateway.device_events WHERE kind = 'DEVICE_EVENT_KIND_UNLOCK_PASSCODE'";
    let twice = || {
        for _ in 0..2 {
            assert_eq!(env.sim.keypad(FRONT_DOOR, "480263"), Some(true));
        }
    };

    // No callbacks: the records read alone brings both entries of one second.
    twice();
    env.sync().await;
    assert_eq!(env.count(unlocks).await, 2);
    // Their callbacks come after all, once the records read has them: nothing new.
    let mut stream = env.watch(env.head().await).await;
    for record in env
        .sim
        .records(FRONT_DOOR)
        .iter()
        .filter(|r| r.record_type == 4)
    {
        let form = callback_form(record, "16:72:4C:CC:01:C4", "frontdesk@example.test");
        let body = serde_urlencoded::to_string(&form).unwrap();
        assert_eq!(post(&url, &body).await.status(), 200);
    }
    assert_eq!(post(&url, CAPTURED_BODY).await.status(), 200);
    assert_eq!(
        take(&mut stream, 1).await.remove(0).kind(),
        pb::DeviceEventKind::UnlockCard,
        "a late callback was announced again"
    );
    assert_eq!(env.count(unlocks).await, 2);

    // Called back: each entry once, and the records read then adds nothing.
    env.sim.set_callback_url(Some(url.clone()));
    env.clock.advance(Duration::from_secs(5));
    twice();
    let called = take(&mut stream, 2).await;
    assert!(
        called
            .iter()
            .all(|e| e.kind() == pb::DeviceEventKind::UnlockPasscode
                && e.source() == pb::EventSource::Callback)
    );
    env.sync().await;
    assert_eq!(env.count(unlocks).await, 4);

    // The second entry's callback never comes: the records read brings that one only.
    env.clock.advance(Duration::from_secs(5));
    assert_eq!(env.sim.keypad(FRONT_DOOR, "480263"), Some(true));
    take(&mut stream, 1).await;
    env.sim.set_callback_url(None);
    assert_eq!(env.sim.keypad(FRONT_DOOR, "480263"), Some(true));
    env.sync().await;
    assert_eq!(env.count(unlocks).await, 6);

    // The record list gives serverDate in whole seconds, callbacks to the millisecond:
    // still one event per entry.
    env.sim
        .update_faults(|faults| faults.list_server_date_in_seconds = true);
    env.sim.set_callback_url(Some(url));
    env.clock.advance(Duration::from_secs(5));
    twice();
    take(&mut stream, 2).await;
    env.sync().await;
    assert_eq!(env.count(unlocks).await, 8);
    let sources: Vec<String> = env
        .db
        .client()
        .await
        .query(
            "SELECT source FROM gateway.device_events \
             WHERE kind = 'DEVICE_EVENT_KIND_UNLOCK_PASSCODE' ORDER BY cursor",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0).replace("EVENT_SOURCE_", ""))
        .collect();
    assert_eq!(
        sources,
        [
            "RECORDS", "RECORDS", "CALLBACK", "CALLBACK", "CALLBACK", "RECORDS", "CALLBACK",
            "CALLBACK"
        ]
    );
}

#[tokio::test]
async fn watchers_resume_by_cursor_across_a_gateway_restart() {
    let mut env = env().await;
    env.sync().await;
    let mut stream = env.watch(0).await;
    let seen = take(&mut stream, 2).await;
    let last = seen[1].cursor;

    // The gateway restarts: its stream ends, and a callback arrives at the new one.
    env.gateway.server.stop().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends at shutdown");
    env.gateway = Gateway::start(&env.db).await;
    let response = post(&env.gateway.callback_url(SECRET), CAPTURED_BODY).await;
    assert_eq!(response.status(), 200);

    let mut resumed = env.watch(last).await;
    let rest = take(&mut resumed, 4).await;
    assert_eq!(
        rest.iter().map(|e| e.cursor).collect::<Vec<_>>(),
        [last + 1, last + 2, last + 3, last + 4]
    );
    assert_eq!(rest[3].kind(), pb::DeviceEventKind::UnlockCard);
    let nothing_more = tokio::time::timeout(Duration::from_millis(300), resumed.next()).await;
    assert!(
        nothing_more.is_err(),
        "an event came twice: {nothing_more:?}"
    );
}

#[tokio::test]
async fn concurrent_callbacks_get_consecutive_cursors_and_all_reach_a_watcher() {
    let env = env().await;
    env.sync().await;
    let mut stream = env.watch(5).await;
    let url = env.gateway.callback_url(SECRET);
    let posts = (0..20).map(|i| {
        let url = url.clone();
        async move {
            let records = format!(
                r#"[{{"lockId":{FRONT_DOOR},"electricQuantity":88,"serverDate":{server},"recordTypeFromLock":4,"recordType":4,"success":1,"keyboardPwd":"73{i:04}","lockDate":{lock},"username":"Guest {i}"}}]"#,
                server = 1_700_000_000_000_i64 + i * 1000,
                lock = 1_700_000_000_000_i64 + i * 1000,
            );
            let body = serde_urlencoded::to_string([
                ("lockId", FRONT_DOOR.to_string()),
                ("notifyType", "1".to_owned()),
                ("records", records),
                ("admin", "frontdesk@example.test".to_owned()),
            ])
            .unwrap();
            post(&url, &body).await.status()
        }
    });
    let statuses = futures_util::future::join_all(posts).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let events = take(&mut stream, 20).await;
    assert_eq!(
        events.iter().map(|e| e.cursor).collect::<Vec<_>>(),
        (6..=25).collect::<Vec<_>>()
    );
    let mut guests: Vec<String> = events.iter().map(|e| e.username.clone()).collect();
    guests.sort();
    guests.dedup();
    assert_eq!(guests.len(), 20);
}

#[tokio::test]
async fn accounts_are_synced_periodically_without_being_asked() {
    let mut env = env().await;
    env.gateway.server.stop().await.unwrap();
    env.gateway = Gateway::start_with(&env.db, |config| config.lock_sync_interval_secs = 1).await;
    let mut stream = env.watch(0).await;
    let mut added: Vec<i64> = take(&mut stream, 5)
        .await
        .iter()
        .filter(|e| e.kind() == pb::DeviceEventKind::LockAdded)
        .map(|e| e.lock_id)
        .collect();
    added.sort_unstable();
    assert_eq!(added, [STORAGE, ANNEX, ROOM_101, FRONT_DOOR, 18_951_786]);
    // The next periodic pass finds the new battery level on its own.
    assert!(env.sim.set_battery(FRONT_DOOR, 12));
    let low = take(&mut stream, 1).await.remove(0);
    assert_eq!(
        (low.lock_id, low.kind()),
        (FRONT_DOOR, pb::DeviceEventKind::LowBattery)
    );
}

#[tokio::test]
async fn a_callback_receiver_needs_a_long_secret() {
    let db = TestDb::migrated(vec![(
        lock_gateway::db::SCHEMA,
        lock_gateway::db::MIGRATIONS,
        lock_gateway::db::MIGRATIONS_DIR,
    )])
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callbacks = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = Config::new(db.url(), TEST_JWT_SECRET);
    config.callback_secret = Some(SecretString::from("short".to_owned()));
    let refused =
        lock_gateway::run_with_callbacks(listener, Some(callbacks), config, std::future::pending())
            .await;
    assert!(matches!(refused, Err(RunError::Callback(_))), "{refused:?}");
}

#[tokio::test]
async fn passcode_writes_are_announced_as_device_events() {
    let env = env().await;
    let mut client = env.gateway.client().await;
    let mut stream = env.watch(0).await;
    let create = |request_id: &str| pb::CreatePasscodeRequest {
        account_id: env.account.clone(),
        lock_id: ROOM_101,
        code: "730914".into(),
        name: "Cleaner".into(),
        start_time: None,
        end_time: None,
        request_id: request_id.into(),
    };
    let set = client
        .create_passcode(authorized(create("req-set"), &env.service))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.outcome(), pb::PasscodeOutcome::Done);
    // A replay announces nothing new; a duplicate on the lock is a failure event.
    client
        .create_passcode(authorized(create("req-set"), &env.service))
        .await
        .unwrap();
    let duplicate = client
        .create_passcode(authorized(create("req-dup"), &env.service))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(duplicate.reason, "DUPLICATE");
    client
        .delete_passcode(authorized(
            pb::DeletePasscodeRequest {
                account_id: env.account.clone(),
                lock_id: ROOM_101,
                passcode_id: set.passcode_id,
                request_id: "req-del".into(),
            },
            &env.service,
        ))
        .await
        .unwrap();
    let events = take(&mut stream, 3).await;
    assert_eq!(
        kinds(&events),
        [
            (ROOM_101, pb::DeviceEventKind::PasscodeSet),
            (ROOM_101, pb::DeviceEventKind::PasscodeFailed),
            (ROOM_101, pb::DeviceEventKind::PasscodeRemoved),
        ]
    );
    assert_eq!(
        (
            events[0].passcode_id,
            events[0].credential.as_str(),
            events[0].source()
        ),
        (set.passcode_id, "****14", pb::EventSource::Operation)
    );
    assert!(!events[1].success && events[1].detail.contains("DUPLICATE"));
    assert_eq!(events[2].passcode_id, set.passcode_id);
    assert!(!env.stored_text().await.contains("730914"));
}

#[tokio::test]
async fn records_already_turned_into_events_stay_known_across_a_key_rotation() {
    let mut env = env().await;
    env.sync().await;
    env.app_passcode(FRONT_DOOR, "480263", "Guest Ana").await;
    assert_eq!(env.sim.keypad(FRONT_DOOR, "480263"), Some(true));
    env.sync().await;
    let unlocks = "SELECT count(*) FROM gateway.device_events WHERE kind = 'DEVICE_EVENT_KIND_UNLOCK_PASSCODE'";
    assert_eq!(env.count(unlocks).await, 1);
    let events = env
        .count("SELECT count(*) FROM gateway.device_events")
        .await;

    // The encryption key rotates: a new current key, the old one kept for reading.
    env.gateway.server.stop().await.unwrap();
    env.gateway = Gateway::start_with(&env.db, |config| {
        config.previous_encryption_keys = Some(SecretString::from(format!(
            "{}={}",
            config.encryption_key_id,
            config.encryption_key.expose_secret()
        )));
        config.encryption_key = SecretString::from(
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0".to_owned(),
        );
        config.encryption_key_id = "k2".to_owned();
    })
    .await;
    // The same records read again bring nothing new.
    env.sync().await;
    assert_eq!(
        env.count("SELECT count(*) FROM gateway.device_events")
            .await,
        events,
        "records seen under the old key came again"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM gateway.gateway_secrets WHERE name = 'digest_key' AND key_id = 'k2'")
            .await,
        1,
        "the digest key is sealed under the current key once it has rotated"
    );
    // A new entry still arrives, once.
    env.clock.advance(Duration::from_secs(5));
    assert_eq!(env.sim.keypad(FRONT_DOOR, "480263"), Some(true));
    env.sync().await;
    env.sync().await;
    assert_eq!(env.count(unlocks).await, 2);
}

#[tokio::test]
async fn callbacks_processed_before_the_retention_period_are_deleted_and_never_announced_twice() {
    let env = env().await;
    env.sync().await;
    let mut stream = env.watch(5).await;
    let url = env.gateway.callback_url(SECRET);
    assert_eq!(post(&url, CAPTURED_BODY).await.status(), 200);
    let first = take(&mut stream, 1).await.remove(0);
    assert_eq!(first.kind(), pb::DeviceEventKind::UnlockCard);
    env.db
        .client()
        .await
        .execute(
            "UPDATE gateway.callback_inbox SET process_time = now() - interval '8 days'",
            &[],
        )
        .await
        .unwrap();

    let pool = env.db.pool(lock_gateway::db::SCHEMA);
    let mut conn = pool.get().await.unwrap();
    let before = chrono::Utc::now() - chrono::Duration::days(7);
    assert_eq!(
        purge_callbacks_processed_before(&mut conn, before, 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM gateway.callback_inbox")
            .await,
        0
    );

    // TTLock redelivers it after all, then a later card unlock follows: the publisher
    // takes them in order, and the redelivered record is already an event.
    assert_eq!(post(&url, CAPTURED_BODY).await.status(), 200);
    let later = CAPTURED_BODY.replace("1680810186000", "1680810246000");
    assert_eq!(post(&url, &later).await.status(), 200);
    let next = take(&mut stream, 1).await.remove(0);
    assert_eq!(
        next.occur_time.unwrap().seconds * 1000,
        1_680_810_246_000,
        "the redelivered callback was announced again"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM gateway.device_events WHERE kind = 'DEVICE_EVENT_KIND_UNLOCK_CARD'").await,
        2
    );
    assert_eq!(
        purge_callbacks_processed_before(&mut conn, before, 100)
            .await
            .unwrap(),
        0,
        "callbacks processed since are kept"
    );
}

#[tokio::test]
async fn events_received_before_the_retention_period_are_deleted_and_cursors_number_on() {
    let env = env().await;
    env.sync().await;
    let synced = env
        .count("SELECT count(*) FROM gateway.device_events")
        .await;
    let url = env.gateway.callback_url(SECRET);
    let card_at = |ms: i64| CAPTURED_BODY.replace("1680810186000", &ms.to_string());
    let mut everything = env.watch(0).await;
    for ms in [1_680_810_186_000_i64, 1_680_810_246_000, 1_680_810_306_000] {
        assert_eq!(post(&url, &card_at(ms)).await.status(), 200);
    }
    let all = take(&mut everything, usize::try_from(synced).unwrap() + 3).await;
    let last = all.last().unwrap().cursor;
    assert_eq!(
        all.iter().map(|e| e.cursor).collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>()
    );
    // All but the newest were received 31 days ago.
    env.db
        .client()
        .await
        .execute(
            "UPDATE gateway.device_events SET receive_time = now() - interval '31 days' \
             WHERE cursor < $1",
            &[&last],
        )
        .await
        .unwrap();

    let pool = env.db.pool(lock_gateway::db::SCHEMA);
    let mut conn = pool.get().await.unwrap();
    let before = chrono::Utc::now() - chrono::Duration::days(30);
    // Two rows per statement: the sweep goes on until none is left.
    assert_eq!(
        purge_events_received_before(&mut conn, before, 2)
            .await
            .unwrap(),
        u64::try_from(last - 1).unwrap()
    );
    assert_eq!(
        purge_events_received_before(&mut conn, before, 2)
            .await
            .unwrap(),
        0,
        "events received since are kept"
    );

    // A consumer that was away sees the cursor jump past what was deleted.
    let mut away = env.watch(0).await;
    let first = take(&mut away, 1).await.remove(0);
    assert_eq!(first.cursor, last);
    assert_eq!(first.occur_time.unwrap().seconds * 1000, 1_680_810_306_000);
    // The kept event is still recognised when TTLock delivers its record again, and a
    // new one is numbered on after the deleted cursors.
    assert_eq!(post(&url, &card_at(1_680_810_306_000)).await.status(), 200);
    assert_eq!(post(&url, &card_at(1_680_810_366_000)).await.status(), 200);
    let next = take(&mut away, 1).await.remove(0);
    assert_eq!(next.cursor, last + 1);
    assert_eq!(next.occur_time.unwrap().seconds * 1000, 1_680_810_366_000);
    assert_eq!(
        env.count("SELECT count(*) FROM gateway.device_events")
            .await,
        2
    );
}
