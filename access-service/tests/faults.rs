//! Unlocks when lock-gateway fails: refusing connections (nothing sent: `UNAVAILABLE`,
//! no outcome row, the request id given back), accepting and never answering (may have
//! been sent: `UNCONFIRMED`, recorded), and a shutdown whose grace ends while an unlock
//! waits (the process exits at the grace, the unlock recorded as unconfirmed first).
//! Also: a door without a lock records no outcome, and counts as no failure.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_service_client::AccessServiceClient;
use latchkey::pb::access::v1::audit_service_client::AuditServiceClient;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::testkit::{TEST_JWT_SECRET, TestDb, authorized, token};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::Code;
use tonic::transport::Channel;

/// A lock-gateway address that accepts connections and never answers; `accepted` is
/// notified for each connection.
async fn silent_gateway() -> (String, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(Notify::new());
    let notify = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            notify.notify_one();
        }
    });
    (url, accepted)
}

/// A tenant with a door bound to a lock, a door without one, and a user allowed
/// through both. Returns (door with lock, door without, user).
async fn seed(channel: Channel, admin: &str) -> (String, String, String) {
    let mut directory = DirectoryServiceClient::new(channel.clone());
    let property = common::property(&mut directory, admin, "Villa", "Europe/Madrid").await;
    let locked = common::door(
        &mut directory,
        admin,
        pb::Door {
            lock: Some(pb::LockBinding {
                account_id: uuid::Uuid::new_v4().to_string(),
                lock_id: 7_252_408,
            }),
            r#type: pb::DoorType::Unit as i32,
            ..common::door_spec(&property.id, "Front door")
        },
    )
    .await;
    let bare = common::door(
        &mut directory,
        admin,
        pb::Door {
            r#type: pb::DoorType::Room as i32,
            ..common::door_spec(&property.id, "Shed")
        },
    )
    .await;
    let user = common::user(&mut directory, admin, "Guest", &["guest"]).await;
    let mut rules = latchkey::pb::access::v1::rule_service_client::RuleServiceClient::new(channel);
    common::grant(&mut rules, admin, &locked.id, &user.id, "Stay").await;
    common::grant(&mut rules, admin, &bare.id, &user.id, "Shed").await;
    (locked.id, bare.id, user.id)
}

fn unlock(door: &str, user: &str, request_id: &str) -> pb::UnlockDoorRequest {
    pb::UnlockDoorRequest {
        door_id: door.into(),
        user_id: user.into(),
        client_ip: "10.1.1.1".into(),
        request_id: request_id.into(),
    }
}

/// (action, reason_code) of the tenant's attempt rows on `door`, in chain order.
async fn rows(db: &TestDb, door: &str) -> Vec<(String, String)> {
    db.client()
        .await
        .query(
            "SELECT action, reason_code FROM access.audit_log WHERE door_id = $1 ORDER BY sequence",
            &[&door],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn a_gateway_refusing_connections_sent_nothing_and_says_so() {
    let db = common::database().await;
    // common::config points lock-gateway at a port where nothing listens.
    let server = common::start(common::config(db.url())).await;
    let admin = token("villa", "admin", &["ADMIN"]);
    let (locked, _, user) = seed(server.channel().await, &admin).await;
    let mut access = AccessServiceClient::new(server.channel().await);

    for _ in 0..2 {
        let status = access
            .unlock_door(authorized(unlock(&locked, &user, "u-1"), &admin))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(common::reason(&status), "LOCK_GATEWAY_UNAVAILABLE");
        assert!(
            !status.message().contains("Os {") && !status.message().contains("ConnectError"),
            "a plain sentence, not the transport's debug form: {}",
            status.message()
        );
    }
    let emergency = access
        .emergency_unlock(authorized(
            pb::EmergencyUnlockRequest {
                door_id: locked.clone(),
                reason: "fire alarm".into(),
                request_id: "e-1".into(),
                client_ip: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(common::reason(&emergency), "LOCK_GATEWAY_UNAVAILABLE");

    // Both unlock decisions stand (the retry was carried out, the id given back), and no
    // row says the door may have opened.
    let recorded = rows(&db, &locked).await;
    assert_eq!(
        recorded,
        [
            ("ACCESS_GRANTED".to_owned(), "GRANTED".to_owned()),
            ("ACCESS_GRANTED".to_owned(), "GRANTED".to_owned()),
            ("EMERGENCY_UNLOCK".to_owned(), "EMERGENCY".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_gateway_that_never_answers_leaves_the_unlock_unconfirmed_and_recorded() {
    let db = common::database().await;
    let (url, _accepted) = silent_gateway().await;
    let mut config = common::config(db.url());
    config.lock_gateway_url = url;
    config.lock_gateway_timeout_ms = 300;
    // Only the unlock talks to lock-gateway here.
    config.follow_device_events = false;
    config.reconcile_interval_secs = 0;
    let server = common::start(config).await;
    let admin = token("villa", "admin", &["ADMIN"]);
    let (locked, _, user) = seed(server.channel().await, &admin).await;
    let mut access = AccessServiceClient::new(server.channel().await);

    let answer = access
        .unlock_door(authorized(unlock(&locked, &user, "u-1"), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.outcome, pb::UnlockOutcome::Unconfirmed as i32);
    assert_eq!(
        answer.outcome_detail,
        "lock-gateway did not answer in time; not retried"
    );
    assert!(answer.outcome_audit_sequence > answer.audit_sequence);
    // A repeat answers the same and records nothing.
    let again = access
        .unlock_door(authorized(unlock(&locked, &user, "u-1"), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, answer);
    assert_eq!(
        rows(&db, &locked).await,
        [
            ("ACCESS_GRANTED".to_owned(), "GRANTED".to_owned()),
            ("UNLOCK_FAILED".to_owned(), "UNCONFIRMED".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_door_without_a_lock_records_no_outcome_and_no_failure() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let admin = token("villa", "admin", &["ADMIN"]);
    let (_, bare, user) = seed(server.channel().await, &admin).await;
    let mut access = AccessServiceClient::new(server.channel().await);
    for i in 0..8 {
        let answer = access
            .unlock_door(authorized(unlock(&bare, &user, &format!("u-{i}")), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.outcome,
            pb::UnlockOutcome::NoLock as i32,
            "{answer:?}"
        );
        assert_eq!(answer.outcome_audit_sequence, 0);
    }
    assert!(
        rows(&db, &bare)
            .await
            .iter()
            .all(|(action, _)| action == "ACCESS_GRANTED")
    );
    let flagged: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM access.audit_log WHERE flagged", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(flagged, 0);
    let mut audit = AuditServiceClient::new(server.channel().await);
    let suspicious = audit
        .find_suspicious_activity(authorized(
            pb::FindSuspiciousActivityRequest {
                window_minutes: 5,
                threshold: 5,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(suspicious.actors.is_empty(), "{suspicious:?}");
    let stats = audit
        .get_door_stats(authorized(
            pb::GetDoorStatsRequest {
                door_id: bare.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((stats.total, stats.failures), (8, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_abandons_an_unlock_at_the_grace_and_records_it_first() {
    let db = common::database().await;
    let (gateway, accepted) = silent_gateway().await;
    let port = common::free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_access-service"))
        .arg("serve")
        .env("DATABASE_URL", db.url())
        .env("GRPC_ADDR", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", TEST_JWT_SECRET)
        .env("LOCK_GATEWAY_URL", &gateway)
        // The unlock would wait a minute for lock-gateway; the grace is one second.
        .env("LOCK_GATEWAY_TIMEOUT_MS", "60000")
        .env("SHUTDOWN_GRACE_MS", "1000")
        .env("AUDIT_RETENTION_DAYS", "0")
        .env(
            "ACCESS_CODE_KEY",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
        )
        .env("FOLLOW_DEVICE_EVENTS", "false")
        .env("RECONCILE_INTERVAL_SECS", "0")
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let channel = common::connect(port).await;
    let admin = token("villa", "admin", &["ADMIN"]);
    let (locked, _, user) = seed(channel.clone(), &admin).await;
    let mut access = AccessServiceClient::new(channel);
    let call = tokio::spawn(async move {
        access
            .unlock_door(authorized(unlock(&locked, &user, "u-1"), &admin))
            .await
    });
    // The unlock has reached lock-gateway's address, and its decision is recorded with
    // the outcome not yet known: it is in flight.
    accepted.notified().await;
    let observer = db.client().await;
    for attempt in 0.. {
        let pending = observer
            .query_opt(
                "SELECT 1 FROM access.unlock_requests \
                 WHERE request_id = 'u-1' AND response IS NOT NULL AND NOT finished",
                &[],
            )
            .await
            .unwrap();
        if pending.is_some() {
            break;
        }
        assert!(attempt < 500, "the unlock never went out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = i32::try_from(child.id().unwrap()).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // It exits on its own, long before lock-gateway's deadline could have ended the call.
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the process outlived its grace by far")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let answer = call.await.unwrap();
    assert!(
        answer.is_err(),
        "no answer was given for the abandoned unlock"
    );

    let client = db.client().await;
    let outcome = client
        .query(
            "SELECT action, reason_code, reason FROM access.audit_log \
             WHERE request_id = 'u-1' ORDER BY sequence",
            &[],
        )
        .await
        .unwrap();
    let outcome: Vec<(String, String, String)> = outcome
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(outcome.len(), 2, "{outcome:?}");
    assert_eq!(outcome[0].0, "ACCESS_GRANTED");
    assert_eq!(
        (outcome[1].0.as_str(), outcome[1].1.as_str()),
        ("UNLOCK_FAILED", "UNCONFIRMED")
    );
    assert!(outcome[1].2.contains("may have opened"), "{}", outcome[1].2);
    // A repeat after a restart gets that answer, not a second unlock.
    let finished: bool = client
        .query_one(
            "SELECT finished FROM access.unlock_requests WHERE request_id = 'u-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(finished);
}

#[tokio::test]
async fn a_code_waiting_for_an_unreachable_gateway_says_so_in_plain_words() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let admin = token("villa", "admin", &["ADMIN"]);
    let (locked, _, _) = seed(server.channel().await, &admin).await;
    let mut codes =
        latchkey::pb::access::v1::access_code_service_client::AccessCodeServiceClient::new(
            server.channel().await,
        );
    let issued = codes
        .issue_access_code(authorized(
            pb::IssueAccessCodeRequest {
                door_ids: vec![locked],
                grantee: Some(pb::Grantee {
                    r#type: pb::GranteeType::Provider as i32,
                    name: "Fixit".into(),
                    ..Default::default()
                }),
                purpose: pb::CodePurpose::Maintenance as i32,
                r#type: pb::CodeType::Permanent as i32,
                request_id: "c-1".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let id = issued.access_code.unwrap().id;
    // Provisioning tries at once; wait for its first attempt to be recorded.
    let mut door = None;
    for _ in 0..500 {
        let code = codes
            .get_access_code(authorized(
                pb::GetAccessCodeRequest { id: id.clone() },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        if !code.doors[0].detail.is_empty() {
            door = Some(code.doors[0].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let door = door.expect("provisioning never tried the write");
    assert_eq!(door.sync_state, pb::SyncState::Pending as i32);
    assert_eq!(door.failure_reason, "LOCK_GATEWAY_UNAVAILABLE");
    assert_eq!(
        door.detail,
        "lock-gateway could not be reached; nothing was sent"
    );
}
