//! The audit log: tamper evidence, the service role's limits, purge checkpoints, stable
//! pages, CSV export, statistics and failure bursts.

#![allow(clippy::unwrap_used)]

mod common;

use access_service::audit::AuditEntry;
use access_service::audit::store::{self, BurstRule};
use access_service::audit::writer::{AuditWriter, WriterConfig};
use diesel_async::AsyncConnection;
use latchkey::pb::access::v1::audit_service_client::AuditServiceClient;
use latchkey::pb::access::v1::{
    ExportAccessLogsRequest, FindSuspiciousActivityRequest, GetAccessStatsRequest, LogFilter,
    PurgeAccessLogsRequest, QueryAccessLogsRequest, VerifyAuditChainRequest,
};
use latchkey::pb::timestamp;
use latchkey::testkit::{TestDb, authorized, token};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

async fn append_all(db: &TestDb, entries: Vec<AuditEntry>) {
    let pool = common::pool(db);
    let mut conn = pool.get().await.unwrap();
    for chunk in entries.chunks(5000) {
        let chunk = chunk.to_vec();
        conn.transaction(async |conn| store::append(conn, chunk, BurstRule::default()).await)
            .await
            .unwrap();
    }
}

fn entries(tenant: &str, n: usize) -> Vec<AuditEntry> {
    (0..n)
        .map(|i| {
            common::attempt(
                tenant,
                &format!("user-{}", i % 7),
                "10.0.0.1",
                &format!("door-{}", i % 3),
                i % 4 != 0,
            )
        })
        .collect()
}

async fn verify(
    client: &mut AuditServiceClient<tonic::transport::Channel>,
    admin: &str,
) -> (bool, i64, i64) {
    let answer = client
        .verify_audit_chain(authorized(VerifyAuditChainRequest::default(), admin))
        .await
        .unwrap()
        .into_inner();
    (
        answer.valid,
        answer.first_broken_sequence,
        answer.rows_checked,
    )
}

#[tokio::test]
async fn verification_finds_an_edited_a_deleted_and_two_swapped_rows() {
    let db = common::database().await;
    append_all(&db, entries("t1", 20)).await;
    append_all(&db, entries("t2", 5)).await;
    let server = common::start(common::config(db.url())).await;
    let mut client = AuditServiceClient::new(server.channel().await);
    let admin = token("t1", "adm", &["ADMIN"]);
    assert_eq!(verify(&mut client, &admin).await, (true, 0, 20));

    let sql = db.client().await;
    // An edit: a denied attempt rewritten as granted.
    sql.batch_execute(
        "UPDATE access.audit_log SET success = true WHERE tenant_id = 't1' AND sequence = 5",
    )
    .await
    .unwrap();
    assert_eq!(verify(&mut client, &admin).await.1, 5);
    sql.batch_execute(
        "UPDATE access.audit_log SET success = false WHERE tenant_id = 't1' AND sequence = 5",
    )
    .await
    .unwrap();
    assert_eq!(verify(&mut client, &admin).await, (true, 0, 20));

    // Two rows swapped, sequence numbers and all.
    sql.batch_execute(
        "UPDATE access.audit_log SET sequence = 1000 WHERE tenant_id = 't1' AND sequence = 8; \
         UPDATE access.audit_log SET sequence = 8 WHERE tenant_id = 't1' AND sequence = 9; \
         UPDATE access.audit_log SET sequence = 9 WHERE tenant_id = 't1' AND sequence = 1000",
    )
    .await
    .unwrap();
    assert_eq!(verify(&mut client, &admin).await.1, 8);
    sql.batch_execute(
        "UPDATE access.audit_log SET sequence = 1000 WHERE tenant_id = 't1' AND sequence = 8; \
         UPDATE access.audit_log SET sequence = 8 WHERE tenant_id = 't1' AND sequence = 9; \
         UPDATE access.audit_log SET sequence = 9 WHERE tenant_id = 't1' AND sequence = 1000",
    )
    .await
    .unwrap();
    assert_eq!(verify(&mut client, &admin).await, (true, 0, 20));

    // A deleted row in the middle, then the last row.
    sql.batch_execute("DELETE FROM access.audit_log WHERE tenant_id = 't1' AND sequence = 12")
        .await
        .unwrap();
    assert_eq!(verify(&mut client, &admin).await.1, 12);

    // The other tenant's chain is untouched and verifies on its own.
    let other = token("t2", "adm", &["ADMIN"]);
    assert_eq!(verify(&mut client, &other).await, (true, 0, 5));
}

#[tokio::test]
async fn a_removed_last_row_is_found_through_the_chain_head() {
    let db = common::database().await;
    append_all(&db, entries("t1", 6)).await;
    let server = common::start(common::config(db.url())).await;
    let mut client = AuditServiceClient::new(server.channel().await);
    let admin = token("t1", "adm", &["ADMIN"]);
    db.client()
        .await
        .batch_execute("DELETE FROM access.audit_log WHERE tenant_id = 't1' AND sequence = 6")
        .await
        .unwrap();
    let (valid, broken, checked) = verify(&mut client, &admin).await;
    assert!(!valid);
    assert_eq!((broken, checked), (6, 5));
}

#[tokio::test]
async fn the_service_role_cannot_update_or_delete_audit_rows() {
    let db = common::database().await;
    append_all(&db, entries("t1", 3)).await;
    let mut sql = db.client().await;
    let tx = sql.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL ROLE latchkey_access_app")
        .await
        .unwrap();
    let update = tx
        .batch_execute("UPDATE access.audit_log SET success = true")
        .await;
    let code = update.unwrap_err().as_db_error().map(|e| e.code().clone());
    assert_eq!(
        code,
        Some(tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    tx.rollback().await.unwrap();
    for statement in [
        "DELETE FROM access.audit_log",
        "TRUNCATE access.audit_log",
        "DELETE FROM access.audit_checkpoints",
    ] {
        let tx = sql.transaction().await.unwrap();
        tx.batch_execute("SET LOCAL ROLE latchkey_access_app")
            .await
            .unwrap();
        let refused = tx.batch_execute(statement).await;
        assert!(refused.is_err(), "{statement} must be refused");
        tx.rollback().await.unwrap();
    }
    let left: i64 = sql
        .query_one("SELECT count(*) FROM access.audit_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 3);
}

#[tokio::test]
async fn a_purge_records_a_checkpoint_and_what_remains_still_verifies() {
    let db = common::database().await;
    let now = chrono::Utc::now();
    let mut old = entries("t1", 10);
    for (i, entry) in old.iter_mut().enumerate() {
        entry.time = access_service::audit::chain::truncate_to_micros(
            now - chrono::Duration::days(400 - i as i64),
        );
    }
    append_all(&db, old).await;
    append_all(&db, entries("t1", 5)).await;
    let server = common::start(common::config(db.url())).await;
    let mut client = AuditServiceClient::new(server.channel().await);
    let admin = token("t1", "adm", &["ADMIN"]);

    let manager = token("t1", "mgr", &["MANAGER"]);
    let refused = client
        .purge_access_logs(authorized(
            PurgeAccessLogsRequest {
                before: Some(timestamp(now)),
                request_id: String::new(),
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let invalid = client
        .purge_access_logs(authorized(PurgeAccessLogsRequest::default(), &admin))
        .await
        .unwrap_err();
    assert_eq!(
        invalid
            .get_error_details()
            .bad_request()
            .unwrap()
            .field_violations[0]
            .field,
        "before"
    );

    let purged = client
        .purge_access_logs(authorized(
            PurgeAccessLogsRequest {
                before: Some(timestamp(now - chrono::Duration::days(365))),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(purged.purged, 10);
    assert_eq!(purged.checkpoint_sequence, 10);
    let (valid, broken, checked) = verify(&mut client, &admin).await;
    assert!(valid, "broken at {broken}");
    assert_eq!(checked, 6, "five attempts and the purge's own record");
    let logs = client
        .query_access_logs(authorized(
            QueryAccessLogsRequest {
                page_size: 1,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .logs;
    assert_eq!(
        logs[0].action,
        latchkey::pb::access::v1::AuditAction::LogsPurged as i32
    );
}

#[tokio::test]
async fn pages_stay_stable_while_rows_are_appended() {
    let db = common::database().await;
    append_all(&db, entries("t1", 25)).await;
    let server = common::start(common::config(db.url())).await;
    let mut client = AuditServiceClient::new(server.channel().await);
    let admin = token("t1", "adm", &["ADMIN"]);
    let (writer, workers) = AuditWriter::spawn(common::pool(&db), WriterConfig::default());

    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut appended = 0;
    loop {
        let page = client
            .query_access_logs(authorized(
                QueryAccessLogsRequest {
                    page_size: 10,
                    page_token: page_token.clone(),
                    filter: None,
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.logs.iter().map(|l| l.sequence));
        // Concurrent decisions land between page reads.
        let mut appends = Vec::new();
        for i in 0..20 {
            appends.push(writer.append(common::attempt(
                "t1",
                &format!("late-{i}"),
                "10.9.9.9",
                "door-x",
                true,
            )));
        }
        for row in futures_util::future::join_all(appends).await {
            assert!(row.unwrap().sequence > 25);
            appended += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(
        seen,
        (1..=25).rev().collect::<Vec<i64>>(),
        "every original row once, newest first"
    );
    assert_eq!(appended, 60);
    drop(writer);
    workers.join_all().await;
}

#[tokio::test]
async fn export_streams_100k_rows_as_csv_in_bounded_chunks() {
    let db = common::database().await;
    // Granted attempts: no burst detection, so the setup stays quick.
    let many: Vec<AuditEntry> = (0..100_000)
        .map(|i| {
            common::attempt(
                "t1",
                &format!("user-{}", i % 97),
                "10.0.0.1",
                "door-1",
                true,
            )
        })
        .collect();
    append_all(&db, many).await;
    append_all(&db, entries("t2", 10)).await;
    let server = common::start(common::config(db.url())).await;
    let mut client = AuditServiceClient::new(server.channel().await);
    let admin = token("t1", "adm", &["ADMIN"]);

    let manager = token("t1", "mgr", &["MANAGER"]);
    let refused = client
        .export_access_logs(authorized(ExportAccessLogsRequest::default(), &manager))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let mut stream = client
        .export_access_logs(authorized(ExportAccessLogsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    let mut csv_bytes = Vec::new();
    let mut chunks = 0;
    let mut largest = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        largest = largest.max(chunk.data.len());
        chunks += 1;
        csv_bytes.extend_from_slice(&chunk.data);
    }
    assert!(
        chunks > 10,
        "streamed in pieces, not one blob ({chunks} chunks)"
    );
    assert!(
        largest <= 256 * 1024 + 4096,
        "chunks stay bounded ({largest} bytes)"
    );
    let mut reader = csv::Reader::from_reader(csv_bytes.as_slice());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "sequence");
    let mut count = 0;
    let mut last = 0;
    for record in reader.records() {
        let record = record.unwrap();
        let sequence: i64 = record[0].parse().unwrap();
        assert_eq!(sequence, last + 1);
        assert_eq!(&record[26], "t1");
        last = sequence;
        count += 1;
    }
    assert_eq!(count, 100_000);

    let filtered = client
        .export_access_logs(authorized(
            ExportAccessLogsRequest {
                filter: Some(LogFilter {
                    success: "maybe".into(),
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(filtered.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn stats_and_failure_bursts_with_live_flagging() {
    let db = common::database().await;
    let (writer, workers) = AuditWriter::spawn(common::pool(&db), WriterConfig::default());
    let mut flags = Vec::new();
    for i in 0..6 {
        let row = writer
            .append(common::attempt(
                "t1",
                "mallory",
                &format!("192.0.2.{i}"),
                "front",
                false,
            ))
            .await
            .unwrap();
        flags.push(row.flagged);
    }
    // From a single address, against two doors.
    for i in 0..5 {
        writer
            .append(common::attempt(
                "t1",
                &format!("guess-{i}"),
                "198.51.100.7",
                if i % 2 == 0 { "front" } else { "back" },
                false,
            ))
            .await
            .unwrap();
    }
    writer
        .append(common::attempt("t1", "alice", "10.0.0.2", "front", true))
        .await
        .unwrap();
    drop(writer);
    workers.join_all().await;
    assert_eq!(
        flags,
        [false, false, false, false, true, true],
        "the fifth failure in the window completes the burst"
    );

    let server = common::start(common::config(db.url())).await;
    let mut client = AuditServiceClient::new(server.channel().await);
    let admin = token("t1", "adm", &["ADMIN"]);
    let stats = client
        .get_access_stats(authorized(
            GetAccessStatsRequest::default(),
            &token("t1", "mgr", &["MANAGER"]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((stats.total, stats.successes, stats.failures), (12, 1, 11));
    assert_eq!(stats.unique_users, 7);
    assert_eq!(stats.top_doors[0].key, "front");
    assert_eq!(stats.top_doors[0].count, 10);

    let burst = client
        .find_suspicious_activity(authorized(
            FindSuspiciousActivityRequest {
                window_minutes: 10,
                threshold: 5,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .actors;
    let found: Vec<_> = burst
        .iter()
        .map(|a| (a.kind.as_str(), a.value.as_str(), a.failed_attempts))
        .collect();
    assert_eq!(found, [("user", "mallory", 6), ("ip", "198.51.100.7", 5)]);
    assert_eq!(burst[1].door_ids, ["back", "front"]);

    let invalid = client
        .find_suspicious_activity(authorized(
            FindSuspiciousActivityRequest {
                window_minutes: 0,
                threshold: 1,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    let fields: Vec<_> = invalid
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, ["window_minutes", "threshold"]);
}

#[tokio::test]
async fn the_retention_job_purges_old_rows_and_the_chain_still_verifies() {
    let db = common::database().await;
    let now = chrono::Utc::now();
    let mut old = entries("t1", 4);
    for entry in &mut old {
        entry.time =
            access_service::audit::chain::truncate_to_micros(now - chrono::Duration::days(500));
    }
    append_all(&db, old).await;
    append_all(&db, entries("t1", 3)).await;
    let mut config = common::config(db.url());
    config.audit_retention_days = 365;
    let server = common::start(config).await;
    let mut client = AuditServiceClient::new(server.channel().await);
    let admin = token("t1", "adm", &["ADMIN"]);
    let mut remaining = Vec::new();
    for _ in 0..250 {
        remaining = client
            .query_access_logs(authorized(
                QueryAccessLogsRequest {
                    page_size: 100,
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner()
            .logs;
        if remaining
            .iter()
            .any(|l| l.action == latchkey::pb::access::v1::AuditAction::LogsPurged as i32)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let sequences: Vec<i64> = remaining.iter().map(|l| l.sequence).collect();
    assert_eq!(
        sequences,
        [8, 7, 6, 5],
        "the purge record and the three recent rows"
    );
    let (valid, _, checked) = verify(&mut client, &admin).await;
    assert!(valid);
    assert_eq!(checked, 4);
}

#[tokio::test]
async fn verification_while_rows_are_appended_finds_the_chain_intact() {
    // Rows keep committing while the chain is verified: those beyond the head that
    // verification started from are not taken for rows the head says are missing.
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut client = AuditServiceClient::new(server.channel().await);
    let admin = token("t1", "adm", &["ADMIN"]);
    let (writer, workers) = AuditWriter::spawn(common::pool(&db), WriterConfig::default());
    let appending = tokio::spawn(async move {
        for chunk in entries("t1", 3000).chunks(50) {
            let appends = chunk.iter().cloned().map(|entry| writer.append(entry));
            for row in futures_util::future::join_all(appends).await {
                row.unwrap();
            }
        }
        drop(writer);
        workers.join_all().await;
    });
    let mut verifications = Vec::new();
    while !appending.is_finished() || verifications.len() < 3 {
        verifications.push(verify(&mut client, &admin).await);
    }
    appending.await.unwrap();
    assert!(
        verifications
            .iter()
            .all(|(valid, broken, _)| *valid && *broken == 0),
        "{verifications:?}"
    );
    assert_eq!(verify(&mut client, &admin).await, (true, 0, 3000));
}

#[tokio::test]
async fn two_writers_and_administrative_changes_share_one_chain() {
    // Two replicas' writers and administrative changes append to one tenant at once:
    // each writer's idea of the head goes stale whenever another appends, and its run
    // must then be chained again, never written twice or out of order.
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut client = AuditServiceClient::new(server.channel().await);
    let admin = token("t1", "adm", &["ADMIN"]);
    let (first, first_workers) = AuditWriter::spawn(common::pool(&db), WriterConfig::default());
    let (second, second_workers) = AuditWriter::spawn(common::pool(&db), WriterConfig::default());

    let mut appends = Vec::new();
    for i in 0..300 {
        for (writer, replica) in [(&first, "a"), (&second, "b")] {
            let entry = common::attempt(
                "t1",
                &format!("{replica}-user-{}", i % 9),
                "10.0.0.2",
                "door-1",
                i % 10 != 0,
            );
            appends.push(writer.append(entry));
        }
    }
    let admin_changes = async {
        let pool = common::pool(&db);
        let mut conn = pool.get().await.unwrap();
        let mut sequences = Vec::new();
        for i in 0..20 {
            let entry = common::attempt("t1", &format!("admin-{i}"), "", "", true);
            let rows = conn
                .transaction(async |conn| {
                    store::append(conn, vec![entry], BurstRule::default()).await
                })
                .await
                .unwrap();
            sequences.push(rows[0].sequence);
        }
        sequences
    };
    let (rows, mut sequences) =
        tokio::join!(futures_util::future::join_all(appends), admin_changes);
    for row in rows {
        sequences.push(row.unwrap().sequence);
    }
    sequences.sort_unstable();
    assert_eq!(
        sequences,
        (1..=620).collect::<Vec<i64>>(),
        "every row has its own place in the chain"
    );
    assert_eq!(verify(&mut client, &admin).await, (true, 0, 620));
    drop((first, second));
    first_workers.join_all().await;
    second_workers.join_all().await;
}

#[tokio::test]
async fn bursts_count_committed_failures_in_the_window_and_earlier_ones_in_the_batch() {
    let db = common::database().await;
    let now = chrono::Utc::now();
    let failure = |user: &str, ip: &str, minutes_ago: i64| {
        let mut entry = common::attempt("t1", user, ip, "front", false);
        entry.time = access_service::audit::chain::truncate_to_micros(
            now - chrono::Duration::minutes(minutes_ago),
        );
        entry
    };
    // Committed before: three of eve's failures long ago, three within the window.
    let mut before: Vec<AuditEntry> = (0..3).map(|i| failure("eve", "", 30 + i)).collect();
    before.extend((0..3).map(|i| failure("eve", "", 3 - i)));
    // Twenty from one address within the window: far more than the threshold.
    before.extend((0..20).map(|i| failure(&format!("guess-{i}"), "203.0.113.9", 2)));
    append_all(&db, before).await;

    // One batch: eve's fourth in the window is not a burst, her fifth is; the address is
    // past the threshold already; an unseen user and address are not.
    let batch = vec![
        failure("eve", "", 0),
        failure("bob", "198.51.100.1", 0),
        failure("eve", "", 0),
        failure("carol", "203.0.113.9", 0),
    ];
    let pool = common::pool(&db);
    let mut conn = pool.get().await.unwrap();
    let rows = conn
        .transaction(async |conn| store::append(conn, batch, BurstRule::default()).await)
        .await
        .unwrap();
    let flags: Vec<bool> = rows.iter().map(|r| r.flagged).collect();
    assert_eq!(flags, [false, false, true, true]);
}

#[tokio::test]
async fn a_tenant_is_answered_while_another_tenants_run_cannot_commit() {
    // One worker serves both tenants. While t1's run waits on its chain head, held by
    // another transaction, t2's decisions are still committed and answered.
    let db = common::database().await;
    let config = WriterConfig {
        workers: 1,
        ..WriterConfig::default()
    };
    let (writer, workers) = AuditWriter::spawn(common::pool(&db), config);
    writer
        .append(common::attempt("t1", "u1", "10.0.0.1", "door-1", true))
        .await
        .unwrap();

    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; SELECT 1 FROM access.audit_heads WHERE tenant_id = 't1' FOR UPDATE")
        .await
        .unwrap();
    let blocked = tokio::spawn({
        let writer = writer.clone();
        async move {
            writer
                .append(common::attempt("t1", "u1", "10.0.0.1", "door-1", true))
                .await
        }
    });
    common::wait_until_blocked(&db, "access-service-test").await;

    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        futures_util::future::join_all(
            (0..20).map(|i| writer.append(common::attempt("t2", "u2", "", &format!("d{i}"), true))),
        ),
    )
    .await
    .expect("t2's decisions are answered while t1's run waits");
    let mut sequences: Vec<i64> = answered
        .into_iter()
        .map(|row| row.unwrap().sequence)
        .collect();
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=20).collect::<Vec<i64>>());
    assert!(!blocked.is_finished(), "t1's run still waits on its head");

    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(blocked.await.unwrap().unwrap().sequence, 2);
    drop(writer);
    workers.join_all().await;
}

#[tokio::test]
async fn a_row_the_database_refuses_fails_only_its_own_caller() {
    // Entries reach the writer only after the edge has refused NUL characters; this one
    // goes around it, as any row the database might refuse would. Its run shares a
    // commit with other callers' decisions, granted (sent without the head's lock) and
    // denied (under it).
    let db = common::database().await;
    let (writer, workers) = AuditWriter::spawn(common::pool(&db), WriterConfig::default());
    writer
        .append(common::attempt("t1", "first", "10.0.0.1", "door-x", true))
        .await
        .unwrap();
    let mut stored = 1;
    for granted in [true, false] {
        let appends = (0..48).map(|i| {
            let user = if i == 17 {
                "bad\0user".to_owned()
            } else {
                format!("user-{i}")
            };
            writer.append(common::attempt("t1", &user, "10.0.0.2", "door-x", granted))
        });
        let results = futures_util::future::join_all(appends).await;
        for (i, result) in results.into_iter().enumerate() {
            if i == 17 {
                assert!(result.is_err(), "the refused row was answered as stored");
            } else {
                let row = result.unwrap_or_else(|e| panic!("append {i} (granted {granted}): {e}"));
                assert_eq!(row.entry.user_id, format!("user-{i}"));
                stored += 1;
            }
        }
    }
    drop(writer);
    workers.join_all().await;

    let count: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM access.audit_log WHERE tenant_id = 't1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, stored);
    let server = common::start(common::config(db.url())).await;
    let mut client = AuditServiceClient::new(server.channel().await);
    let admin = token("t1", "adm", &["ADMIN"]);
    assert_eq!(verify(&mut client, &admin).await, (true, 0, stored));
}
