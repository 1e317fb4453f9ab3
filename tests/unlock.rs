//! Remote unlock end to end: access-service decides and records, lock-gateway opens the
//! simulated TTLock lock with the caller's request id, and a retried call never opens
//! the door twice; an ambiguous answer is reported unconfirmed and never retried.

#![allow(clippy::unwrap_used)]

mod common;

use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_service_client::AccessServiceClient;
use latchkey::pb::access::v1::audit_service_client::AuditServiceClient;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::pb::access::v1::rule_service_client::RuleServiceClient;
use latchkey::pb::gateway::v1::lock_gateway_client::LockGatewayClient;
use latchkey::pb::gateway::v1::{ListAccountsRequest, RegisterAccountRequest};
use latchkey::testkit::{authorized, token};
use lock_gateway::sim::faults::InjectedFailure;
use lock_gateway::sim::{SimConfig, Simulator};
use tonic::Code;
use tonic_types::StatusExt;

const FRONT_DOOR: i64 = 7_252_408;

#[tokio::test]
async fn unlock_reaches_the_simulated_lock_once_per_request_id() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let pair = common::start().await;
    let admin = token("acme", "admin", &["ADMIN"]);
    let service = token("acme", "access-service", &["SERVICE"]);

    // The account is checked by logging in, and its secrets are stored sealed.
    let mut gateway = LockGatewayClient::new(pair.gateway.channel().await);
    let register = |password: &str| RegisterAccountRequest {
        name: "Front desk".into(),
        base_url: sim.base_url(),
        client_id: "sim-client-0001".into(),
        client_secret: "sim-secret-0001".into(),
        username: "sim_frontdesk".into(),
        password: password.into(),
        request_id: String::new(),
    };
    let refused = gateway
        .register_account(authorized(register("wrong"), &service))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.get_error_details().error_info().unwrap().reason,
        "TTLOCK_LOGIN_FAILED"
    );
    let account = gateway
        .register_account(authorized(register("correct horse"), &service))
        .await
        .unwrap()
        .into_inner();
    let stored = pair.db.client().await.query_one(
        "SELECT encode(client_secret_enc, 'escape') || encode(password_md5_enc, 'escape') FROM gateway.ttlock_accounts", &[],
    ).await.unwrap().get::<_, String>(0);
    assert!(
        !stored.contains("sim-secret-0001")
            && !stored.contains(&lock_gateway::ttlock::md5_hex("correct horse"))
    );
    let other_tenant = gateway
        .list_accounts(authorized(
            ListAccountsRequest {},
            &token("other", "access-service", &["SERVICE"]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(other_tenant.accounts.is_empty());

    // A door bound to the simulated front door, and a guest allowed through it.
    let channel = pair.access.channel().await;
    let mut directory = DirectoryServiceClient::new(channel.clone());
    let property = directory
        .create_property(authorized(
            pb::CreatePropertyRequest {
                property: Some(pb::Property {
                    name: "Villa".into(),
                    time_zone: "Europe/Madrid".into(),
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
                    name: "Front door".into(),
                    r#type: pb::DoorType::Unit as i32,
                    active: true,
                    lock: Some(pb::LockBinding {
                        account_id: account.id.clone(),
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
        .into_inner();
    let guest = directory
        .create_user(authorized(
            pb::CreateUserRequest {
                user: Some(pb::User {
                    name: "Guest".into(),
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
    RuleServiceClient::new(channel.clone())
        .create_rule(authorized(
            pb::CreateRuleRequest {
                rule: Some(pb::Rule {
                    door_id: door.id.clone(),
                    name: "Stay".into(),
                    user_ids: vec![guest.id.clone()],
                    active: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();

    let mut access = AccessServiceClient::new(channel.clone());
    let unlock = |request_id: &str| pb::UnlockDoorRequest {
        door_id: door.id.clone(),
        user_id: guest.id.clone(),
        client_ip: String::new(),
        request_id: request_id.into(),
    };
    let before = sim.unlock_count(FRONT_DOOR);
    let first = access
        .unlock_door(authorized(unlock("open-1"), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.outcome,
        pb::UnlockOutcome::Unlocked as i32,
        "{}",
        first.outcome_detail
    );
    for _ in 0..2 {
        let again = access
            .unlock_door(authorized(unlock("open-1"), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again, first, "a repeat answers the first call's result");
    }
    // The same id for another request is refused, and sends nothing.
    let reused = access
        .unlock_door(authorized(
            pb::UnlockDoorRequest {
                client_ip: "10.9.9.9".into(),
                ..unlock("open-1")
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::FailedPrecondition);
    assert_eq!(
        reused.get_error_details().error_info().unwrap().reason,
        "REQUEST_ID_REUSED"
    );
    assert_eq!(
        sim.unlock_count(FRONT_DOOR),
        before + 1,
        "three calls, one request id, one unlock"
    );

    // errcode 1 without the action: reported unconfirmed, and not sent again.
    sim.update_faults(|faults| {
        faults.inject.push(InjectedFailure {
            path: Some("/v3/lock/unlock".into()),
            ..InjectedFailure::errcode(1)
        })
    });
    let ambiguous = access
        .unlock_door(authorized(unlock("open-2"), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ambiguous.outcome,
        pb::UnlockOutcome::Unconfirmed as i32,
        "{}",
        ambiguous.outcome_detail
    );
    assert_eq!(sim.unlock_count(FRONT_DOOR), before + 1);
    let unlock_requests = sim
        .stats()
        .requests_by_path
        .get("/v3/lock/unlock")
        .copied()
        .unwrap_or(0);
    let replay = access
        .unlock_door(authorized(unlock("open-2"), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay, ambiguous);
    assert_eq!(
        sim.stats()
            .requests_by_path
            .get("/v3/lock/unlock")
            .copied()
            .unwrap_or(0),
        unlock_requests,
        "never retried blindly"
    );

    // Each request left its decision and its outcome in the log once, decision first;
    // repeats recorded nothing.
    let rows = AuditServiceClient::new(channel)
        .query_access_logs(authorized(
            pb::QueryAccessLogsRequest {
                filter: Some(pb::LogFilter {
                    door_id: door.id.clone(),
                    ..Default::default()
                }),
                page_size: 100,
                page_token: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .logs;
    let unlocked = rows
        .iter()
        .filter(|r| r.action == pb::AuditAction::Unlock as i32)
        .count();
    let failed = rows
        .iter()
        .filter(|r| r.action == pb::AuditAction::UnlockFailed as i32)
        .count();
    let granted = rows
        .iter()
        .filter(|r| r.action == pb::AuditAction::AccessGranted as i32)
        .count();
    assert_eq!((granted, unlocked, failed), (2, 1, 1));
}
