//! Access codes reach the simulated TTLock locks through faults: both services, the
//! TTLock simulator and PostgreSQL, with one injectable clock instead of waiting.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::world::*;
use latchkey::clock::Clock;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_code_service_client::AccessCodeServiceClient;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::pb::gateway::v1::RemoteOperationRequest;
use latchkey::pb::gateway::v1::lock_gateway_client::LockGatewayClient;
use latchkey::testkit::authorized;
use lock_gateway::sim::faults::InjectedFailure;

#[tokio::test]
async fn a_stay_code_is_on_the_lock_before_check_in_and_gone_after_check_out() {
    let w = World::new(1, settings()).await;
    let front = w.door("Front door", Some(FRONT_DOOR)).await;
    let patio = w.door("Patio gate", None).await;
    let today = w
        .clock
        .now()
        .with_timezone(&chrono_tz::Europe::Madrid)
        .date_naive();
    let (arrival, departure) = (today + chrono::Days::new(10), today + chrono::Days::new(13));
    let book = |departure: chrono::NaiveDate, request_id: &'static str| {
        let w = &w;
        async move {
            w.codes(0)
                .await
                .issue_stay_codes(authorized(
                    pb::IssueStayCodesRequest {
                        booking_reference: "BK-1042".into(),
                        property_id: w.property.id.clone(),
                        guest: Some(pb::Guest {
                            name: "Ana Ruiz".into(),
                            contact: "ana@example.test".into(),
                        }),
                        arrival_date: Some(date(arrival)),
                        departure_date: Some(date(departure)),
                        code: String::new(),
                        request_id: request_id.into(),
                    },
                    &w.admin,
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let stay = book(departure, "stay-1").await;
    let code = stay.code.clone();
    let guest = stay.guest_code.unwrap();
    let (check_in, check_out) = (madrid(arrival, 15, 0), madrid(departure, 11, 0));
    let mut states: Vec<(String, pb::SyncState)> = guest
        .doors
        .iter()
        .map(|d| (d.door_id.clone(), d.sync_state()))
        .collect();
    states.sort();
    let mut expected = vec![
        (front.clone(), pb::SyncState::Pending),
        (patio.clone(), pb::SyncState::NotApplicable),
    ];
    expected.sort();
    assert_eq!(states, expected);

    // Ten days out nothing is written: the lead time is 72 hours.
    w.clock.advance(Duration::from_secs(3600));
    let worked = w
        .count("SELECT count(*) FROM access.provisioning_outbox WHERE done_time IS NOT NULL")
        .await;
    assert_eq!(worked, 0);
    assert!(w.sim.passcodes(FRONT_DOOR).is_empty());

    // 71 hours before check-in, the code is on the lock with the stay's window.
    w.clock
        .set((check_in - chrono::Duration::hours(71)).timestamp_millis());
    eventually("the code set on the lock", || async {
        w.door_state_of(&guest.id, &front).await == pb::SyncState::Set
    })
    .await;
    let on_lock = w.sim.passcodes(FRONT_DOOR);
    assert_eq!(on_lock.len(), 1);
    assert_eq!(on_lock[0].code, code, "the lock holds the issued code");
    assert_eq!(
        on_lock[0].name.as_deref(),
        Some(format!("lk-{}", guest.id).as_str())
    );
    assert_eq!(
        (on_lock[0].start_ms, on_lock[0].end_ms),
        (check_in.timestamp_millis(), check_out.timestamp_millis())
    );
    // The lock itself enforces the window.
    assert_eq!(
        w.sim.keypad(FRONT_DOOR, &code),
        Some(false),
        "before check-in"
    );
    w.clock
        .set((check_in + chrono::Duration::hours(1)).timestamp_millis());
    assert_eq!(
        w.sim.keypad(FRONT_DOOR, &code),
        Some(true),
        "after check-in"
    );

    // The guest stays a night longer: the same booking moves the window on the lock.
    let later = departure + chrono::Days::new(1);
    let check_out = madrid(later, 11, 0);
    let moved = book(later, "stay-2").await;
    assert!(
        moved.existing && moved.code.is_empty(),
        "same booking, no new code"
    );
    eventually("the window moved on the lock", || async {
        w.sim
            .passcodes(FRONT_DOOR)
            .first()
            .is_some_and(|p| p.end_ms == check_out.timestamp_millis())
    })
    .await;
    assert_eq!(
        w.sim.passcodes(FRONT_DOOR).len(),
        1,
        "moved, not duplicated"
    );

    // After check-out the code expires and leaves the lock.
    w.clock
        .set((check_out + chrono::Duration::minutes(1)).timestamp_millis());
    eventually("the code removed from the lock", || async {
        w.door_state_of(&guest.id, &front).await == pb::SyncState::Removed
    })
    .await;
    assert!(w.sim.passcodes(FRONT_DOOR).is_empty());
    assert_eq!(w.code(&guest.id).await.status(), pb::CodeStatus::Expired);
    assert_eq!(w.adds(), 1);
    let stored = w.stored_text().await;
    assert!(!stored.contains(&code), "the plaintext code is stored");
}

#[tokio::test]
async fn codes_converge_once_the_gateway_is_back_with_no_duplicates() {
    let w = World::new(1, settings()).await;
    let front = w.door("Front door", Some(FRONT_DOOR)).await;
    w.sim
        .update_faults(|f| f.offline_gateways.push(LOBBY_GATEWAY));
    let now = w.clock.now();
    let window = Some((now, now + chrono::Duration::days(2)));
    let mut ids = Vec::new();
    for (i, code) in ["582913", "730614", "194627"].iter().enumerate() {
        ids.push(
            w.issue(0, &[&front], code, window, &format!("offline-{i}"))
                .await
                .access_code
                .unwrap()
                .id,
        );
    }
    eventually("every write refused as offline", || async {
        w.count(
            "SELECT count(*) FROM access.provisioning_outbox \
             WHERE done_time IS NULL AND attempts > 0 AND last_error LIKE 'GATEWAY_OFFLINE%'",
        )
        .await
            == 3
    })
    .await;
    for id in &ids {
        let door = &w.code(id).await.doors[0];
        assert_eq!(
            door.sync_state(),
            pb::SyncState::Pending,
            "retried, not given up"
        );
        assert!(door.detail.contains("GATEWAY_OFFLINE"), "{}", door.detail);
        assert_eq!(door.failure_reason, "GATEWAY_OFFLINE", "why it waits");
    }
    assert!(w.sim.passcodes(FRONT_DOOR).is_empty());

    // The gateway comes back; past the backoff every code is written once.
    w.sim.update_faults(|f| f.offline_gateways.clear());
    w.clock.advance(Duration::from_secs(11 * 60));
    for id in &ids {
        eventually("the code set", || async {
            w.door_state(id).await == pb::SyncState::Set
        })
        .await;
    }
    let mut names: Vec<String> = w
        .sim
        .passcodes(FRONT_DOOR)
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    names.sort();
    let mut expected: Vec<String> = ids.iter().map(|id| format!("lk-{id}")).collect();
    expected.sort();
    assert_eq!(names, expected, "each code once on the lock");
}

#[tokio::test]
async fn a_code_the_lock_already_holds_fails_as_a_duplicate_with_its_reason() {
    let w = World::new(1, settings()).await;
    let front = w.door("Front door", Some(FRONT_DOOR)).await;
    w.app_passcode(FRONT_DOOR, "505172", "Owner").await;
    let issued = w
        .issue(0, &[&front], "505172", None, "dup-1")
        .await
        .access_code
        .unwrap();
    eventually("the write refused", || async {
        w.door_state(&issued.id).await == pb::SyncState::Failed
    })
    .await;
    let door = &w.code(&issued.id).await.doors[0];
    assert_eq!(door.failure_reason, "DUPLICATE_ON_LOCK");
    assert_eq!(w.adds(), 2, "the owner's write and ours, never retried");
    assert_eq!(w.sim.passcodes(FRONT_DOOR).len(), 1);
}

#[tokio::test]
async fn an_ambiguous_write_is_settled_by_reading_the_lock() {
    let w = World::new(1, settings()).await;
    let front = w.door("Front door", Some(FRONT_DOOR)).await;

    // errcode 1, and the lock did take the code: reading the lock confirms it.
    w.sim.update_faults(|f| {
        f.inject.push(
            InjectedFailure::errcode(1)
                .on("/v3/keyboardPwd/add")
                .executed(),
        )
    });
    let taken = w
        .issue(0, &[&front], "614283", None, "amb-1")
        .await
        .access_code
        .unwrap();
    eventually("the ambiguous write settled", || async {
        w.door_state(&taken.id).await == pb::SyncState::Set
    })
    .await;
    assert_eq!(w.adds(), 1, "not written twice");
    let on_lock = w.sim.passcodes(FRONT_DOOR);
    assert_eq!(
        w.code(&taken.id).await.doors[0].lock_passcode_id,
        on_lock[0].id
    );

    // errcode 1, and the lock did not take it: it is written again, once.
    w.sim.update_faults(|f| {
        f.inject
            .push(InjectedFailure::errcode(1).on("/v3/keyboardPwd/add"))
    });
    let missed = w
        .issue(0, &[&front], "827350", None, "amb-2")
        .await
        .access_code
        .unwrap();
    w.clock.advance(Duration::from_secs(5));
    eventually("the missed write made again", || async {
        w.clock.advance(Duration::from_secs(1));
        w.door_state(&missed.id).await == pb::SyncState::Set
    })
    .await;
    assert_eq!(w.adds(), 3);
    assert_eq!(w.sim.passcodes(FRONT_DOOR).len(), 2);
}

#[tokio::test]
async fn two_replicas_provision_a_thousand_codes_with_each_write_made_once() {
    let w = World::new(2, settings()).await;
    let mut doors = Vec::new();
    for (name, lock) in [
        ("Front", FRONT_DOOR),
        ("Room 101", ROOM_101),
        ("Annex", ANNEX),
        ("Bike shed", BIKE_SHED),
    ] {
        doors.push(w.door(name, Some(lock)).await);
    }
    let mut issued = Vec::new();
    for i in 0..1000_usize {
        let door = &doors[i % doors.len()];
        // Generated: distinct on each lock and never too simple for it.
        issued.push(
            w.issue(i % 2, &[door], "", None, &format!("bulk-{i}"))
                .await,
        );
    }
    assert!(issued.iter().all(|r| !r.code.is_empty()));
    eventually("every code set", || async {
        w.count("SELECT count(*) FROM access.access_code_doors WHERE sync_state = 'SET'")
            .await
            == 1000
    })
    .await;
    assert_eq!(
        w.adds(),
        1000,
        "each write reached the simulator exactly once"
    );
    for lock in [FRONT_DOOR, ROOM_101, ANNEX, BIKE_SHED] {
        assert_eq!(w.sim.passcodes(lock).len(), 250);
    }
    assert_eq!(
        w.sim.stats().overlaps,
        0,
        "gateway commands never overlapped"
    );
}

#[tokio::test]
async fn passcodes_latchkey_did_not_create_are_reported_and_removed_only_when_asked() {
    let w = World::new(1, settings()).await;
    let front = w.door("Front door", Some(FRONT_DOOR)).await;
    let ours = w
        .issue(0, &[&front], "731964", None, "ours")
        .await
        .access_code
        .unwrap();
    eventually("our code set", || async {
        w.door_state(&ours.id).await == pb::SyncState::Set
    })
    .await;
    w.app_passcode(FRONT_DOOR, "268413", "Handyman").await;

    let mut codes = w.codes(0).await;
    let report = codes
        .reconcile_lock(authorized(
            pb::ReconcileLockRequest {
                door_id: front.clone(),
                remove_unmanaged: false,
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.in_sync, 1);
    assert_eq!(report.unmanaged.len(), 1);
    assert_eq!(
        (
            report.unmanaged[0].name.as_str(),
            report.unmanaged[0].masked_code.as_str()
        ),
        ("Handyman", "****13")
    );
    assert_eq!(
        w.sim.passcodes(FRONT_DOOR).len(),
        2,
        "reported, not touched"
    );

    // Someone deletes our code in the app: reconciliation puts it back.
    let our_id = w.code(&ours.id).await.doors[0].lock_passcode_id;
    assert!(w.sim.remove_passcode(our_id));
    let report = codes
        .reconcile_lock(authorized(
            pb::ReconcileLockRequest {
                door_id: front.clone(),
                remove_unmanaged: true,
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.queued_set, std::slice::from_ref(&ours.id));
    assert_eq!(report.removed_unmanaged.len(), 1);
    eventually("our code set again", || async {
        w.door_state(&ours.id).await == pb::SyncState::Set
    })
    .await;
    let on_lock = w.sim.passcodes(FRONT_DOOR);
    assert_eq!(on_lock.len(), 1);
    assert_eq!(on_lock[0].code, "731964");
}

#[tokio::test]
async fn every_intent_completes_after_access_service_is_killed_midway() {
    let mut w = World::new(1, settings()).await;
    // Only the instance about to be killed works on the intents.
    w.access.pop().unwrap().stop().await.unwrap();
    w.sim.update_faults(|f| f.remote_latency_ms = 60);
    // The first instance runs on a runtime of its own, so it can die abruptly.
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let config = access_config(&w.db, &w.gateway.url(), &w.clock);
    {
        let _inside = doomed.enter();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        doomed.spawn(access_service::run(
            listener,
            config,
            std::future::pending(),
        ));
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let admin = w.admin.clone();
    let door = DirectoryServiceClient::new(channel.clone())
        .create_door(authorized(
            pb::CreateDoorRequest {
                door: Some(pb::Door {
                    property_id: w.property.id.clone(),
                    name: "Front".into(),
                    r#type: pb::DoorType::Unit as i32,
                    active: true,
                    lock: Some(pb::LockBinding {
                        account_id: w.account.clone(),
                        lock_id: FRONT_DOOR,
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let mut codes = AccessCodeServiceClient::new(channel);
    for i in 0..40_usize {
        codes
            .issue_access_code(authorized(
                pb::IssueAccessCodeRequest {
                    door_ids: vec![door.clone()],
                    grantee: Some(pb::Grantee {
                        r#type: pb::GranteeType::Guest as i32,
                        name: format!("Guest {i}"),
                        ..Default::default()
                    }),
                    purpose: pb::CodePurpose::Other as i32,
                    r#type: pb::CodeType::Permanent as i32,
                    code: String::new(),
                    request_id: format!("kill-{i}"),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap();
    }
    eventually("some codes set", || async {
        w.count("SELECT count(*) FROM access.access_code_doors WHERE sync_state = 'SET'")
            .await
            >= 5
    })
    .await;
    doomed.shutdown_background();
    let set_at_kill = w
        .count("SELECT count(*) FROM access.access_code_doors WHERE sync_state = 'SET'")
        .await;
    assert!(set_at_kill < 40, "killed midway, {set_at_kill} set");

    let _restarted = common::start_access(access_config(&w.db, &w.gateway.url(), &w.clock)).await;
    eventually("every code set after the restart", || async {
        // Retries are scheduled on the service's clock: let it run.
        w.clock.advance(Duration::from_millis(500));
        w.count("SELECT count(*) FROM access.access_code_doors WHERE sync_state = 'SET'")
            .await
            == 40
    })
    .await;
    assert_eq!(
        w.sim.passcodes(FRONT_DOOR).len(),
        40,
        "nothing lost, nothing twice"
    );
    assert_eq!(
        w.adds(),
        40,
        "an interrupted write was asked about, not repeated"
    );
    assert_eq!(
        w.count("SELECT count(*) FROM access.provisioning_outbox WHERE done_time IS NULL")
            .await,
        0
    );
}

#[tokio::test]
async fn a_guest_opening_with_the_issued_code_is_audited_by_name_until_its_uses_run_out() {
    let w = World::with_follower(1, settings(), true).await;
    let front = w.door("Front door", Some(FRONT_DOOR)).await;
    w.sync_locks().await;
    let now = w.clock.now();
    let issued = w
        .codes(0)
        .await
        .issue_access_code(authorized(
            pb::IssueAccessCodeRequest {
                door_ids: vec![front.clone()],
                grantee: Some(pb::Grantee {
                    r#type: pb::GranteeType::Guest as i32,
                    name: "Ana Ruiz".into(),
                    contact: "ana@example.test".into(),
                    ..Default::default()
                }),
                purpose: pb::CodePurpose::Stay as i32,
                r#type: pb::CodeType::Temporary as i32,
                start_time: Some(latchkey::pb::timestamp(now - chrono::Duration::hours(1))),
                end_time: Some(latchkey::pb::timestamp(now + chrono::Duration::days(2))),
                max_usages: 2,
                code: "480263".into(),
                request_id: "guest-1".into(),
                ..Default::default()
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let code = issued.access_code.unwrap();
    eventually("the guest code set", || async {
        w.door_state(&code.id).await == pb::SyncState::Set
    })
    .await;

    // Two entries on the keypad, read back from the lock's records.
    assert_eq!(w.sim.keypad(FRONT_DOOR, "480263"), Some(true));
    w.clock.advance(Duration::from_secs(5));
    assert_eq!(w.sim.keypad(FRONT_DOOR, "480263"), Some(true));
    w.sync_locks().await;
    let unlocks = || async {
        w.logs(pb::LogFilter {
            door_id: front.clone(),
            action: pb::AuditAction::Unlock as i32,
            method: pb::AccessMethod::Passcode as i32,
            ..Default::default()
        })
        .await
    };
    eventually("both unlocks audited", || async {
        unlocks().await.len() == 2
    })
    .await;
    for row in unlocks().await {
        assert_eq!(row.user_name, "Ana Ruiz", "the row names the guest");
        assert!(
            row.metadata_json.contains(&code.id),
            "{}",
            row.metadata_json
        );
        assert!(!row.metadata_json.contains("480263"));
    }

    // The second use was the last: the code is exhausted and leaves the lock.
    eventually("the code exhausted and removed", || async {
        let now = w.code(&code.id).await;
        now.status() == pb::CodeStatus::Exhausted
            && now.doors[0].sync_state() == pb::SyncState::Removed
    })
    .await;
    assert!(w.sim.passcodes(FRONT_DOOR).is_empty());
    assert_eq!(w.code(&code.id).await.usage_count, 2);
    assert!(!w.stored_text().await.contains("480263"));
}

#[tokio::test]
async fn periodic_reconciliation_puts_back_a_code_deleted_behind_latchkeys_back() {
    let mut w = World::new(1, settings()).await;
    w.access.pop().unwrap().stop().await.unwrap();
    let mut config = access_config(&w.db, &w.gateway.url(), &w.clock);
    config.reconcile_interval_secs = 1;
    w.access.push(common::start_access(config).await);
    let front = w.door("Front door", Some(FRONT_DOOR)).await;
    let code = w
        .issue(0, &[&front], "731964", None, "periodic")
        .await
        .access_code
        .unwrap();
    eventually("the code set", || async {
        w.door_state(&code.id).await == pb::SyncState::Set
    })
    .await;
    let first = w.code(&code.id).await.doors[0].lock_passcode_id;
    assert!(w.sim.remove_passcode(first));
    eventually("the code set again without being asked", || async {
        w.sim.passcodes(FRONT_DOOR).len() == 1
            && w.code(&code.id).await.doors[0].lock_passcode_id != first
    })
    .await;
    assert_eq!(w.sim.passcodes(FRONT_DOOR)[0].code, "731964");
}

/// How one call to TTLock ends, scripted on the simulator.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Done,
    /// Gateway busy (-3003): refused, worth another try.
    Retryable,
    /// The lock is full (-3009): refused for good.
    Final,
    /// errcode 1 after the lock did take the write.
    UnconfirmedTaken,
    /// errcode 1 and the lock did not take it.
    UnconfirmedMissed,
}

const ENDINGS: [Ending; 5] = [
    Ending::Done,
    Ending::Retryable,
    Ending::Final,
    Ending::UnconfirmedTaken,
    Ending::UnconfirmedMissed,
];

fn scripted(ending: Ending, path: &str) -> Option<InjectedFailure> {
    match ending {
        Ending::Done => None,
        Ending::Retryable => Some(InjectedFailure::errcode(-3003).on(path)),
        Ending::Final => Some(InjectedFailure::errcode(-3009).on(path)),
        Ending::UnconfirmedTaken => Some(InjectedFailure::errcode(1).on(path).executed()),
        Ending::UnconfirmedMissed => Some(InjectedFailure::errcode(1).on(path)),
    }
}

async fn revoke(w: &World, code: &str, request_id: &str) {
    w.codes(0)
        .await
        .revoke_access_code(authorized(
            pb::RevokeAccessCodeRequest {
                id: code.into(),
                reason: "check-out".into(),
                request_id: request_id.into(),
            },
            &w.admin,
        ))
        .await
        .unwrap();
}

/// Every pairing of how a write and the removal that follows its revocation end, with
/// the revocation after the write settled and while it waited in lock-gateway behind
/// another lock's command on the same TTLock gateway (so the removal may look at the
/// lock before the write reaches it): once no
/// intent is left, the door's state says what the lock holds. REMOVED means the lock
/// has no passcode for the code; a code left on the lock is a FAILED removal with its
/// reason. Nothing is left PENDING, SETTING or REMOVING.
#[tokio::test]
async fn every_interleaving_of_a_write_and_its_removal_ends_as_the_lock_is() {
    // Two replicas: one may carry out the removal while the other's write runs.
    let w = World::new(2, settings()).await;
    let front = w.door("Front door", Some(FRONT_DOOR)).await;
    let mut wrong = Vec::new();
    let mut case = 0;
    for in_flight in [false, true] {
        for set in ENDINGS {
            for remove in ENDINGS {
                case += 1;
                let what = format!("set {set:?}, remove {remove:?}, revoked in flight {in_flight}");
                w.sim.update_faults(|f| {
                    f.remote_latency_ms = if in_flight { 1000 } else { 0 };
                    f.inject = scripted(set, "/v3/keyboardPwd/add").into_iter().collect();
                });
                // In flight: a command on another lock of the same TTLock gateway holds
                // it, so the write waits its turn in lock-gateway while it is revoked.
                let blocker = if in_flight {
                    let before = w.sim.stats().remote_commands;
                    let mut gateway = LockGatewayClient::new(w.gateway.channel().await);
                    let request = authorized(
                        RemoteOperationRequest {
                            account_id: w.account.clone(),
                            lock_id: ROOM_101,
                            request_id: format!("sm-hold-{case}"),
                        },
                        &w.service,
                    );
                    let held = tokio::spawn(async move { gateway.remote_lock(request).await });
                    eventually("the gateway held", || async {
                        w.sim.stats().remote_commands > before
                    })
                    .await;
                    Some(held)
                } else {
                    None
                };
                let code = w
                    .issue(
                        0,
                        &[&front],
                        &format!("{}", 500_000 + case * 7919),
                        None,
                        &format!("sm-{case}"),
                    )
                    .await
                    .access_code
                    .unwrap()
                    .id;
                let open = format!(
                    "SELECT count(*) FROM access.provisioning_outbox WHERE code_id = '{code}' \
                     AND (done_time IS NULL OR lease_until IS NOT NULL)"
                );
                if in_flight {
                    eventually("the write under way", || async {
                        w.door_state(&code).await == pb::SyncState::Setting
                    })
                    .await;
                } else {
                    eventually("the write settled", || async {
                        w.clock.advance(Duration::from_millis(300));
                        matches!(
                            w.door_state(&code).await,
                            pb::SyncState::Set | pb::SyncState::Failed
                        )
                    })
                    .await;
                }
                w.sim.update_faults(|f| {
                    f.inject.extend(scripted(remove, "/v3/keyboardPwd/delete"));
                });
                revoke(&w, &code, &format!("sm-revoke-{case}")).await;
                if in_flight {
                    // The revocation closed the write while it ran.
                    assert_eq!(
                        w.count(&format!(
                            "SELECT count(*) FROM access.provisioning_outbox WHERE code_id = '{code}' \
                             AND intent = 'SET' AND last_error = 'superseded by removal'"
                        ))
                        .await,
                        1,
                        "{what}: revoked while the write ran"
                    );
                }
                eventually(&format!("{what}: every intent ended"), || async {
                    w.clock.advance(Duration::from_secs(3));
                    w.count(&open).await == 0
                })
                .await;
                if let Some(held) = blocker {
                    held.await.unwrap().unwrap();
                }
                let door = w.code(&code).await.doors[0].clone();
                let name = format!("lk-{code}");
                let on_lock = w
                    .sim
                    .passcodes(FRONT_DOOR)
                    .iter()
                    .any(|p| p.name.as_deref() == Some(name.as_str()));
                let matches = if on_lock {
                    door.sync_state() == pb::SyncState::Failed && !door.failure_reason.is_empty()
                } else {
                    door.sync_state() == pb::SyncState::Removed
                };
                if !matches {
                    wrong.push(format!(
                        "{what}: door {:?} ({}: {}), on the lock: {on_lock}",
                        door.sync_state(),
                        door.failure_reason,
                        door.detail
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {case} cases end unlike the lock:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A replica on a runtime of its own, which the test can stop abruptly, and a door of
/// it bound to the front door lock: the runtime, a channel to the replica, the door id.
async fn doomed_replica(
    w: &World,
    config: access_service::Config,
) -> (tokio::runtime::Runtime, tonic::transport::Channel, String) {
    let (doomed, addr) = latchkey::testkit::doomed_server(|listener| {
        access_service::run(listener, config, std::future::pending())
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let front = DirectoryServiceClient::new(channel.clone())
        .create_door(authorized(
            pb::CreateDoorRequest {
                door: Some(pb::Door {
                    property_id: w.property.id.clone(),
                    name: "Front".into(),
                    r#type: pb::DoorType::Unit as i32,
                    active: true,
                    lock: Some(pb::LockBinding {
                        account_id: w.account.clone(),
                        lock_id: FRONT_DOOR,
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    (doomed, channel, front)
}

/// A replica dies while its removal of a revoked code is in flight and refused: the
/// claim it held is taken over by a fresh replica within seconds (with the default
/// lease), under the same request id first, and the code leaves the lock within 10 s
/// of the stop while the gateway is reachable.
#[tokio::test]
async fn a_revoked_code_leaves_the_lock_within_seconds_of_a_replica_dying_mid_removal() {
    let mut w = World::new(1, settings()).await;
    w.access.pop().unwrap().stop().await.unwrap();
    let lease = access_service::Config::new(w.db.url(), "unused").provisioning_lease_secs;
    let mut config = access_config(&w.db, &w.gateway.url(), &w.clock);
    config.provisioning_lease_secs = lease;
    let (doomed, channel, front) = doomed_replica(&w, config).await;
    let mut codes = AccessCodeServiceClient::new(channel);
    let code = codes
        .issue_access_code(authorized(
            pb::IssueAccessCodeRequest {
                door_ids: vec![front],
                grantee: Some(pb::Grantee {
                    r#type: pb::GranteeType::Guest as i32,
                    name: "Guest".into(),
                    ..Default::default()
                }),
                purpose: pb::CodePurpose::Stay as i32,
                r#type: pb::CodeType::Permanent as i32,
                code: "583920".into(),
                request_id: "crash-1".into(),
                ..Default::default()
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .access_code
        .unwrap()
        .id;
    let state = format!(
        "SELECT count(*) FROM access.access_code_doors WHERE code_id = '{code}' AND sync_state = "
    );
    eventually("the code set", || async {
        w.count(&format!("{state}'SET'")).await == 1
    })
    .await;
    assert_eq!(w.sim.passcodes(FRONT_DOOR).len(), 1);

    // The removal is under way when the replica dies; this attempt ends ambiguously
    // (errcode 1, which lock-gateway never retries) and the lock keeps the code.
    w.sim.update_faults(|f| {
        f.remote_latency_ms = 3000;
        f.inject
            .push(InjectedFailure::errcode(1).on("/v3/keyboardPwd/delete"));
    });
    codes
        .revoke_access_code(authorized(
            pb::RevokeAccessCodeRequest {
                id: code.clone(),
                reason: "check-out".into(),
                request_id: "crash-revoke".into(),
            },
            &w.admin,
        ))
        .await
        .unwrap();
    let in_flight = "SELECT count(*) FROM gateway.passcode_operations \
                     WHERE operation ILIKE '%delete%' AND finish_time IS NULL";
    eventually("the removal in flight", || async {
        w.count(in_flight).await == 1
    })
    .await;
    doomed.shutdown_background();
    let stopped = std::time::Instant::now();
    w.sim.update_faults(|f| f.remote_latency_ms = 0);

    let _other = common::start_access({
        let mut config = access_config(&w.db, &w.gateway.url(), &w.clock);
        config.provisioning_lease_secs = lease;
        config
    })
    .await;
    eventually("the code off the lock", || async {
        // Retries are scheduled on the service's clock: let it run.
        w.clock.advance(Duration::from_millis(500));
        w.sim.passcodes(FRONT_DOOR).is_empty()
    })
    .await;
    let took = stopped.elapsed();
    eprintln!("revoked code off the lock {took:?} after the replica stopped (lease {lease} s)");
    assert!(
        took < Duration::from_secs(10),
        "the revoked code stayed on the lock {took:?} after the replica stopped"
    );
    eventually("the door REMOVED", || async {
        w.count(&format!("{state}'REMOVED'")).await == 1
    })
    .await;
    assert_eq!(
        w.sim
            .stats()
            .requests_by_path
            .get("/v3/keyboardPwd/delete")
            .copied(),
        Some(2),
        "the interrupted removal was asked about under its request id, then sent once more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_revoked_as_its_replica_dies_is_removed_when_it_lands_late() {
    // The write waits in lock-gateway while its code is revoked and its replica dies:
    // nobody will report it, and it lands after the removal found the lock empty.
    let mut w = World::new(1, settings()).await;
    w.access.pop().unwrap().stop().await.unwrap();
    let config = access_config(&w.db, &w.gateway.url(), &w.clock);
    let deadline = Duration::from_millis(config.lock_gateway_timeout_ms);
    let (doomed, channel, front) = doomed_replica(&w, config).await;
    w.sim.update_faults(|f| f.remote_latency_ms = 6000);
    let mut codes = AccessCodeServiceClient::new(channel);
    let code = codes
        .issue_access_code(authorized(
            pb::IssueAccessCodeRequest {
                door_ids: vec![front],
                grantee: Some(pb::Grantee {
                    r#type: pb::GranteeType::Guest as i32,
                    name: "Guest".into(),
                    ..Default::default()
                }),
                purpose: pb::CodePurpose::Stay as i32,
                r#type: pb::CodeType::Permanent as i32,
                code: "583920".into(),
                request_id: "orphan-1".into(),
                ..Default::default()
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .access_code
        .unwrap()
        .id;
    let writes = |finished: bool| {
        format!(
            "SELECT count(*) FROM gateway.passcode_operations \
             WHERE operation ILIKE '%create%' AND finish_time IS {}NULL",
            if finished { "NOT " } else { "" }
        )
    };
    eventually("the write in flight", || async {
        w.count(&writes(false)).await == 1
    })
    .await;
    codes
        .revoke_access_code(authorized(
            pb::RevokeAccessCodeRequest {
                id: code.clone(),
                reason: "cancelled".into(),
                request_id: "orphan-revoke".into(),
            },
            &w.admin,
        ))
        .await
        .unwrap();
    doomed.shutdown_background();
    let _other = common::start_access(access_config(&w.db, &w.gateway.url(), &w.clock)).await;

    // The removal looks at the lock (its retries run on the service's clock) once the
    // dead worker's lease has lapsed, and finds nothing: the write has not landed yet.
    let looked = "SELECT count(*) FROM access.provisioning_outbox WHERE intent = 'REMOVE' \
                  AND (done_time IS NOT NULL OR last_error LIKE '%looking again%')";
    eventually("the removal looking at the lock", || async {
        w.clock.advance(Duration::from_millis(100));
        w.count(looked).await == 1
    })
    .await;
    assert_eq!(
        w.count(&writes(true)).await,
        0,
        "the write landed too early"
    );
    // The write lands after the removal looked: the lock holds a revoked code.
    eventually("the orphaned write landing", || async {
        w.count(&writes(true)).await == 1
    })
    .await;
    assert_eq!(w.sim.passcodes(FRONT_DOOR).len(), 1);
    // Once lock-gateway's deadline for that write has passed, the removal looks again.
    w.clock.advance(deadline + Duration::from_secs(16));
    eventually("the revoked code off the lock", || async {
        w.clock.advance(Duration::from_millis(500));
        w.sim.passcodes(FRONT_DOOR).is_empty()
    })
    .await;
    let state = format!(
        "SELECT count(*) FROM access.access_code_doors WHERE code_id = '{code}' \
         AND sync_state = 'REMOVED'"
    );
    eventually("the door REMOVED", || async { w.count(&state).await == 1 }).await;
}
