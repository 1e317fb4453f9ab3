//! The per-tenant snapshot cache: requests that miss together share one load, and a
//! change rereads only the part of the tenant it touched.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use access_service::decision::IndexedRule;
use access_service::snapshot::{CHANNEL, SnapshotCache, TenantSnapshot};
use latchkey::testkit::TestDb;
use uuid::Uuid;

#[tokio::test]
async fn concurrent_misses_share_one_load_of_the_tenant() {
    let (db, _sql) = acme().await;
    let (cache, listener) = listening(&db).await;
    let gets: Vec<_> = (0..32)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get("acme").await.map(|_| ()) })
        })
        .collect();
    for get in gets {
        get.await.unwrap().unwrap();
    }
    assert_eq!(cache.loads(), 1, "32 requests, one load");
    cache.get("acme").await.unwrap();
    assert_eq!(cache.loads(), 1, "then served from the cache");
    cache.get("other").await.unwrap();
    assert_eq!(cache.loads(), 2, "another tenant loads on its own");
    listener.abort();
}

/// The snapshot of "acme" once `ready` holds of it, read again as changes arrive.
async fn until(
    cache: &Arc<SnapshotCache>,
    what: &str,
    ready: impl Fn(&TenantSnapshot) -> bool,
) -> Arc<TenantSnapshot> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let snapshot = cache.get("acme").await.unwrap();
        if ready(&snapshot) {
            return snapshot;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never reached the snapshot"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const A: Uuid = Uuid::from_u128(0xa);
const B: Uuid = Uuid::from_u128(0xb);
const RULE_A: Uuid = Uuid::from_u128(0x1a);
const RULE_B: Uuid = Uuid::from_u128(0x1b);
const USER: Uuid = Uuid::from_u128(0x5);

/// A database whose tenant "acme" has doors A and B with a rule each and one user, and
/// a client on it with the service's schema first on the path.
async fn acme() -> (TestDb, tokio_postgres::Client) {
    let db = TestDb::migrated(vec![(
        access_service::db::SCHEMA,
        access_service::db::MIGRATIONS,
        access_service::db::MIGRATIONS_DIR,
    )])
    .await;
    let sql = db.client().await;
    let property = Uuid::from_u128(0x9);
    sql.batch_execute(&format!(
        "SET search_path TO access;
         INSERT INTO tenants (tenant_id) VALUES ('acme');
         INSERT INTO properties (id, tenant_id, name, time_zone)
             VALUES ('{property}', 'acme', 'HQ', 'Europe/Madrid');
         INSERT INTO doors (id, tenant_id, property_id, name, door_type) VALUES
             ('{A}', 'acme', '{property}', 'A', 'ROOM'), ('{B}', 'acme', '{property}', 'B', 'ROOM');
         INSERT INTO users (id, tenant_id, name, roles) VALUES ('{USER}', 'acme', 'Ana', '{{staff}}');
         INSERT INTO rules (id, tenant_id, door_id, name, roles) VALUES
             ('{RULE_A}', 'acme', '{A}', 'staff at A', '{{staff}}'),
             ('{RULE_B}', 'acme', '{B}', 'Ana at B', '{{}}');"
    ))
    .await
    .unwrap();
    (db, sql)
}

/// A cache on `db` whose listener has connected.
async fn listening(db: &TestDb) -> (Arc<SnapshotCache>, tokio::task::JoinHandle<()>) {
    listening_with(db, access_service::snapshot::STALE_LIMIT).await
}

/// A cache on `db` with `stale_limit` whose listener has connected.
async fn listening_with(
    db: &TestDb,
    stale_limit: Duration,
) -> (Arc<SnapshotCache>, tokio::task::JoinHandle<()>) {
    let cache = SnapshotCache::with_stale_limit(db.pool(access_service::db::SCHEMA), stale_limit);
    let listener = tokio::spawn(cache.clone().listen(db.secret_url()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cache.is_listening() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener never connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (cache, listener)
}

#[tokio::test]
async fn a_change_rereads_only_the_part_it_touched() {
    let (db, sql) = acme().await;
    let (cache, listener) = listening(&db).await;
    let first = cache.get("acme").await.unwrap();
    assert_eq!(first.door_rules(&A).len(), 1);

    // A lock's status report: the doors are read again, nothing else.
    sql.batch_execute(&format!(
        "UPDATE doors SET status = 'LOCKED', status_time = now() WHERE id = '{A}'"
    ))
    .await
    .unwrap();
    let second = until(&cache, "the status", |s| s.doors[&A].status == "LOCKED").await;
    assert!(!Arc::ptr_eq(&first.doors, &second.doors));
    assert!(Arc::ptr_eq(&first.rules, &second.rules), "rules shared");
    assert!(Arc::ptr_eq(&first.users, &second.users), "users shared");
    assert!(Arc::ptr_eq(&first.memberships, &second.memberships));
    assert!(Arc::ptr_eq(&first.codes, &second.codes));

    // A rule switched off at door A: A's rules are read again, B's are shared.
    sql.batch_execute(&format!(
        "UPDATE rules SET active = FALSE WHERE id = '{RULE_A}'"
    ))
    .await
    .unwrap();
    let third = until(&cache, "the rule's edit", |s| s.door_rules(&A).is_empty()).await;
    assert!(Arc::ptr_eq(first.door_rules(&B), third.door_rules(&B)));
    assert!(Arc::ptr_eq(&second.doors, &third.doors), "doors shared");

    // A grant added to B's rule names B's door.
    sql.batch_execute(&format!(
        "INSERT INTO rule_users (rule_id, user_id, tenant_id) VALUES ('{RULE_B}', '{USER}', 'acme')"
    ))
    .await
    .unwrap();
    let fourth = until(&cache, "the grant", |s| {
        !Arc::ptr_eq(s.door_rules(&B), third.door_rules(&B))
    })
    .await;
    assert_eq!(fourth.door_rules(&B).len(), 1);
    assert!(Arc::ptr_eq(third.door_rules(&A), fourth.door_rules(&A)));

    // A rule deleted with its grants: its own door's rules are read again.
    sql.batch_execute(&format!("DELETE FROM rules WHERE id = '{RULE_B}'"))
        .await
        .unwrap();
    let deleted = until(&cache, "the deletion", |s| s.door_rules(&B).is_empty()).await;
    assert!(Arc::ptr_eq(fourth.door_rules(&A), deleted.door_rules(&A)));
    assert!(Arc::ptr_eq(&fourth.users, &deleted.users));

    // A user deleted with a grant at B: the users, memberships and codes are read
    // again, and B's rules, not A's.
    let rule_c = Uuid::from_u128(0x1c);
    sql.batch_execute(&format!(
        "INSERT INTO rules (id, tenant_id, door_id, name) VALUES ('{rule_c}', 'acme', '{B}', 'Ana at B again');
         INSERT INTO rule_users (rule_id, user_id, tenant_id) VALUES ('{rule_c}', '{USER}', 'acme');"
    ))
    .await
    .unwrap();
    let granted = until(&cache, "the new grant", |s| s.door_rules(&B).len() == 1).await;
    sql.batch_execute(&format!("DELETE FROM users WHERE id = '{USER}'"))
        .await
        .unwrap();
    let fifth = until(&cache, "the user's deletion", |s| {
        !s.users.contains_key(&USER)
    })
    .await;
    assert!(!Arc::ptr_eq(granted.door_rules(&B), fifth.door_rules(&B)));
    assert!(Arc::ptr_eq(granted.door_rules(&A), fifth.door_rules(&A)));
    assert!(Arc::ptr_eq(&granted.doors, &fifth.doors), "doors shared");

    // A notification in the shape of earlier releases, a bare tenant id, reads the
    // tenant whole.
    let loads = cache.loads();
    sql.batch_execute(&format!("SELECT pg_notify('{CHANNEL}', 'acme')"))
        .await
        .unwrap();
    let sixth = until(&cache, "the bare notification", |s| {
        !Arc::ptr_eq(&s.users, &fifth.users)
    })
    .await;
    assert!(!Arc::ptr_eq(&sixth.doors, &fifth.doors));
    assert!(!Arc::ptr_eq(&sixth.rules, &fifth.rules));
    assert_eq!(cache.loads(), loads + 1, "one read for the whole tenant");
    listener.abort();
}

#[tokio::test]
async fn a_rules_edit_rereads_that_rule_and_shares_the_rest_of_its_door() {
    let (db, sql) = acme().await;
    // Door A holds 50 more rules beside RULE_A, `extra(1)` to `extra(50)`.
    sql.batch_execute(&format!(
        "INSERT INTO rules (id, tenant_id, door_id, name, roles)
             SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(4096 + n), 12, '0'))::uuid,
                    'acme', '{A}', 'extra ' || n, ARRAY['role-' || n]
             FROM generate_series(1, 50) n"
    ))
    .await
    .unwrap();
    let (cache, listener) = listening(&db).await;
    let first = cache.get("acme").await.unwrap();
    assert_eq!(first.door_rules(&A).len(), 51);

    // Another replica renames RULE_A: A's index is rebuilt around the same rules.
    sql.batch_execute(&format!(
        "UPDATE rules SET name = 'staff at A, renamed', version = version + 1 WHERE id = '{RULE_A}'"
    ))
    .await
    .unwrap();
    let second = until(&cache, "the rename", |s| {
        s.door_rules(&A)
            .get(&RULE_A)
            .is_some_and(|r| r.view.name == "staff at A, renamed")
    })
    .await;
    assert_eq!(second.door_rules(&A).len(), 51);
    assert!(
        std::ptr::eq(kept(&first), kept(&second)),
        "the door's other rules are shared, not read again"
    );
    assert!(Arc::ptr_eq(first.door_rules(&B), second.door_rules(&B)));

    // Switched off, it leaves the index and is counted as inactive.
    sql.batch_execute(&format!(
        "UPDATE rules SET active = FALSE WHERE id = '{RULE_A}'"
    ))
    .await
    .unwrap();
    let third = until(&cache, "the switch", |s| s.door_rules(&A).len() == 50).await;
    assert_eq!(third.door_rules(&A).inactive(), 1);
    assert!(third.door_rules(&A).get(&RULE_A).is_none());

    // A grant to it while inactive and then its return: back with the grant.
    sql.batch_execute(&format!(
        "INSERT INTO rule_users (rule_id, user_id, tenant_id) VALUES ('{RULE_A}', '{USER}', 'acme');
         UPDATE rules SET active = TRUE WHERE id = '{RULE_A}'"
    ))
    .await
    .unwrap();
    let fourth = until(&cache, "the return", |s| s.door_rules(&A).len() == 51).await;
    assert_eq!(fourth.door_rules(&A).inactive(), 0);
    assert_eq!(
        fourth.door_rules(&A).get(&RULE_A).unwrap().view.user_ids,
        [USER]
    );
    assert!(std::ptr::eq(kept(&first), kept(&fourth)));

    // A rule new to door B and the deletion of one of A's: each door patched.
    let gone = extra(1);
    sql.batch_execute(&format!(
        "INSERT INTO rules (id, tenant_id, door_id, name) VALUES ('{}', 'acme', '{B}', 'new at B');
         DELETE FROM rules WHERE id = '{gone}'",
        Uuid::from_u128(0x1d)
    ))
    .await
    .unwrap();
    let fifth = until(&cache, "the new rule and the deletion", |s| {
        s.door_rules(&B).len() == 2 && s.door_rules(&A).len() == 50
    })
    .await;
    assert!(fifth.door_rules(&A).get(&gone).is_none());
    assert!(fifth.door_rules(&B).get(&RULE_B).is_some());
    assert!(std::ptr::eq(kept(&first), kept(&fifth)));
    assert_eq!(
        cache.loads(),
        5,
        "the tenant once, then one read per change"
    );
    listener.abort();
}

/// One of door A's extra rules, never changed, as `s` holds it.
fn kept(s: &TenantSnapshot) -> &IndexedRule {
    s.door_rules(&A).get(&extra(7)).unwrap()
}

/// The id of door A's `n`th extra rule, as the test inserts them.
fn extra(n: u128) -> Uuid {
    Uuid::from_u128(0x1000 + n)
}

#[tokio::test]
async fn a_change_during_a_read_is_reread_as_a_part_not_the_tenant_again() {
    let (db, sql) = acme().await;
    let (cache, listener) = listening(&db).await;
    // The first read of the tenant is held at its rules.
    let holder = hold(&db, "rules").await;
    let reading = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get("acme").await.unwrap() }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = sql
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND query LIKE '%FROM \"rules\"%'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the read never reached the rules"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A lock reports its status meanwhile, and the notification is applied.
    lock_reports_locked(&cache, &sql).await;
    holder.batch_execute("COMMIT").await.unwrap();
    let first = reading.await.unwrap();
    assert_eq!(first.doors[&A].status, "UNKNOWN", "read before the change");

    // The read was kept with the doors marked: they alone are read again.
    let second = until(&cache, "the status", |s| s.doors[&A].status == "LOCKED").await;
    assert!(
        Arc::ptr_eq(&first.rules, &second.rules),
        "the rules were not read again"
    );
    assert_eq!(cache.loads(), 2, "the tenant, then its doors");
    listener.abort();
}

/// Door A's lock reports it locked; returns once `cache` has applied the notification.
async fn lock_reports_locked(cache: &SnapshotCache, sql: &tokio_postgres::Client) {
    let applied = cache.notifications();
    sql.batch_execute(&format!(
        "UPDATE doors SET status = 'LOCKED', status_time = now() WHERE id = '{A}'"
    ))
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cache.notifications() == applied {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change was never notified"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Holds `table` locked until the returned client commits.
async fn hold(db: &TestDb, table: &str) -> tokio_postgres::Client {
    let holder = db.client().await;
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE access.{table} IN ACCESS EXCLUSIVE MODE"
        ))
        .await
        .unwrap();
    holder
}

#[tokio::test]
async fn decisions_go_on_with_the_last_snapshot_while_a_change_is_read_but_not_for_long() {
    let (db, sql) = acme().await;
    let limit = Duration::from_millis(800);
    let (cache, listener) = listening_with(&db, limit).await;
    let first = cache.get("acme").await.unwrap();

    // Rereading the doors will wait on their properties.
    let holder = hold(&db, "properties").await;
    // The change arrives between these two instants.
    let sent = std::time::Instant::now();
    lock_reports_locked(&cache, &sql).await;
    let arrived = std::time::Instant::now();
    // Within the limit, decisions are answered from the snapshot before the change
    // while the doors are read again behind them, however long that takes.
    for _ in 0..3 {
        let meanwhile = cache.get("acme").await.unwrap();
        assert!(
            sent.elapsed() < limit,
            "the machine was too slow to observe the limit"
        );
        assert!(Arc::ptr_eq(&meanwhile, &first));
    }
    // Past it, a decision waits for the read.
    tokio::time::sleep(limit.saturating_sub(arrived.elapsed())).await;
    let waited = tokio::time::timeout(Duration::from_millis(200), cache.get("acme")).await;
    assert!(
        waited.is_err(),
        "a decision past the limit was answered from the old snapshot"
    );
    let waiting = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get("acme").await.unwrap() }
    });
    holder.batch_execute("COMMIT").await.unwrap();
    let after = waiting.await.unwrap();
    assert_eq!(after.doors[&A].status, "LOCKED");
    assert!(
        Arc::ptr_eq(&after.rules, &first.rules),
        "only the doors were read"
    );
    assert_eq!(cache.loads(), 2, "the tenant, then its doors once");
    listener.abort();
}

#[tokio::test]
async fn with_no_stale_limit_the_first_decision_after_a_change_waits_for_it() {
    let (db, sql) = acme().await;
    let (cache, listener) = listening_with(&db, Duration::ZERO).await;
    let first = cache.get("acme").await.unwrap();
    lock_reports_locked(&cache, &sql).await;
    let next = cache.get("acme").await.unwrap();
    assert_eq!(next.doors[&A].status, "LOCKED");
    assert!(Arc::ptr_eq(&first.rules, &next.rules));
    listener.abort();
}

#[tokio::test]
async fn replicas_of_the_release_before_still_hear_each_change_as_a_tenant_id() {
    let (db, sql) = acme().await;
    let (listener, mut connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (heard, mut payloads) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
            if let tokio_postgres::AsyncMessage::Notification(note) = message {
                let _ = heard.send((note.channel().to_owned(), note.payload().to_owned()));
            }
        }
    });
    listener
        .batch_execute(&format!("LISTEN latchkey_access_changes; LISTEN {CHANNEL}"))
        .await
        .unwrap();
    sql.batch_execute(&format!(
        "UPDATE rules SET active = FALSE WHERE id = '{RULE_A}'"
    ))
    .await
    .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let next = tokio::time::timeout(Duration::from_secs(10), payloads.recv()).await;
        got.push(next.expect("a notification").expect("the listener is open"));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("latchkey_access_changes".to_owned(), "acme".to_owned()),
            (CHANNEL.to_owned(), format!("rules:{A}/{RULE_A}:acme")),
        ]
    );
    driver.abort();
}
