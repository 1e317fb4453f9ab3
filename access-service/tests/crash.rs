//! Killing access-service (SIGKILL) in the middle of a load of decisions loses none that
//! was answered: after a restart every acknowledged decision is in the audit log, under
//! the sequence it was answered with, and the chain verifies.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_service_client::AccessServiceClient;
use latchkey::pb::access::v1::audit_service_client::AuditServiceClient;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::pb::access::v1::rule_service_client::RuleServiceClient;
use latchkey::testkit::{TEST_JWT_SECRET, authorized, token};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, Notify};

fn spawn(database_url: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_access-service"))
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("GRPC_ADDR", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", TEST_JWT_SECRET)
        .env("LOCK_GATEWAY_URL", "http://127.0.0.1:9")
        .env("AUDIT_RETENTION_DAYS", "0")
        .env(
            "ACCESS_CODE_KEY",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
        )
        .env("FOLLOW_DEVICE_EVENTS", "false")
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_loses_no_answered_decision() {
    let db = common::database().await;
    let port = common::free_port();
    let mut child = spawn(db.url(), port);
    let channel = common::connect(port).await;
    let admin = token("t1", "admin", &["ADMIN"]);

    let mut directory = DirectoryServiceClient::new(channel.clone());
    let property = directory
        .create_property(authorized(
            pb::CreatePropertyRequest {
                property: Some(pb::Property {
                    name: "Office".into(),
                    time_zone: "UTC".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let door = directory
        .create_door(authorized(
            pb::CreateDoorRequest {
                door: Some(pb::Door {
                    property_id: property.id,
                    name: "Main".into(),
                    r#type: pb::DoorType::Room as i32,
                    active: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let user = directory
        .create_user(authorized(
            pb::CreateUserRequest {
                user: Some(pb::User {
                    name: "Worker".into(),
                    active: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    common::grant(
        &mut RuleServiceClient::new(channel.clone()),
        &admin,
        &door.id,
        &user.id,
        "Always",
    )
    .await;

    let acknowledged = Arc::new(Mutex::new(Vec::<(String, i64)>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..16 {
        let mut client = AccessServiceClient::new(channel.clone());
        let (acknowledged, count, enough, stop) = (
            acknowledged.clone(),
            count.clone(),
            enough.clone(),
            stop.clone(),
        );
        let (door, user, admin) = (door.id.clone(), user.id.clone(), admin.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let request_id = format!("w{worker}-{n}");
                let request = pb::CheckAccessRequest {
                    door_id: door.clone(),
                    user_id: user.clone(),
                    method: pb::AccessMethod::Card as i32,
                    client_ip: String::new(),
                    request_id: request_id.clone(),
                    code: String::new(),
                };
                match client.check_access(authorized(request, &admin)).await {
                    Ok(answer) => {
                        acknowledged
                            .lock()
                            .await
                            .push((request_id, answer.into_inner().audit_sequence));
                        if count.fetch_add(1, Ordering::SeqCst) + 1 == 400 {
                            enough.notify_one();
                        }
                    }
                    // The process is gone: nothing more will be answered.
                    Err(_) => break,
                }
            }
        }));
    }
    enough.notified().await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let acknowledged = acknowledged.lock().await.clone();
    assert!(acknowledged.len() >= 400);

    let _restarted = spawn(db.url(), port);
    let channel = common::connect(port).await;
    let sql = db.client().await;
    for (request_id, sequence) in &acknowledged {
        let stored: String = sql
            .query_one("SELECT request_id FROM access.audit_log WHERE tenant_id = 't1' AND sequence = $1", &[sequence])
            .await
            .unwrap_or_else(|e| panic!("decision {request_id} (sequence {sequence}) was answered but is not in the log: {e}"))
            .get(0);
        assert_eq!(&stored, request_id);
    }
    let verified = AuditServiceClient::new(channel)
        .verify_audit_chain(authorized(pb::VerifyAuditChainRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(verified.valid, "{}", verified.detail);
    assert!(verified.rows_checked >= i64::try_from(acknowledged.len()).unwrap());
}
