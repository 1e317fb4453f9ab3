//! PostgreSQL going away under load: a fast shutdown (`pg_ctl stop -m fast`) in the
//! middle of decisions and directory reads is `UNAVAILABLE` to every caller, never
//! `INTERNAL`; once it is started again the same service answers without a restart;
//! and every decision that was answered is in the audit log, whose chain verifies.
//! The database is a cluster of the test's own, never the shared test server.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use latchkey::error::ApiError;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_service_client::AccessServiceClient;
use latchkey::pb::access::v1::audit_service_client::AuditServiceClient;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::testkit::{PostgresCluster, authorized, token};
use secrecy::SecretString;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

const TENANT: &str = "outage";

/// Where the database was when a call was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Up = 0,
    /// `pg_ctl stop -m fast` has been called; it may still be shutting down.
    Stopping = 1,
    /// Stopped: nothing listens.
    Down = 2,
    /// Started again.
    Restarted = 3,
}

#[derive(Default)]
struct Phases(std::sync::atomic::AtomicU8);

impl Phases {
    fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::SeqCst);
    }

    fn get(&self) -> Phase {
        match self.0.load(Ordering::SeqCst) {
            0 => Phase::Up,
            1 => Phase::Stopping,
            2 => Phase::Down,
            _ => Phase::Restarted,
        }
    }
}

/// One call's outcome.
#[derive(Debug, Clone)]
struct Outcome {
    method: &'static str,
    /// The phase when the call was made.
    phase: Phase,
    started: Instant,
    result: Result<Answered, (Code, String, String)>,
}

#[derive(Debug, Clone)]
enum Answered {
    /// A decision, with its request id, its audit sequence and whether it granted.
    Decision(String, i64, bool),
    Read,
}

fn failure(status: &tonic::Status) -> (Code, String, String) {
    let reason = status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default();
    (status.code(), reason, status.message().to_owned())
}

struct Load {
    outcomes: Mutex<Vec<Outcome>>,
    decisions: AtomicUsize,
    failures_while_down: AtomicUsize,
    answered_after_restart: AtomicUsize,
    stop: AtomicBool,
    phases: Phases,
}

impl Load {
    async fn record(&self, outcome: Outcome) {
        match (&outcome.result, outcome.phase) {
            (Ok(Answered::Decision(..)), phase) => {
                self.decisions.fetch_add(1, Ordering::SeqCst);
                if phase == Phase::Restarted {
                    self.answered_after_restart.fetch_add(1, Ordering::SeqCst);
                }
            }
            (Err(_), Phase::Down) => {
                self.failures_while_down.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        self.outcomes.lock().await.push(outcome);
    }
}

/// Waits for `done` to hold, polling, failing after `limit`.
async fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_is_unavailable_then_recovers() {
    let cluster = PostgresCluster::start().await;
    cluster
        .client("postgres")
        .await
        .batch_execute("CREATE DATABASE latchkey")
        .await
        .unwrap();
    let url = cluster.url("latchkey");
    latchkey::db::migrate(
        &SecretString::from(url.clone()),
        access_service::db::SCHEMA,
        access_service::db::MIGRATIONS,
    )
    .await
    .unwrap();
    let mut config = common::config(&url);
    config.follow_device_events = false;
    let server = common::start(config).await;
    let channel = server.channel().await;
    let admin = token(TENANT, "admin", &["ADMIN"]);

    let mut directory = DirectoryServiceClient::new(channel.clone());
    let property = common::property(&mut directory, &admin, "Depot", "Europe/Madrid").await;
    let door = common::door(
        &mut directory,
        &admin,
        pb::Door {
            r#type: pb::DoorType::Room as i32,
            ..common::door_spec(&property.id, "Store room")
        },
    )
    .await;
    let user = common::user(&mut directory, &admin, "Courier", &["staff"]).await;
    common::grant(
        &mut common::rules(&server).await,
        &admin,
        &door.id,
        &user.id,
        "Always",
    )
    .await;
    let health = HealthClient::new(channel.clone());
    let serving = || {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest::default())
                .await
                .is_ok_and(|answer| answer.into_inner().status == ServingStatus::Serving as i32)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !serving().await {
        assert!(Instant::now() < deadline, "access-service never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let load = Arc::new(Load {
        outcomes: Mutex::new(Vec::new()),
        decisions: AtomicUsize::new(0),
        failures_while_down: AtomicUsize::new(0),
        answered_after_restart: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        phases: Phases::default(),
    });
    let mut workers = Vec::new();
    for worker in 0..6 {
        let (load, admin, door, user) = (
            load.clone(),
            admin.clone(),
            door.id.clone(),
            user.id.clone(),
        );
        let mut access = AccessServiceClient::new(channel.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !load.stop.load(Ordering::SeqCst) {
                n += 1;
                let request_id = format!("w{worker}-{n}");
                let (phase, started) = (load.phases.get(), Instant::now());
                let request = pb::CheckAccessRequest {
                    door_id: door.clone(),
                    user_id: user.clone(),
                    method: pb::AccessMethod::Card as i32,
                    request_id: request_id.clone(),
                    ..Default::default()
                };
                let result = match access.check_access(authorized(request, &admin)).await {
                    Ok(answer) => {
                        let answer = answer.into_inner();
                        let granted = answer.decision.as_ref().is_some_and(|d| d.granted);
                        Ok(Answered::Decision(
                            request_id,
                            answer.audit_sequence,
                            granted,
                        ))
                    }
                    Err(status) => Err(failure(&status)),
                };
                let failed = result.is_err();
                load.record(Outcome {
                    method: "CheckAccess",
                    phase,
                    started,
                    result,
                })
                .await;
                if failed {
                    // Pacing, so that a refused database does not turn into a busy loop.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    for reader in 0..2 {
        let (load, admin, door) = (load.clone(), admin.clone(), door.id.clone());
        let mut directory = DirectoryServiceClient::new(channel.clone());
        let mut audit = AuditServiceClient::new(channel.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0_usize;
            while !load.stop.load(Ordering::SeqCst) {
                n += 1;
                let (phase, started) = (load.phases.get(), Instant::now());
                let (method, result) = match (n + reader) % 3 {
                    0 => (
                        "ListDoors",
                        directory
                            .list_doors(authorized(pb::ListDoorsRequest::default(), &admin))
                            .await
                            .map(|_| Answered::Read),
                    ),
                    1 => (
                        "GetDoor",
                        directory
                            .get_door(authorized(pb::GetDoorRequest { id: door.clone() }, &admin))
                            .await
                            .map(|_| Answered::Read),
                    ),
                    _ => (
                        "QueryAccessLogs",
                        audit
                            .query_access_logs(authorized(
                                pb::QueryAccessLogsRequest {
                                    page_size: 20,
                                    ..Default::default()
                                },
                                &admin,
                            ))
                            .await
                            .map(|_| Answered::Read),
                    ),
                };
                let result = result.map_err(|status| failure(&status));
                let failed = result.is_err();
                load.record(Outcome {
                    method,
                    phase,
                    started,
                    result,
                })
                .await;
                if failed {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }

    // Mid-load: after a few hundred decisions.
    wait_until("decisions before the stop", Duration::from_secs(60), || {
        load.decisions.load(Ordering::SeqCst) >= 300
    })
    .await;
    load.phases.set(Phase::Stopping);
    cluster.stop("fast").await;
    load.phases.set(Phase::Down);
    wait_until("calls refused while down", Duration::from_secs(60), || {
        load.failures_while_down.load(Ordering::SeqCst) >= 100
    })
    .await;
    let restarted = Instant::now();
    cluster.start_again().await;
    load.phases.set(Phase::Restarted);
    wait_until(
        "decisions answered after the restart",
        Duration::from_secs(60),
        || load.answered_after_restart.load(Ordering::SeqCst) >= 200,
    )
    .await;
    load.stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }

    let outcomes = load.outcomes.lock().await.clone();
    let mut answered = Vec::new();
    let mut unavailable: std::collections::BTreeMap<(Phase, &str, String), usize> =
        Default::default();
    let mut wrong = Vec::new();
    let mut first_after_restart: std::collections::BTreeMap<&str, Duration> = Default::default();
    for outcome in &outcomes {
        match &outcome.result {
            Ok(answer) => {
                if let Answered::Decision(request_id, sequence, granted) = answer {
                    answered.push((request_id.clone(), *sequence));
                    if !granted {
                        wrong.push(format!(
                            "CheckAccess {request_id} while {:?}: denied",
                            outcome.phase
                        ));
                    }
                }
                if outcome.phase == Phase::Restarted {
                    let after = outcome.started.saturating_duration_since(restarted);
                    let first = first_after_restart.entry(outcome.method).or_insert(after);
                    *first = (*first).min(after);
                }
            }
            Err((Code::Unavailable, reason, _)) => {
                *unavailable
                    .entry((outcome.phase, outcome.method, reason.clone()))
                    .or_default() += 1;
            }
            Err((code, reason, message)) => wrong.push(format!(
                "{} while {:?}: {code:?} {reason} {message:?}",
                outcome.method, outcome.phase
            )),
        }
    }
    eprintln!(
        "database outage: {} calls, {} decisions answered, {} UNAVAILABLE; recovery (from \
         pg_ctl start to the first answer, by method): {first_after_restart:?}",
        outcomes.len(),
        answered.len(),
        unavailable.values().sum::<usize>()
    );
    for ((phase, method, reason), count) in &unavailable {
        eprintln!("  UNAVAILABLE {method} while {phase:?} ({reason}): {count}");
    }
    assert!(
        wrong.is_empty(),
        "{} failures were not UNAVAILABLE:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        unavailable
            .keys()
            .any(|(phase, _, _)| *phase == Phase::Down),
        "no call was refused while the database was down"
    );
    assert!(
        answered.len() >= 500,
        "only {} decisions were answered",
        answered.len()
    );
    for method in ["CheckAccess", "ListDoors", "GetDoor", "QueryAccessLogs"] {
        assert!(
            first_after_restart.contains_key(method),
            "{method} was never answered after the restart"
        );
    }

    // No answer without a record: every answered decision is in the log under the
    // sequence it was answered with, and the chain verifies.
    let sql = cluster.client("latchkey").await;
    let sequences: Vec<i64> = answered.iter().map(|(_, sequence)| *sequence).collect();
    let stored: std::collections::HashMap<i64, String> = sql
        .query(
            "SELECT sequence, request_id FROM access.audit_log \
             WHERE tenant_id = $1 AND sequence = ANY($2)",
            &[&TENANT, &sequences],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let missing: Vec<_> = answered
        .iter()
        .filter(|(request_id, sequence)| stored.get(sequence) != Some(request_id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered decisions are not in the audit log: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(20)]
    );
    let verified = AuditServiceClient::new(channel)
        .verify_audit_chain(authorized(pb::VerifyAuditChainRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(verified.valid, "{verified:?}");
    assert!(verified.rows_checked >= i64::try_from(answered.len()).unwrap());
    assert!(serving().await, "health is not SERVING after the restart");
}

/// What a session PostgreSQL ends looks like through diesel-async, classed by the one
/// mapping: the query it was running, and the next one on the same connection.
#[tokio::test]
async fn a_terminated_session_is_unavailable() {
    use diesel_async::RunQueryDsl;
    let db = common::database().await;
    let pool = db.pool(access_service::db::SCHEMA);
    let mut conn = pool.get().await.unwrap();
    let pid: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "pg_backend_pid()",
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    let observer = db.client().await;
    let running = tokio::spawn(async move {
        let error = diesel::sql_query("SELECT pg_sleep(30)")
            .execute(&mut conn)
            .await
            .unwrap_err();
        let next = diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .unwrap_err();
        (error, next)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sleeping: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if sleeping == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the query never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    observer
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let (during, after) = running.await.unwrap();
    for (when, error) in [("during the query", during), ("on the next query", after)] {
        let described = format!("{error:?}");
        let status = ApiError::from(error).into_status("test");
        assert_eq!(status.code(), Code::Unavailable, "{when}: {described}");
        assert_eq!(
            status.get_error_details().error_info().unwrap().reason,
            "DATABASE_UNAVAILABLE",
            "{when}: {described}"
        );
    }
}
