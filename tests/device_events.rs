//! Device events end to end: the simulated TTLock lock calls lock-gateway back,
//! lock-gateway streams the events, and access-service appends them to the audit log,
//! moves the door's status and counts code usages, each event exactly once across
//! restarts of either service and across replicas.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use access_service::passcode_names::passcode_name;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_service_client::AccessServiceClient;
use latchkey::pb::access::v1::audit_service_client::AuditServiceClient;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::pb::access::v1::event_service_client::EventServiceClient;
use latchkey::pb::gateway::v1 as gw;
use latchkey::pb::gateway::v1::lock_gateway_client::LockGatewayClient;
use latchkey::testkit::{RunningServer, TestDb, authorized, token};
use lock_gateway::sim::{SimConfig, SimHandle, Simulator};
use lock_gateway::ttlock::ManualClock;
use uuid::Uuid;

use common::CallbackGateway;

const ROOM_101: i64 = 6_901_284;
const ANNEX: i64 = 2_182_419;
const ANNEX_GATEWAY: i64 = 34_145;
const TENANT: &str = "acme";
const CODE: &str = "730914";
/// How long a condition may take to come true before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

type Access = RunningServer<access_service::RunError>;

struct Env {
    db: TestDb,
    sim: SimHandle,
    /// The simulated locks' clock: a lock stamps records in whole seconds, and two
    /// unlocks with one code in the same second are one record.
    clock: ManualClock,
    gateway: CallbackGateway,
    account: String,
    service: String,
    admin: String,
}

struct Doors {
    room: String,
    annex: String,
}

async fn env() -> Env {
    let db = common::database().await;
    let clock = ManualClock::starting_now();
    let sim = Simulator::start(SimConfig {
        clock: Arc::new(clock.clone()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gateway = CallbackGateway::start(&db).await;
    sim.set_callback_url(Some(gateway.callback_url()));
    let service = token(TENANT, "access-service", &["SERVICE"]);
    let account = LockGatewayClient::new(gateway.channel().await)
        .register_account(authorized(sim.register_request(), &service))
        .await
        .unwrap()
        .into_inner()
        .id;
    let env = Env {
        db,
        sim,
        clock,
        gateway,
        account,
        service,
        admin: token(TENANT, "admin", &["ADMIN"]),
    };
    env.sync().await;
    env
}

impl Env {
    /// An access-service on the test database following the gateway's events, looking
    /// for tenants to follow often so the test need not wait.
    async fn access(&self) -> Access {
        let mut config = common::access_config(&self.db, self.gateway.url());
        config.device_events_scan_ms = 100;
        common::start_access(config).await
    }

    async fn gateway_client(&self) -> LockGatewayClient<tonic::transport::Channel> {
        LockGatewayClient::new(self.gateway.channel().await)
    }

    /// Reads the locks and their records: whatever a callback missed arrives this way.
    async fn sync(&self) {
        self.gateway_client()
            .await
            .sync_locks(authorized(
                gw::SyncLocksRequest {
                    account_id: self.account.clone(),
                },
                &self.service,
            ))
            .await
            .unwrap();
    }

    /// A property with one door on Room 101 and one on the Annex lock.
    async fn doors(&self, access: &Access) -> Doors {
        let mut directory = DirectoryServiceClient::new(access.channel().await);
        let property = directory
            .create_property(authorized(
                pb::CreatePropertyRequest {
                    property: Some(pb::Property {
                        name: "Harbour House".into(),
                        time_zone: "Europe/Lisbon".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &self.admin,
            ))
            .await
            .unwrap()
            .into_inner();
        let mut door = async |name: &str, lock_id: i64| {
            directory
                .create_door(authorized(
                    pb::CreateDoorRequest {
                        door: Some(pb::Door {
                            property_id: property.id.clone(),
                            name: name.into(),
                            r#type: pb::DoorType::Room as i32,
                            active: true,
                            lock: Some(pb::LockBinding {
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
        };
        let room = door("Room 101", ROOM_101).await;
        let annex = door("Annex", ANNEX).await;
        Doors { room, annex }
    }

    /// A guest's code for `door`, as the code service stores it while writing it.
    async fn guest_code(&self, door: &str, guest: &str, max_usages: i32) -> Uuid {
        let id = Uuid::now_v7();
        let client = self.db.client().await;
        client
            .execute(
                "INSERT INTO access.access_codes \
                 (id, tenant_id, grantee_type, grantee_name, purpose, code_type, max_usages, code_hmac, code_last_digits) \
                 VALUES ($1::text::uuid, $2, 'GUEST', $3, 'STAY', 'PERMANENT', $4, '\\x00', '14')",
                &[&id.to_string(), &TENANT, &guest, &max_usages],
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO access.access_code_doors \
                 (tenant_id, code_id, door_id, sync_state, account_id, lock_id, lock_passcode_id) \
                 VALUES ($1, $2::text::uuid, $3::text::uuid, 'SETTING', $4::text::uuid, $5, NULL)",
                &[&TENANT, &id.to_string(), &door, &self.account, &ROOM_101],
            )
            .await
            .unwrap();
        id
    }

    /// Writes the code's passcode onto Room 101 under the name that identifies it, and
    /// records it as set, as provisioning does.
    async fn put_passcode(&self, code_id: Uuid) -> i64 {
        let result = self
            .gateway_client()
            .await
            .create_passcode(authorized(
                gw::CreatePasscodeRequest {
                    account_id: self.account.clone(),
                    lock_id: ROOM_101,
                    code: CODE.into(),
                    name: passcode_name(code_id),
                    start_time: None,
                    end_time: None,
                    request_id: format!("set-{code_id}"),
                },
                &self.service,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(result.outcome(), gw::PasscodeOutcome::Done, "{result:?}");
        self.db
            .client()
            .await
            .execute(
                "UPDATE access.access_code_doors SET sync_state = 'SET', lock_passcode_id = $2 \
                 WHERE code_id = $1::text::uuid",
                &[&code_id.to_string(), &result.passcode_id],
            )
            .await
            .unwrap();
        result.passcode_id
    }

    /// Someone types `code` on Room 101's keypad a few seconds after the last time.
    fn keypad(&self, code: &str) -> bool {
        self.clock.advance(Duration::from_secs(2));
        self.sim.keypad(ROOM_101, code).unwrap()
    }

    /// The cursors of the events lock-gateway holds for the lock.
    async fn gateway_cursors(&self, lock_id: i64) -> Vec<i64> {
        self.db
            .client()
            .await
            .query(
                "SELECT cursor FROM gateway.device_events WHERE tenant_id = $1 AND lock_id = $2 ORDER BY cursor",
                &[&TENANT, &lock_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    async fn query(&self, db_sql: &str) -> i64 {
        self.db
            .client()
            .await
            .query_one(db_sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until lock-gateway holds `count` events of the lock, reading the lock's
    /// records for any callback that did not arrive.
    async fn wait_gateway_events(&self, lock_id: i64, count: usize) -> Vec<i64> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let cursors = self.gateway_cursors(lock_id).await;
            if cursors.len() >= count {
                return cursors;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "lock-gateway holds {} of {count} events",
                cursors.len()
            );
            self.sync().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The door's rows, newest first.
async fn logs(access: &Access, admin: &str, door: &str) -> Vec<pb::AccessLog> {
    AuditServiceClient::new(access.channel().await)
        .query_access_logs(authorized(
            pb::QueryAccessLogsRequest {
                filter: Some(pb::LogFilter {
                    door_id: door.into(),
                    ..Default::default()
                }),
                page_size: 1000,
                page_token: String::new(),
            },
            admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .logs
}

/// Polls the audit log until `done` holds for the door's rows; returns them.
async fn wait_logs(
    access: &Access,
    admin: &str,
    door: &str,
    what: &str,
    done: impl Fn(&[pb::AccessLog]) -> bool,
) -> Vec<pb::AccessLog> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let rows = logs(access, admin, door).await;
        if done(&rows) {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited in vain for {what}: {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_status(access: &Access, admin: &str, door: &str, status: pb::DoorStatus) {
    let mut client = AccessServiceClient::new(access.channel().await);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let seen = client
            .get_door_status(authorized(
                pb::GetDoorStatusRequest {
                    door_id: door.into(),
                },
                admin,
            ))
            .await
            .unwrap()
            .into_inner()
            .status();
        if seen == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "door status {seen:?}, waiting for {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metadata(row: &pb::AccessLog) -> serde_json::Value {
    serde_json::from_str(&row.metadata_json).unwrap()
}

/// Rows recording a device event, by action and reason code.
fn find<'a>(
    rows: &'a [pb::AccessLog],
    action: pb::AuditAction,
    reason: &str,
) -> Vec<&'a pb::AccessLog> {
    rows.iter()
        .filter(|r| r.action == action as i32 && r.reason_code == reason)
        .collect()
}

/// How many rows name each cursor.
fn rows_per_cursor(rows: &[pb::AccessLog]) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for row in rows.iter().filter(|r| r.target_type == "lock") {
        let cursor = metadata(row)["cursor"].as_i64().unwrap();
        *counts.entry(cursor).or_insert(0) += 1;
    }
    counts
}

/// Waits until every event lock-gateway holds for Room 101 (at least `count`) has its
/// row, then checks that each has exactly one.
async fn assert_each_event_once(env: &Env, access: &Access, door: &str, count: usize) {
    let expected: BTreeSet<i64> = env
        .wait_gateway_events(ROOM_101, count)
        .await
        .into_iter()
        .collect();
    let rows = wait_logs(access, &env.admin, door, "a row for every event", |rows| {
        let applied: BTreeSet<i64> = rows_per_cursor(rows).into_keys().collect();
        expected.is_subset(&applied)
    })
    .await;
    let counts = rows_per_cursor(&rows);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events applied twice: {twice:?}");
    assert_eq!(
        counts.keys().copied().collect::<BTreeSet<_>>(),
        expected,
        "rows for events lock-gateway does not hold, or missing rows"
    );
}

#[tokio::test]
async fn keypad_wrong_code_battery_and_offline_reach_the_log_and_the_door() {
    let env = env().await;
    let access = env.access().await;
    let doors = env.doors(&access).await;
    // A backend follows the tenant's events from here on.
    let mut events = EventServiceClient::new(access.channel().await)
        .watch_events(authorized(pb::WatchEventsRequest::default(), &env.admin))
        .await
        .unwrap()
        .into_inner();
    let code = env.guest_code(&doors.room, "Ana Guest", 0).await;
    let passcode_id = env.put_passcode(code).await;
    let set = wait_logs(&access, &env.admin, &doors.room, "the code set", |rows| {
        !find(rows, pb::AuditAction::DeviceEvent, "PASSCODE_SET").is_empty()
    })
    .await;
    let set = find(&set, pb::AuditAction::DeviceEvent, "PASSCODE_SET")[0];
    assert!(set.success);
    assert_eq!(metadata(set)["credential"], "****14");

    // The guest opens the door with the code: a row naming the guest and the code.
    assert!(env.keypad(CODE));
    let rows = wait_logs(
        &access,
        &env.admin,
        &doors.room,
        "the keypad unlock",
        |rows| !find(rows, pb::AuditAction::Unlock, "DEVICE_UNLOCK").is_empty(),
    )
    .await;
    let unlock = find(&rows, pb::AuditAction::Unlock, "DEVICE_UNLOCK")[0];
    assert!(unlock.success);
    assert_eq!(unlock.method(), pb::AccessMethod::Passcode);
    assert_eq!(unlock.user_name, "Ana Guest");
    assert_eq!(unlock.door_name, "Room 101");
    assert_eq!(unlock.actor, "device-events");
    let fields = metadata(unlock);
    assert_eq!(fields["code_id"], code.to_string());
    assert_eq!(fields["kind"], "UNLOCK_PASSCODE");
    assert_eq!(fields["source"], "CALLBACK");
    assert_eq!(fields["credential"], "****14");
    assert_eq!(fields["username"], passcode_name(code));
    wait_status(&access, &env.admin, &doors.room, pb::DoorStatus::Unlocked).await;
    assert_eq!(
        env.query(&format!(
            "SELECT usage_count::bigint FROM access.access_codes WHERE id = '{code}' AND status = 'ACTIVE'"
        ))
        .await,
        1,
        "counted, and without max usages still active"
    );

    // A wrong code is a denied attempt.
    assert!(!env.keypad("111555"));
    let rows = wait_logs(&access, &env.admin, &doors.room, "the wrong code", |rows| {
        !find(rows, pb::AuditAction::AccessDenied, "CODE_INVALID").is_empty()
    })
    .await;
    let denied = find(&rows, pb::AuditAction::AccessDenied, "CODE_INVALID")[0];
    assert!(!denied.success);
    assert_eq!(denied.method(), pb::AccessMethod::Passcode);
    assert_eq!(denied.reason, "wrong code on the keypad");
    assert!(denied.user_name.is_empty());

    // The Annex lock's battery runs low, then its gateway drops and comes back.
    assert!(env.sim.set_battery(ANNEX, 12));
    env.sync().await;
    let rows = wait_logs(&access, &env.admin, &doors.annex, "battery low", |rows| {
        !find(rows, pb::AuditAction::DeviceEvent, "LOW_BATTERY").is_empty()
    })
    .await;
    let low = find(&rows, pb::AuditAction::DeviceEvent, "LOW_BATTERY")[0];
    assert_eq!(metadata(low)["battery_percent"], 12);
    wait_status(
        &access,
        &env.admin,
        &doors.annex,
        pb::DoorStatus::LowBattery,
    )
    .await;

    env.sim
        .update_faults(|faults| faults.offline_gateways.push(ANNEX_GATEWAY));
    env.sync().await;
    wait_logs(
        &access,
        &env.admin,
        &doors.annex,
        "the lock offline",
        |rows| !find(rows, pb::AuditAction::DeviceEvent, "LOCK_OFFLINE").is_empty(),
    )
    .await;
    wait_status(&access, &env.admin, &doors.annex, pb::DoorStatus::Offline).await;

    env.sim
        .update_faults(|faults| faults.offline_gateways.clear());
    env.sync().await;
    wait_logs(
        &access,
        &env.admin,
        &doors.annex,
        "the lock online",
        |rows| !find(rows, pb::AuditAction::DeviceEvent, "LOCK_ONLINE").is_empty(),
    )
    .await;
    wait_status(&access, &env.admin, &doors.annex, pb::DoorStatus::Locked).await;

    // The passcode leaves the lock: the row names the code by the passcode's id.
    env.gateway_client()
        .await
        .delete_passcode(authorized(
            gw::DeletePasscodeRequest {
                account_id: env.account.clone(),
                lock_id: ROOM_101,
                passcode_id,
                request_id: format!("remove-{code}"),
            },
            &env.service,
        ))
        .await
        .unwrap();
    let rows = wait_logs(
        &access,
        &env.admin,
        &doors.room,
        "the code removed",
        |rows| !find(rows, pb::AuditAction::DeviceEvent, "PASSCODE_REMOVED").is_empty(),
    )
    .await;
    let removed = find(&rows, pb::AuditAction::DeviceEvent, "PASSCODE_REMOVED")[0];
    assert_eq!(
        (
            removed.user_name.as_str(),
            metadata(removed)["code_id"].as_str()
        ),
        ("Ana Guest", Some(code.to_string().as_str()))
    );

    // The typed codes exist only on the lock.
    let stored = env
        .db
        .client()
        .await
        .query("SELECT t::text FROM access.audit_log t", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!stored.contains(CODE) && !stored.contains("111555"));

    // Each of these facts reached the event stream, typed, in the order they were
    // recorded, naming the code's grantee and never the code.
    let mut seen = Vec::new();
    while seen.len() < 8 {
        let message = tokio::time::timeout(PATIENCE, events.message())
            .await
            .expect("the events arrive")
            .unwrap()
            .unwrap();
        if let Some(pb::watch_events_response::Item::Event(event)) = message.item {
            seen.push(event);
        }
    }
    let kinds: Vec<(pb::EventKind, &str)> = seen
        .iter()
        .map(|e| {
            let door = if e.door_id == doors.room {
                "room"
            } else {
                "annex"
            };
            (e.kind(), door)
        })
        .collect();
    use pb::EventKind as K;
    assert_eq!(
        kinds,
        [
            (K::CodeSetOnLock, "room"),
            (K::DoorUnlocked, "room"),
            (K::GuestArrived, "room"),
            (K::EntryRefused, "room"),
            (K::LockBatteryLow, "annex"),
            (K::LockOffline, "annex"),
            (K::LockOnline, "annex"),
            (K::CodeRemoved, "room"),
        ]
    );
    let entry = &seen[1];
    assert_eq!(entry.via, "KEYPAD");
    assert_eq!(entry.door_name, "Room 101");
    let grantee = entry.code.as_ref().unwrap();
    assert_eq!(grantee.code_id, code.to_string());
    assert_eq!(grantee.grantee_name, "Ana Guest");
    assert_eq!(seen[2].code.as_ref().unwrap().grantee_type, "GUEST");
    assert_eq!(seen[4].battery_percent, 12);
    let text = format!("{seen:?}");
    assert!(!text.contains(CODE) && !text.contains("111555"));
}

#[tokio::test]
async fn reaching_max_usages_exhausts_the_code_and_removes_it_from_the_lock() {
    let env = env().await;
    let access = env.access().await;
    let doors = env.doors(&access).await;
    let code = env.guest_code(&doors.room, "Ben Guest", 2).await;
    env.put_passcode(code).await;

    let unlocks = |n: usize| {
        move |rows: &[pb::AccessLog]| {
            find(rows, pb::AuditAction::Unlock, "DEVICE_UNLOCK").len() >= n
        }
    };
    assert!(env.keypad(CODE));
    wait_logs(
        &access,
        &env.admin,
        &doors.room,
        "the first unlock",
        unlocks(1),
    )
    .await;
    let exhausted_code = format!(
        "SELECT count(*) FROM access.access_codes WHERE id = '{code}' AND status = 'EXHAUSTED'"
    );
    assert_eq!(env.query(&exhausted_code).await, 0);
    assert!(env.keypad(CODE));
    wait_logs(
        &access,
        &env.admin,
        &doors.room,
        "the second unlock",
        unlocks(2),
    )
    .await;

    assert_eq!(env.query(&exhausted_code).await, 1);
    assert_eq!(
        env.query(&format!(
            "SELECT count(*) FROM access.access_codes WHERE id = '{code}' AND usage_count = 2 AND revoke_time IS NOT NULL"
        ))
        .await,
        1
    );
    let remove = format!(
        "SELECT count(*) FROM access.provisioning_outbox WHERE code_id = '{code}' AND intent = 'REMOVE' AND done_time IS NULL"
    );
    assert_eq!(env.query(&remove).await, 1, "the code is to leave the lock");
    assert_eq!(
        env.query(&format!(
            "SELECT count(*) FROM access.access_code_doors WHERE code_id = '{code}' AND sync_state = 'REMOVING'"
        ))
        .await,
        1
    );
    let exhausted = |rows: &[pb::AccessLog]| {
        rows.iter()
            .filter(|r| {
                r.action == pb::AuditAction::AdminUpdate as i32
                    && r.target_type == "access_code"
                    && r.target_id == code.to_string()
            })
            .count()
    };
    // The administrative row has no door: look for it in the tenant's whole log.
    let all = logs(&access, &env.admin, "").await;
    assert_eq!(exhausted(&all), 1);
    let row = all.iter().find(|r| r.target_type == "access_code").unwrap();
    assert_eq!(
        (row.actor.as_str(), row.reason_code.as_str()),
        ("device-events", "MAX_USAGES_REACHED")
    );

    // Until it is removed the lock still opens with it: recorded, never exhausted twice.
    assert!(env.keypad(CODE));
    wait_logs(
        &access,
        &env.admin,
        &doors.room,
        "the third unlock",
        unlocks(3),
    )
    .await;
    assert_eq!(exhausted(&logs(&access, &env.admin, "").await), 1);
    assert_eq!(env.query(&remove).await, 1);
}

#[tokio::test]
async fn restarts_of_either_service_neither_lose_nor_repeat_an_event() {
    let mut env = env().await;
    let access = env.access().await;
    let doors = env.doors(&access).await;
    // Wrong codes that differ make distinct events.
    let mut typed = 0;
    let mut type_codes = |env: &Env, n: usize| {
        for _ in 0..n {
            typed += 1;
            assert!(!env.sim.keypad(ROOM_101, &format!("90{typed:04}")).unwrap());
        }
    };
    let before = env.gateway_cursors(ROOM_101).await.len();
    type_codes(&env, 5);
    wait_logs(&access, &env.admin, &doors.room, "the first rows", |rows| {
        find(rows, pb::AuditAction::AccessDenied, "CODE_INVALID").len() >= 3
    })
    .await;

    // access-service stops while events are still arriving, more arrive while it is
    // down, and a new process on the same database carries on from the stored cursor.
    type_codes(&env, 10);
    access.stop().await.unwrap();
    type_codes(&env, 10);
    let access = env.access().await;
    assert_each_event_once(&env, &access, &doors.room, before + 25).await;

    // lock-gateway restarts: its stream ends, and the follower reconnects to the new one.
    env.gateway.restart(&env.db).await;
    type_codes(&env, 10);
    assert_each_event_once(&env, &access, &doors.room, before + 35).await;
    let stored: i64 = env
        .query("SELECT cursor FROM access.device_event_cursors WHERE tenant_id = 'acme'")
        .await;
    let last: i64 = env
        .query("SELECT max(cursor) FROM gateway.device_events WHERE tenant_id = 'acme'")
        .await;
    assert_eq!(stored, last);
}

#[tokio::test]
async fn two_replicas_on_one_database_apply_each_event_once() {
    let env = env().await;
    let first = env.access().await;
    let doors = env.doors(&first).await;
    let second = env.access().await;

    // Leases keep expiring, so both replicas follow at once: only the cursor check
    // stands between them and a double apply.
    let expiring = {
        let url = env.db.url().to_owned();
        tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let mut owners = BTreeSet::new();
            loop {
                let row = client
                    .query_opt(
                        "UPDATE access.device_event_cursors SET lease_until = now() - interval '1 second' \
                         WHERE tenant_id = 'acme' RETURNING lease_owner",
                        &[],
                    )
                    .await
                    .unwrap();
                if let Some(owner) = row.and_then(|r| r.get::<_, Option<String>>(0)) {
                    owners.insert(owner);
                }
                if owners.len() == 2 {
                    return owners;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let before = env.gateway_cursors(ROOM_101).await.len();
    for i in 0..30 {
        assert!(!env.sim.keypad(ROOM_101, &format!("80{i:04}")).unwrap());
    }
    let owners = tokio::time::timeout(PATIENCE, expiring)
        .await
        .expect("both replicas took the lease")
        .unwrap();
    assert_eq!(owners.len(), 2);
    assert_each_event_once(&env, &first, &doors.room, before + 30).await;

    // One replica stops; the other carries on alone.
    first.stop().await.unwrap();
    for i in 30..40 {
        assert!(!env.sim.keypad(ROOM_101, &format!("80{i:04}")).unwrap());
    }
    assert_each_event_once(&env, &second, &doors.room, before + 40).await;
}

#[tokio::test]
async fn events_lock_gateway_deleted_before_they_were_applied_are_recorded_as_missed() {
    let env = env().await;
    let access = env.access().await;
    let doors = env.doors(&access).await;
    let before = env.gateway_cursors(ROOM_101).await.len();
    for typed in 0..3 {
        assert!(!env.keypad(&format!("81{typed:04}")));
    }
    assert_each_event_once(&env, &access, &doors.room, before + 3).await;

    // access-service is away while four more events arrive, and lock-gateway deletes
    // the first two of them as if they had outlived its retention period.
    access.stop().await.unwrap();
    let applied: i64 = env
        .query("SELECT cursor FROM access.device_event_cursors WHERE tenant_id = 'acme'")
        .await;
    for typed in 3..7 {
        assert!(!env.keypad(&format!("81{typed:04}")));
    }
    let arrived: Vec<i64> = env
        .wait_gateway_events(ROOM_101, before + 7)
        .await
        .into_iter()
        .filter(|cursor| *cursor > applied)
        .collect();
    let (first, second) = (arrived[0], arrived[1]);
    assert_eq!(second, first + 1, "the two deleted events are consecutive");
    env.db
        .client()
        .await
        .execute(
            "UPDATE gateway.device_events SET receive_time = now() - interval '31 days' \
             WHERE tenant_id = 'acme' AND cursor IN ($1, $2)",
            &[&first, &second],
        )
        .await
        .unwrap();
    let gateway_pool = env.db.pool(lock_gateway::db::SCHEMA);
    let purged = lock_gateway::db::retention::purge_events_received_before(
        &mut gateway_pool.get().await.unwrap(),
        chrono::Utc::now() - chrono::Duration::days(30),
        100,
    )
    .await
    .unwrap();
    assert_eq!(purged, 2);

    // Back, it applies what is left and says what it never saw.
    let access = env.access().await;
    let rows = wait_logs(&access, &env.admin, "", "the gap and the rest", |rows| {
        !find(rows, pb::AuditAction::DeviceEvent, "EVENTS_MISSED").is_empty()
            && find(rows, pb::AuditAction::AccessDenied, "CODE_INVALID").len() >= 5
    })
    .await;
    let missed = find(&rows, pb::AuditAction::DeviceEvent, "EVENTS_MISSED");
    assert_eq!(missed.len(), 1, "{missed:#?}");
    assert!(!missed[0].success);
    let gap = metadata(missed[0]);
    assert_eq!(gap["after"], first - 1);
    assert_eq!(gap["next"], second + 1);
    assert_eq!(gap["missed"], 2);
    assert_eq!(
        find(&rows, pb::AuditAction::AccessDenied, "CODE_INVALID").len(),
        5,
        "the three applied before and the two kept"
    );
    let verified = AuditServiceClient::new(access.channel().await)
        .verify_audit_chain(authorized(
            pb::VerifyAuditChainRequest::default(),
            &env.admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(verified.valid, "{verified:?}");
}
