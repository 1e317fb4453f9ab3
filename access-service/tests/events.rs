//! The event stream over a real socket and PostgreSQL: replay then live with no gap or
//! duplicate under concurrent writes, resumption on another replica after the first
//! dies, filters and who sees what, cursors from elsewhere or past retention,
//! heartbeats, paging, and a consumer too slow to keep.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use access_service::audit::store::{self, BurstRule};
use access_service::audit::{AuditAction, AuditEntry};
use diesel_async::AsyncConnection as _;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::audit_service_client::AuditServiceClient;
use latchkey::pb::access::v1::event_service_client::EventServiceClient;
use latchkey::testkit::{TestDb, authorized, token};
use pb::EventKind as Kind;
use tonic::transport::Channel;
use tonic::{Code, Streaming};
use tonic_types::StatusExt;

const TENANT: &str = "acme";
/// How long a stream may take to deliver what a test waits for.
const PATIENCE: Duration = Duration::from_secs(30);

fn admin() -> String {
    token(TENANT, "admin", &["ADMIN"])
}

/// access-service on a fresh database with `change` applied to its settings; a pool
/// acting as its role, and a channel to it.
async fn start(
    change: impl FnOnce(&mut access_service::Config),
) -> (
    TestDb,
    latchkey::testkit::RunningServer<access_service::RunError>,
    latchkey::db::DbPool,
    Channel,
) {
    let db = common::database().await;
    let mut config = common::config(db.url());
    change(&mut config);
    let server = common::start(config).await;
    let pool = common::pool(&db);
    let channel = server.channel().await;
    (db, server, pool, channel)
}

/// Appends `entries` in one transaction, as the service's role does.
async fn append(pool: &latchkey::db::DbPool, entries: Vec<AuditEntry>) {
    let mut conn = pool.get().await.unwrap();
    conn.transaction(async |conn| store::append(conn, entries, BurstRule::default()).await)
        .await
        .unwrap();
}

/// A granted decision for `user` at `door`: one event per row, never flagged.
fn decision(tenant: &str, user: &str, door: &str) -> AuditEntry {
    common::attempt(tenant, user, "10.0.0.1", door, true)
}

/// `n` granted decisions of `tenant` at door d1, by users `{prefix}0`, `{prefix}1`...
async fn append_decisions(pool: &latchkey::db::DbPool, tenant: &str, prefix: &str, n: usize) {
    append(
        pool,
        (0..n)
            .map(|i| decision(tenant, &format!("{prefix}{i}"), "d1"))
            .collect(),
    )
    .await;
}

fn decisions() -> Option<pb::EventFilter> {
    Some(pb::EventFilter {
        kinds: vec![Kind::AccessGranted as i32, Kind::AccessDenied as i32],
        ..Default::default()
    })
}

fn from_the_start() -> Option<pb::EventStart> {
    Some(pb::EventStart {
        position: Some(pb::event_start::Position::SinceTime(
            prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            },
        )),
    })
}

fn after(cursor: &str) -> Option<pb::EventStart> {
    Some(pb::EventStart {
        position: Some(pb::event_start::Position::AfterCursor(cursor.to_owned())),
    })
}

async fn watch(
    channel: Channel,
    who: &str,
    filter: Option<pb::EventFilter>,
    start: Option<pb::EventStart>,
) -> Result<Streaming<pb::WatchEventsResponse>, tonic::Status> {
    EventServiceClient::new(channel)
        .watch_events(authorized(pb::WatchEventsRequest { filter, start }, who))
        .await
        .map(tonic::Response::into_inner)
}

/// The next `n` events of `stream`, skipping heartbeats.
async fn events(stream: &mut Streaming<pb::WatchEventsResponse>, n: usize) -> Vec<pb::Event> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} events arrived", events.len()))
            .unwrap()
            .expect("the stream goes on");
        if let Some(pb::watch_events_response::Item::Event(event)) = message.item {
            events.push(event);
        }
    }
    events
}

async fn list(
    channel: Channel,
    who: &str,
    filter: Option<pb::EventFilter>,
    start: Option<pb::EventStart>,
    page_token: &str,
    page_size: i32,
) -> Result<pb::ListEventsResponse, tonic::Status> {
    EventServiceClient::new(channel)
        .list_events(authorized(
            pb::ListEventsRequest {
                filter,
                start,
                page_size,
                page_token: page_token.to_owned(),
            },
            who,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Four writers append `rows` decisions in runs of one to five while the test reads.
fn write_concurrently(db: &TestDb, rows: usize) -> tokio::task::JoinHandle<()> {
    let pool = common::pool(db);
    tokio::spawn(async move {
        let writers = (0..4).map(|writer| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut written = writer;
                let mut run = 1;
                while written < rows {
                    let entries = (0..run)
                        .map(|i| decision(TENANT, &format!("u{}", (written + i) % 5), "d1"))
                        .collect();
                    append(&pool, entries).await;
                    written += 4 * run;
                    run = run % 5 + 1;
                }
            })
        });
        for writer in writers {
            writer.await.unwrap();
        }
    })
}

async fn head(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one(
            "SELECT coalesce(max(sequence), 0) FROM access.audit_log WHERE tenant_id = $1",
            &[&TENANT],
        )
        .await
        .unwrap()
        .get(0)
}

fn assert_contiguous(events: &[pb::Event], from: i64) {
    for (offset, event) in events.iter().enumerate() {
        assert_eq!(
            event.sequence,
            from + offset as i64,
            "event {offset} of {}: a gap or a duplicate",
            events.len()
        );
    }
}

/// A stream started in the past replays the log, then follows it live while four
/// writers append: every row once, in order, across the switch.
#[tokio::test]
async fn replay_then_live_has_no_gap_or_duplicate_under_concurrent_writes() {
    let (db, server, pool, _channel) = start(|_| {}).await;
    append_decisions(&pool, TENANT, "u", 300).await;
    let mut stream = watch(
        server.channel().await,
        &admin(),
        decisions(),
        from_the_start(),
    )
    .await
    .unwrap();
    let writing = write_concurrently(&db, 1200);
    let first = events(&mut stream, 300).await;
    writing.await.unwrap();
    let total = usize::try_from(head(&db).await).unwrap();
    let rest = events(&mut stream, total - 300).await;
    let all: Vec<pb::Event> = first.into_iter().chain(rest).collect();
    assert_contiguous(&all, 1);
    assert!(
        all.iter()
            .all(|e| e.kind == Kind::AccessGranted as i32 && e.tenant_id == TENANT)
    );
    let ids: HashSet<&str> = all.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "ids are unique");
}

/// The replica serving a stream dies; the consumer resumes on another replica from the
/// last cursor it received and gets every event exactly once, in order.
#[tokio::test]
async fn a_stream_resumes_on_another_replica_exactly_once() {
    let db = common::database().await;
    let survivor = common::start(common::config(db.url())).await;
    let config = common::config(db.url());
    let (doomed, addr) = latchkey::testkit::doomed_server(|listener| {
        access_service::run(listener, config, std::future::pending())
    });
    let channel = common::connect(addr.port()).await;
    let mut stream = watch(channel, &admin(), decisions(), from_the_start())
        .await
        .unwrap();
    let writing = write_concurrently(&db, 1000);
    let before = events(&mut stream, 200).await;
    doomed.shutdown_background();
    let cursor = before.last().unwrap().cursor.clone();
    writing.await.unwrap();
    let total = usize::try_from(head(&db).await).unwrap();
    let mut resumed = watch(
        survivor.channel().await,
        &admin(),
        decisions(),
        after(&cursor),
    )
    .await
    .unwrap();
    let after_death = events(&mut resumed, total - 200).await;
    let all: Vec<pb::Event> = before.into_iter().chain(after_death).collect();
    assert_contiguous(&all, 1);
}

/// Filters narrow; a member sees only events naming them; another tenant's events never
/// appear.
#[tokio::test]
async fn filters_narrow_and_members_see_only_themselves() {
    let (_db, _server, pool, channel) = start(|_| {}).await;
    let mut by_door = watch(
        channel.clone(),
        &admin(),
        Some(pb::EventFilter {
            door_ids: vec!["d2".into()],
            include_decisions: true,
            ..Default::default()
        }),
        None,
    )
    .await
    .unwrap();
    let member = token(TENANT, "u1", &["GUEST"]);
    let mut mine = watch(
        channel.clone(),
        &member,
        Some(pb::EventFilter {
            include_decisions: true,
            ..Default::default()
        }),
        None,
    )
    .await
    .unwrap();
    let mut default_kinds = watch(channel.clone(), &admin(), None, None).await.unwrap();
    let mut rows = Vec::new();
    for i in 0..40 {
        rows.push(decision(
            TENANT,
            &format!("u{}", i % 4),
            &format!("d{}", i % 3),
        ));
        rows.push(decision("globex", "u1", "d2"));
    }
    append(&pool, rows).await;
    // A door event after the decisions: the default filter leaves decisions out.
    let mut offline = AuditEntry::new(TENANT, "device-events", AuditAction::DeviceEvent, true);
    offline.door_id = "d2".into();
    offline.reason_code = "LOCK_OFFLINE".into();
    offline.metadata = r#"{"kind":"LOCK_OFFLINE"}"#.into();
    append(&pool, vec![offline]).await;

    let door_events = events(&mut by_door, 14).await;
    assert!(
        door_events
            .iter()
            .all(|e| e.door_id == "d2" && e.tenant_id == TENANT)
    );
    let own = events(&mut mine, 10).await;
    assert!(
        own.iter()
            .all(|e| e.user_id == "u1" && e.tenant_id == TENANT),
        "{own:?}"
    );
    let defaults = events(&mut default_kinds, 1).await;
    assert_eq!(defaults[0].kind, Kind::LockOffline as i32);
    assert_eq!(defaults[0].door_id, "d2");

    // A member naming someone else still sees only themselves.
    let theirs = list(
        channel.clone(),
        &member,
        Some(pb::EventFilter {
            user_ids: vec!["u2".into()],
            include_decisions: true,
            ..Default::default()
        }),
        from_the_start(),
        "",
        100,
    )
    .await
    .unwrap();
    assert!(theirs.events.is_empty(), "{:?}", theirs.events);
    let globex = token("globex", "admin", &["ADMIN"]);
    let other = list(channel, &globex, decisions(), from_the_start(), "", 1000)
        .await
        .unwrap();
    assert_eq!(other.events.len(), 40);
    assert!(other.events.iter().all(|e| e.tenant_id == "globex"));
}

/// A forged cursor or one of another tenant is INVALID_ARGUMENT; one older than what
/// retention kept is OUT_OF_RANGE naming the oldest cursor still available, which works.
#[tokio::test]
async fn cursors_from_elsewhere_are_invalid_and_expired_ones_out_of_range() {
    let (db, _server, pool, channel) = start(|_| {}).await;
    append_decisions(&pool, TENANT, "u", 20).await;
    append_decisions(&pool, "globex", "u", 5).await;
    let page = list(
        channel.clone(),
        &admin(),
        decisions(),
        from_the_start(),
        "",
        5,
    )
    .await
    .unwrap();
    let early = page.events[2].cursor.clone();
    let globex = token("globex", "admin", &["ADMIN"]);
    let theirs = list(
        channel.clone(),
        &globex,
        decisions(),
        from_the_start(),
        "",
        5,
    )
    .await
    .unwrap()
    .events[2]
        .cursor
        .clone();
    for cursor in [
        theirs.clone(),
        format!("{early}0"),
        early.replacen('3', "4", 1),
        "e1.3.00".into(),
    ] {
        let status = watch(channel.clone(), &admin(), decisions(), after(&cursor))
            .await
            .unwrap_err();
        assert_eq!(common::fields(&status), ["start.after_cursor"], "{cursor}");
    }
    let status = list(channel.clone(), &admin(), decisions(), None, &theirs, 5)
        .await
        .unwrap_err();
    assert_eq!(common::fields(&status), ["page_token"]);

    // Retention removes the rows before a point between two runs.
    let cut = chrono::Utc::now();
    append_decisions(&pool, TENANT, "v", 10).await;
    AuditServiceClient::new(channel.clone())
        .purge_access_logs(authorized(
            pb::PurgeAccessLogsRequest {
                before: Some(latchkey::pb::timestamp(cut)),
                ..Default::default()
            },
            &admin(),
        ))
        .await
        .unwrap();
    let status = watch(channel.clone(), &admin(), decisions(), after(&early))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let info = status.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.reason, "CURSOR_EXPIRED");
    let oldest = info.metadata["oldest_cursor"].clone();
    let mut resumed = watch(channel, &admin(), decisions(), after(&oldest))
        .await
        .unwrap();
    let first = events(&mut resumed, 1).await;
    let kept: i64 = db
        .client()
        .await
        .query_one(
            "SELECT min(sequence) FROM access.audit_log WHERE tenant_id = $1",
            &[&TENANT],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(first[0].sequence, kept);
}

/// With nothing passing its filter, a stream still sends the current cursor: resuming
/// from it skips the filtered-out stretch.
#[tokio::test]
async fn heartbeats_carry_the_cursor_past_filtered_out_events() {
    let (_db, _server, pool, channel) = start(|config| config.event_heartbeat_secs = 1).await;
    let quiet = Some(pb::EventFilter {
        door_ids: vec!["nowhere".into()],
        include_decisions: true,
        ..Default::default()
    });
    let mut stream = watch(channel.clone(), &admin(), quiet, None).await.unwrap();
    append_decisions(&pool, TENANT, "u", 50).await;
    let end = list(
        channel.clone(),
        &admin(),
        decisions(),
        from_the_start(),
        "",
        1000,
    )
    .await
    .unwrap()
    .cursor;
    // Heartbeats come until one carries the cursor past the 50 rows.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("a heartbeat at the end of the log")
            .unwrap()
            .unwrap();
        match message.item {
            Some(pb::watch_events_response::Item::Heartbeat(beat)) if beat.cursor == end => break,
            Some(pb::watch_events_response::Item::Heartbeat(_)) => {}
            other => panic!("nothing passes the filter, yet {other:?}"),
        }
    }
    append(&pool, vec![decision(TENANT, "u9", "d1")]).await;
    let mut resumed = watch(channel, &admin(), decisions(), after(&end))
        .await
        .unwrap();
    let next = events(&mut resumed, 1).await;
    assert_eq!(next[0].sequence, 51);
}

/// Pages follow each other with no gap, the last one has no token, and its cursor is
/// where a stream takes over.
#[tokio::test]
async fn pages_chain_and_hand_over_to_a_stream() {
    let (_db, _server, pool, channel) = start(|_| {}).await;
    append_decisions(&pool, TENANT, "u", 130).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let cursor = loop {
        let start = if token.is_empty() {
            from_the_start()
        } else {
            None
        };
        let page = list(channel.clone(), &admin(), decisions(), start, &token, 50)
            .await
            .unwrap();
        assert!(page.events.len() <= 50);
        seen.extend(page.events);
        if page.next_page_token.is_empty() {
            break page.cursor;
        }
        token = page.next_page_token;
    };
    assert_eq!(seen.len(), 130);
    assert_contiguous(&seen, 1);
    let mut stream = watch(channel, &admin(), decisions(), after(&cursor))
        .await
        .unwrap();
    append(&pool, vec![decision(TENANT, "late", "d1")]).await;
    let next = events(&mut stream, 1).await;
    assert_eq!(next[0].sequence, 131);
    assert_eq!(next[0].user_id, "late");
}

/// A consumer that takes nothing while events wait is cut off after the configured
/// stall with RESOURCE_EXHAUSTED; what it had been sent stays readable first.
#[tokio::test]
async fn a_consumer_that_takes_nothing_is_cut_off() {
    let (_db, server, pool, _channel) = start(|config| config.event_stream_stall_secs = 2).await;
    // A consumer on a narrow link: the transport holds little for it.
    let narrow = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024)
        .connect()
        .await
        .unwrap();
    let mut stream = watch(narrow, &admin(), decisions(), None).await.unwrap();
    // Far more than the transport and the stream's buffer hold.
    for _ in 0..8 {
        append(
            &pool,
            (0..1000)
                .map(|i| decision(TENANT, &format!("user-{i:04}"), "door-with-a-long-name"))
                .collect(),
        )
        .await;
    }
    // The consumer stalls past the limit (what is under test), then reads.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut received = 0;
    let status = loop {
        match tokio::time::timeout(PATIENCE, stream.message())
            .await
            .unwrap()
        {
            Ok(Some(_)) => {
                received += 1;
                assert!(
                    received <= 8000,
                    "every event arrived: the stream was never cut"
                );
            }
            Ok(None) => panic!("the stream ended without a status after {received}"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "CONSUMER_TOO_SLOW"
    );
    assert!(
        received > 0 && received < 8000,
        "{received} received before the cut"
    );
}

/// How the log's rows read as events: a lock's report by its kind, a keypad entry with
/// the code and its grantee (never the code), a guest's first entry as an arrival, and
/// a flagged failure as suspicious activity too.
#[tokio::test]
async fn rows_read_as_typed_events() {
    let (_db, _server, pool, channel) = start(|_| {}).await;
    let device = |action, reason_code: &str, metadata: &str| {
        let mut entry = AuditEntry::new(TENANT, "device-events", action, true);
        entry.door_id = "d1".into();
        entry.door_name = "Flat 3".into();
        entry.reason_code = reason_code.into();
        entry.metadata = metadata.into();
        entry
    };
    let mut keypad = device(
        AuditAction::Unlock,
        "DEVICE_UNLOCK",
        r#"{"kind":"UNLOCK_PASSCODE","code_id":"c-1","grantee_type":"GUEST","first_use":true,"occur_time":"2026-12-05T10:00:00+00:00"}"#,
    );
    keypad.user_name = "Maria".into();
    keypad.method = "PASSCODE".into();
    let mut denied = common::attempt(TENANT, "mallory", "10.9.9.9", "d1", false);
    denied.reason_code = "NO_MATCHING_RULE".into();
    append(
        &pool,
        vec![
            device(
                AuditAction::DeviceEvent,
                "LOW_BATTERY",
                r#"{"kind":"LOW_BATTERY","battery_percent":12}"#,
            ),
            device(
                AuditAction::DeviceEvent,
                "GATEWAY_OFFLINE",
                r#"{"kind":"GATEWAY_OFFLINE"}"#,
            ),
            device(
                AuditAction::DeviceEvent,
                "PASSCODE_SET",
                r#"{"kind":"PASSCODE_SET","code_id":"c-1","grantee_type":"GUEST"}"#,
            ),
            keypad,
            device(
                AuditAction::AccessDenied,
                "CODE_INVALID",
                r#"{"kind":"WRONG_PASSCODE"}"#,
            ),
        ],
    )
    .await;
    // Five failures of one user in a row: the fifth is flagged.
    append(&pool, (0..5).map(|_| denied.clone()).collect()).await;
    let all = list(
        channel.clone(),
        &admin(),
        Some(pb::EventFilter {
            include_decisions: true,
            ..Default::default()
        }),
        from_the_start(),
        "",
        100,
    )
    .await
    .unwrap()
    .events;
    let kinds: Vec<Kind> = all.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        [
            Kind::LockBatteryLow,
            Kind::LockOffline,
            Kind::CodeSetOnLock,
            Kind::DoorUnlocked,
            Kind::GuestArrived,
            Kind::EntryRefused,
            Kind::AccessDenied,
            Kind::AccessDenied,
            Kind::AccessDenied,
            Kind::AccessDenied,
            Kind::AccessDenied,
            Kind::SuspiciousActivity,
        ]
    );
    assert_eq!(all[0].battery_percent, 12);
    let entry = &all[3];
    assert_eq!(entry.via, "KEYPAD");
    assert_eq!(entry.method(), pb::AccessMethod::Passcode);
    assert_eq!(entry.door_name, "Flat 3");
    let code = entry.code.as_ref().unwrap();
    assert_eq!(
        (
            code.code_id.as_str(),
            code.grantee_type.as_str(),
            code.grantee_name.as_str()
        ),
        ("c-1", "GUEST", "Maria")
    );
    assert_eq!(entry.occurred_time.as_ref().unwrap().seconds, 1_796_464_800);
    assert_eq!(
        all[4].sequence, entry.sequence,
        "the arrival is the entry's row"
    );
    assert_ne!(all[4].id, entry.id);
    assert_ne!(
        all[4].cursor, entry.cursor,
        "every event has a cursor of its own"
    );
    assert_eq!(
        all[11].sequence, all[10].sequence,
        "flagged with the fifth failure"
    );
    assert_eq!(all[11].user_id, "mallory");
    // Resuming after the first event of a row sends the rest of that row.
    let rest = list(
        channel,
        &admin(),
        Some(pb::EventFilter {
            include_decisions: true,
            ..Default::default()
        }),
        after(&all[10].cursor),
        "",
        100,
    )
    .await
    .unwrap()
    .events;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, all[11].id);
}
