//! Passcodes and lock records end to end: lock-gateway over a real socket, its own
//! PostgreSQL database, and the TTLock simulator over HTTP. Writes reach the simulated
//! lock once per request id, refusals and ambiguous ends come back as explained
//! outcomes, and no plaintext code is ever answered or stored.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use latchkey::pb::gateway::v1 as pb;
use latchkey::pb::timestamp;
use latchkey::testkit::{authorized, token};
use lock_gateway::db::retention::{Purged, purge_claims_before};
use lock_gateway::sim::{InjectedFailure, SimConfig};
use lock_gateway::ttlock::ManualClock;
use prost_types::Timestamp;
use tonic::Code;

use common::*;

#[tokio::test]
async fn a_period_passcode_reaches_the_lock_and_is_listed_masked() {
    let h = Harness::start().await;
    let (start, end) = (now() + Duration::hours(1), now() + Duration::hours(25));

    let created = h
        .create(FRONT_DOOR, "482913", Some((start, end)), "stay-1")
        .await;
    assert_eq!(outcome(&created), pb::PasscodeOutcome::Done, "{created:?}");
    assert!(created.passcode_id > 0 && !created.replayed);
    assert_eq!((created.errcode, created.reason.as_str()), (0, ""));

    let on_lock = h.sim.passcodes(FRONT_DOOR);
    assert_eq!(on_lock.len(), 1);
    let written = &on_lock[0];
    assert_eq!(written.id, created.passcode_id);
    assert_eq!(written.code, "482913");
    assert_eq!(written.kind, 3, "period passcode");
    assert_eq!(
        (written.start_ms, written.end_ms),
        (start.timestamp_millis(), end.timestamp_millis())
    );
    assert_eq!(written.name.as_deref(), Some("Guest"));

    // A permanent one, with a leading zero kept.
    let permanent = h.create(FRONT_DOOR, "0506", None, "staff-1").await;
    assert_eq!(outcome(&permanent), pb::PasscodeOutcome::Done);
    assert!(
        h.sim
            .passcodes(FRONT_DOOR)
            .iter()
            .any(|p| p.code == "0506" && p.kind == 2)
    );

    let listed = h.list(FRONT_DOOR).await;
    let shown = format!("{listed:?}");
    assert!(
        !shown.contains("482913") && !shown.contains("0506"),
        "{shown}"
    );
    let period = listed
        .passcodes
        .iter()
        .find(|p| p.passcode_id == created.passcode_id)
        .unwrap();
    assert_eq!(period.masked_code, "****13");
    assert_eq!(period.r#type, 3);
    assert_eq!(period.start_time, Some(timestamp(start)));
    assert_eq!(period.end_time, Some(timestamp(end)));
    assert_eq!(period.name, "Guest");
    assert!(period.custom);
    assert_eq!(period.status, 1);
    let permanent = listed
        .passcodes
        .iter()
        .find(|p| p.passcode_id == permanent.passcode_id)
        .unwrap();
    assert_eq!(permanent.masked_code, "****06");
    assert_eq!((permanent.r#type, permanent.end_time), (2, None));

    h.assert_not_stored(&["482913", "0506"]).await;
}

#[tokio::test]
async fn a_repeated_request_id_writes_the_lock_once() {
    let h = Harness::start().await;
    let first = h.create(FRONT_DOOR, "482913", None, "guest-7").await;
    assert_eq!(outcome(&first), pb::PasscodeOutcome::Done);
    assert!(!first.replayed);
    for _ in 0..2 {
        let again = h.create(FRONT_DOOR, "482913", None, "guest-7").await;
        assert_eq!(outcome(&again), pb::PasscodeOutcome::Done, "{again:?}");
        assert!(again.replayed);
        assert_eq!(again.passcode_id, first.passcode_id);
    }
    assert_eq!(h.sent(ADD), 1, "three calls, one request id, one write");
    assert_eq!(h.sim.passcodes(FRONT_DOOR).len(), 1);

    // The same id for another operation or another lock sends nothing.
    let reused = h.delete(FRONT_DOOR, first.passcode_id, "guest-7").await;
    assert_eq!(outcome(&reused), pb::PasscodeOutcome::Failed);
    assert_eq!(reused.reason, "REQUEST_ID_REUSED");
    let elsewhere = h.create(ROOM_101, "482913", None, "guest-7").await;
    assert_eq!(outcome(&elsewhere), pb::PasscodeOutcome::Failed);
    assert_eq!(elsewhere.reason, "REQUEST_ID_REUSED");
    assert_eq!((h.sent(ADD), h.sent(DELETE)), (1, 0));
    assert_eq!(h.sim.passcodes(FRONT_DOOR).len(), 1);
    assert!(h.sim.passcodes(ROOM_101).is_empty());

    // Request ids are the tenant's own: another tenant's same id is its own write.
    let other = token("globex", "access-service", &["SERVICE"]);
    let mut request = h.new_passcode(ROOM_101, "731904", None, "guest-7");
    request.account_id = h.register(&other).await;
    let theirs = h
        .client
        .clone()
        .create_passcode(authorized(request, &other))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&theirs), pb::PasscodeOutcome::Done, "{theirs:?}");
    assert!(!theirs.replayed);
    assert_eq!(h.sent(ADD), 2);

    h.assert_not_stored(&["482913"]).await;
}

#[tokio::test]
async fn refusals_come_back_failed_with_stable_reasons() {
    let h = Harness::start().await;
    assert_eq!(
        outcome(&h.create(FRONT_DOOR, "482913", None, "first").await),
        pb::PasscodeOutcome::Done
    );

    let duplicate = h.create(FRONT_DOOR, "482913", None, "second").await;
    assert_eq!(outcome(&duplicate), pb::PasscodeOutcome::Failed);
    assert_eq!(
        (
            duplicate.errcode,
            duplicate.reason.as_str(),
            duplicate.retryable
        ),
        (-3007, "DUPLICATE", false)
    );
    assert!(!duplicate.detail.contains("482913"));

    let simple = h.create(FRONT_DOOR, "123456", None, "simple").await;
    assert_eq!(
        (simple.errcode, simple.reason.as_str(), simple.retryable),
        (-2032, "TOO_SIMPLE", false)
    );

    let unreachable = h.create(STORAGE, "482913", None, "storage").await;
    assert_eq!(outcome(&unreachable), pb::PasscodeOutcome::Failed);
    assert_eq!(
        (unreachable.errcode, unreachable.reason.as_str()),
        (-2012, "NO_GATEWAY")
    );

    let unknown = h.create(999_999, "482913", None, "unknown-lock").await;
    assert_eq!(
        (unknown.errcode, unknown.reason.as_str()),
        (-1003, "LOCK_NOT_FOUND")
    );

    h.sim
        .update_faults(|f| f.offline_gateways.push(LOBBY_GATEWAY));
    let offline = h.create(ROOM_101, "731904", None, "offline").await;
    assert_eq!(outcome(&offline), pb::PasscodeOutcome::Failed);
    assert_eq!(
        (offline.errcode, offline.reason.as_str(), offline.retryable),
        (-3002, "GATEWAY_OFFLINE", true)
    );
    assert!(h.sim.passcodes(ROOM_101).is_empty());

    // Back online, the same request id still answers what happened to it; a new id
    // writes.
    h.sim.update_faults(|f| f.offline_gateways.clear());
    let sent = h.sent(ADD);
    let replay = h.create(ROOM_101, "731904", None, "offline").await;
    assert_eq!(
        (outcome(&replay), replay.reason.as_str(), replay.replayed),
        (pb::PasscodeOutcome::Failed, "GATEWAY_OFFLINE", true)
    );
    assert_eq!(h.sent(ADD), sent);
    let retried = h.create(ROOM_101, "731904", None, "offline-2").await;
    assert_eq!(outcome(&retried), pb::PasscodeOutcome::Done);
    assert_eq!(h.sim.passcodes(FRONT_DOOR).len(), 1);

    h.assert_not_stored(&["482913", "123456", "731904"]).await;
}

#[tokio::test]
async fn an_ambiguous_write_is_unconfirmed_and_never_repeated() {
    let h = Harness::start().await;
    // errcode 1, yet the code reached the lock: the one case a retry would duplicate.
    h.sim.update_faults(|f| {
        f.inject
            .push(InjectedFailure::errcode(1).on(ADD).executed())
    });
    let ambiguous = h.create(FRONT_DOOR, "482913", None, "maybe").await;
    assert_eq!(
        outcome(&ambiguous),
        pb::PasscodeOutcome::Unconfirmed,
        "{ambiguous:?}"
    );
    assert_eq!(
        (
            ambiguous.errcode,
            ambiguous.reason.as_str(),
            ambiguous.retryable
        ),
        (1, "AMBIGUOUS", false)
    );
    assert!(
        h.sim
            .passcodes(FRONT_DOOR)
            .iter()
            .any(|p| p.code == "482913")
    );
    assert_eq!(h.sent(ADD), 1, "not retried by the client");

    let replay = h.create(FRONT_DOOR, "482913", None, "maybe").await;
    assert_eq!(outcome(&replay), pb::PasscodeOutcome::Unconfirmed);
    assert!(replay.replayed);
    assert_eq!(h.sent(ADD), 1, "nor by the gateway");
    assert_eq!(h.sim.passcodes(FRONT_DOOR).len(), 1);

    h.assert_not_stored(&["482913"]).await;
}

#[tokio::test]
async fn a_write_the_caller_gave_up_on_still_records_its_outcome() {
    let h = Harness::start().await;
    h.sim.update_faults(|f| f.remote_latency_ms = 600);
    let mut request = h.req(h.new_passcode(ROOM_101, "482913", None, "slow"));
    request.set_timeout(std::time::Duration::from_millis(150));
    let status = h.client.clone().create_passcode(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );

    // Through the same gateway, so TTLock serves it after the abandoned write.
    let next = h.create(FRONT_DOOR, "731904", None, "next").await;
    assert_eq!(outcome(&next), pb::PasscodeOutcome::Done, "{next:?}");

    let replay = h.create(ROOM_101, "482913", None, "slow").await;
    assert_eq!(outcome(&replay), pb::PasscodeOutcome::Done, "{replay:?}");
    assert!(replay.replayed);
    let on_lock = h.sim.passcodes(ROOM_101);
    assert_eq!(on_lock.len(), 1);
    assert_eq!(replay.passcode_id, on_lock[0].id);
    assert_eq!(h.sent(ADD), 2);
}

#[tokio::test]
async fn changes_and_deletions_reach_the_lock() {
    let h = Harness::start().await;
    let created = h.create(ROOM_101, "482913", None, "create").await;
    assert_eq!(outcome(&created), pb::PasscodeOutcome::Done);
    let id = created.passcode_id;

    // A new window that holds now, and a new code.
    let (start, end) = (now() - Duration::hours(1), now() + Duration::hours(1));
    let changed = h
        .change(pb::ChangePasscodeRequest {
            account_id: h.account.clone(),
            lock_id: ROOM_101,
            passcode_id: id,
            new_code: "5093177".into(),
            name: String::new(),
            start_time: Some(timestamp(start)),
            end_time: Some(timestamp(end)),
            request_id: "change-1".into(),
        })
        .await;
    assert_eq!(outcome(&changed), pb::PasscodeOutcome::Done, "{changed:?}");
    assert_eq!(changed.passcode_id, id);
    let on_lock = h.sim.passcodes(ROOM_101);
    assert_eq!(on_lock.len(), 1);
    assert_eq!(on_lock[0].code, "5093177");
    assert_eq!(
        (on_lock[0].start_ms, on_lock[0].end_ms),
        (start.timestamp_millis(), end.timestamp_millis())
    );
    assert_eq!(on_lock[0].name.as_deref(), Some("Guest"), "name kept");
    assert_eq!(h.sim.keypad(ROOM_101, "482913"), Some(false));
    assert_eq!(h.sim.keypad(ROOM_101, "5093177"), Some(true));

    // A name alone.
    let renamed = h
        .change(pb::ChangePasscodeRequest {
            account_id: h.account.clone(),
            lock_id: ROOM_101,
            passcode_id: id,
            name: "Cleaner".into(),
            request_id: "change-2".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(outcome(&renamed), pb::PasscodeOutcome::Done);
    let on_lock = h.sim.passcodes(ROOM_101);
    assert_eq!(on_lock[0].name.as_deref(), Some("Cleaner"));
    assert_eq!(on_lock[0].code, "5093177", "code kept");

    let deleted = h.delete(ROOM_101, id, "delete-1").await;
    assert_eq!(outcome(&deleted), pb::PasscodeOutcome::Done);
    assert_eq!(deleted.passcode_id, id);
    assert!(h.sim.passcodes(ROOM_101).is_empty());
    assert!(h.list(ROOM_101).await.passcodes.is_empty());
    assert_eq!(h.sim.keypad(ROOM_101, "5093177"), Some(false));

    // A repeated deletion is a replay, not a second call.
    let again = h.delete(ROOM_101, id, "delete-1").await;
    assert!(again.replayed);
    assert_eq!((h.sent(CHANGE), h.sent(DELETE)), (2, 1));

    h.assert_not_stored(&["482913", "5093177"]).await;
}

#[tokio::test]
async fn invalid_input_is_refused_naming_each_field_before_ttlock_is_asked() {
    let h = Harness::start().await;
    let sent_before = h.sim.stats().requests;
    let mut client = h.client.clone();
    let hour = Duration::hours(1);

    let status = client
        .create_passcode(h.req(pb::CreatePasscodeRequest {
            account_id: "not-a-uuid".into(),
            lock_id: 0,
            code: "12a4".into(),
            name: "n".repeat(101),
            start_time: Some(timestamp(now())),
            end_time: None,
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        fields(&status),
        [
            "account_id",
            "code",
            "end_time",
            "lock_id",
            "name",
            "request_id"
        ]
    );
    assert!(!format!("{status:?}").contains("12a4"));
    // A NUL is refused before the service sees the request, naming only that field.
    let mut nul = h.new_passcode(FRONT_DOOR, "482913", None, "r0");
    nul.name = "a\0b".into();
    let status = client.create_passcode(h.req(nul)).await.unwrap_err();
    assert_eq!(fields(&status), ["name"]);

    let mut inverted = h.new_passcode(FRONT_DOOR, "1234567890", None, "r1");
    inverted.start_time = Some(timestamp(now() + hour));
    inverted.end_time = Some(timestamp(now()));
    inverted.name = "n".repeat(101);
    let status = client.create_passcode(h.req(inverted)).await.unwrap_err();
    assert_eq!(fields(&status), ["code", "end_time", "name"]);

    let mut before_1970 = h.new_passcode(FRONT_DOOR, "482913", None, "bad id");
    before_1970.start_time = Some(Timestamp {
        seconds: -10,
        nanos: 0,
    });
    before_1970.end_time = Some(timestamp(now()));
    let status = client
        .create_passcode(h.req(before_1970))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["request_id", "start_time"]);

    let status = client
        .change_passcode(h.req(pb::ChangePasscodeRequest {
            account_id: h.account.clone(),
            lock_id: FRONT_DOOR,
            passcode_id: 0,
            new_code: "1".into(),
            end_time: Some(timestamp(now())),
            request_id: "c1".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["new_code", "passcode_id", "start_time"]);
    let status = client
        .change_passcode(h.req(pb::ChangePasscodeRequest {
            account_id: h.account.clone(),
            lock_id: FRONT_DOOR,
            passcode_id: 5,
            request_id: "c2".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["new_code"], "nothing to change");

    let status = client
        .delete_passcode(h.req(pb::DeletePasscodeRequest {
            account_id: String::new(),
            lock_id: -1,
            passcode_id: -1,
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        fields(&status),
        ["account_id", "lock_id", "passcode_id", "request_id"]
    );

    let status = client
        .list_passcodes(h.req(pb::ListPasscodesRequest {
            account_id: "x".into(),
            lock_id: 0,
        }))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["account_id", "lock_id"]);

    for since in [
        timestamp(now() + hour),
        Timestamp {
            seconds: -1,
            nanos: 0,
        },
        Timestamp {
            seconds: 0,
            nanos: 2_000_000_000,
        },
    ] {
        let status = client
            .list_lock_records(h.req(pb::ListLockRecordsRequest {
                account_id: h.account.clone(),
                lock_id: FRONT_DOOR,
                since: Some(since),
            }))
            .await
            .unwrap_err();
        assert_eq!(fields(&status), ["since"], "{since:?}");
    }

    assert_eq!(
        h.sim.stats().requests,
        sent_before,
        "nothing reached TTLock"
    );
    let claims =
        h.db.client()
            .await
            .query_one("SELECT count(*) FROM gateway.passcode_operations", &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
    assert_eq!(claims, 0, "nothing was claimed");
}

#[tokio::test]
async fn another_tenant_cannot_use_the_account() {
    let h = Harness::start().await;
    let other = token("globex", "access-service", &["SERVICE"]);
    let mut client = h.client.clone();
    let sent_before = h.sim.stats().requests;

    let status = client
        .create_passcode(authorized(
            h.new_passcode(FRONT_DOOR, "482913", None, "theirs"),
            &other,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .delete_passcode(authorized(
            pb::DeletePasscodeRequest {
                account_id: h.account.clone(),
                lock_id: FRONT_DOOR,
                passcode_id: 1,
                request_id: "theirs-2".into(),
            },
            &other,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .list_passcodes(authorized(
            pb::ListPasscodesRequest {
                account_id: h.account.clone(),
                lock_id: FRONT_DOOR,
            },
            &other,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .list_lock_records(authorized(
            pb::ListLockRecordsRequest {
                account_id: h.account.clone(),
                lock_id: FRONT_DOOR,
                since: None,
            },
            &other,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // An account id the tenant does not have at all.
    let status = client
        .list_passcodes(h.req(pb::ListPasscodesRequest {
            account_id: uuid::Uuid::now_v7().to_string(),
            lock_id: FRONT_DOOR,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    assert_eq!(h.sim.stats().requests, sent_before);
    assert!(h.sim.passcodes(FRONT_DOOR).is_empty());
}

#[tokio::test]
async fn lock_records_show_keypad_entries_typed_and_masked() {
    // The simulated cloud runs four minutes behind (within TTLock's five-minute `date`
    // tolerance), so its records are older than an instant the caller may ask from.
    let sim_clock = ManualClock::new((now() - Duration::minutes(4)).timestamp_millis());
    let h = Harness::start_with(SimConfig {
        clock: Arc::new(sim_clock),
        ..SimConfig::default()
    })
    .await;
    let window = (now() - Duration::hours(1), now() + Duration::hours(1));
    let created = h.create(ROOM_101, "482913", Some(window), "guest").await;
    assert_eq!(outcome(&created), pb::PasscodeOutcome::Done);
    assert_eq!(h.sim.keypad(ROOM_101, "482913"), Some(true));
    assert_eq!(h.sim.keypad(ROOM_101, "999000"), Some(false));

    let listed = h.records(ROOM_101, None).await;
    let shown = format!("{listed:?}");
    assert!(
        !shown.contains("482913") && !shown.contains("999000"),
        "{shown}"
    );
    let kind = |r: &pb::LockRecord| pb::DeviceEventKind::try_from(r.kind).unwrap();
    let opened = listed
        .records
        .iter()
        .find(|r| kind(r) == pb::DeviceEventKind::UnlockPasscode)
        .unwrap();
    assert_eq!(opened.credential, "****13");
    assert_eq!(opened.username, "Guest");
    assert!(opened.success);
    assert_eq!(opened.battery_percent, 80);
    assert_eq!((opened.record_type, opened.record_type_from_lock), (4, 4));
    assert!(opened.lock_time.is_some() && opened.server_time.is_some());
    assert!(opened.record_id > 0);
    let refused = listed
        .records
        .iter()
        .find(|r| kind(r) == pb::DeviceEventKind::WrongPasscode)
        .unwrap();
    assert_eq!(refused.credential, "****00");
    assert!(!refused.success);

    // `since` bounds the read by the lock's clock.
    let earlier = h
        .records(ROOM_101, Some(timestamp(now() - Duration::minutes(10))))
        .await;
    assert_eq!(earlier.records.len(), listed.records.len());
    let later = h
        .records(ROOM_101, Some(timestamp(now() - Duration::minutes(2))))
        .await;
    assert!(later.records.is_empty(), "{later:?}");
    assert!(h.records(STORAGE, None).await.records.is_empty());

    h.assert_not_stored(&["482913", "999000"]).await;
}

#[tokio::test]
async fn request_ids_are_forgotten_after_the_retention_period() {
    let h = Harness::start().await;
    let old = h.create(FRONT_DOOR, "482913", None, "guest-old").await;
    let recent = h.create(ROOM_101, "731904", None, "guest-recent").await;
    assert_eq!(outcome(&old), pb::PasscodeOutcome::Done, "{old:?}");
    assert_eq!(outcome(&recent), pb::PasscodeOutcome::Done, "{recent:?}");
    let client = h.db.client().await;
    client
        .execute(
            "UPDATE gateway.passcode_operations SET create_time = now() - interval '40 days' \
             WHERE request_id = 'guest-old'",
            &[],
        )
        .await
        .unwrap();
    // Remote operations' claims beside them: two as old, one recent.
    for (request_id, age_days) in [
        ("unlock-old-1", 40),
        ("unlock-old-2", 31),
        ("unlock-new", 29),
    ] {
        client
            .execute(
                "INSERT INTO gateway.remote_operations \
                 (tenant_id, request_id, operation, account_id, lock_id, outcome, create_time, finish_time) \
                 VALUES ('acme', $1, 'UNLOCK', $2::text::uuid, $3, 'CONFIRMED', \
                         now() - make_interval(days => $4), now() - make_interval(days => $4))",
                &[&request_id, &h.account, &FRONT_DOOR, &age_days],
            )
            .await
            .unwrap();
    }

    let pool = h.db.pool(lock_gateway::db::SCHEMA);
    let mut conn = pool.get().await.unwrap();
    let before = Utc::now() - Duration::days(30);
    // One row per statement, so the sweep has to go round for the second old unlock.
    let purged = purge_claims_before(&mut conn, before, 1).await.unwrap();
    assert_eq!(
        purged,
        Purged {
            remote_operations: 2,
            passcode_operations: 1,
        }
    );
    let kept = |table: &'static str| {
        let client = &client;
        async move {
            client
                .query(
                    &format!("SELECT request_id FROM gateway.{table} ORDER BY 1"),
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(kept("passcode_operations").await, ["guest-recent"]);
    assert_eq!(kept("remote_operations").await, ["unlock-new"]);
    assert_eq!(
        purge_claims_before(&mut conn, before, 1).await.unwrap(),
        Purged::default(),
        "nothing left to forget"
    );

    // The remembered id still replays; the forgotten one is a new write.
    let again = h.create(ROOM_101, "731904", None, "guest-recent").await;
    assert!(again.replayed);
    assert_eq!(h.sent(ADD), 2);
    assert!(h.sim.remove_passcode(old.passcode_id));
    let anew = h.create(FRONT_DOOR, "482913", None, "guest-old").await;
    assert_eq!(outcome(&anew), pb::PasscodeOutcome::Done, "{anew:?}");
    assert!(!anew.replayed);
    assert_eq!(h.sent(ADD), 3);
    assert_ne!(anew.passcode_id, old.passcode_id);
}
