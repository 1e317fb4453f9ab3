//! Access decisions end to end: each scenario of a door-access API, judged in the door's
//! time zone at instants the test chooses (ExplainAccess), and CheckAccess recorded in
//! the audit log before it is answered.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Europe::Madrid;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_service_client::AccessServiceClient;
use latchkey::pb::access::v1::audit_service_client::AuditServiceClient;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::pb::access::v1::rule_service_client::RuleServiceClient;
use latchkey::pb::timestamp;
use latchkey::testkit::{RunningServer, authorized, token};
use prost_types::FieldMask;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

struct World {
    _db: latchkey::testkit::TestDb,
    _server: RunningServer<access_service::RunError>,
    admin: String,
    directory: DirectoryServiceClient<Channel>,
    rules: RuleServiceClient<Channel>,
    access: AccessServiceClient<Channel>,
    audit: AuditServiceClient<Channel>,
    property: String,
}

impl World {
    async fn new(tenant: &str) -> Self {
        let db = common::database().await;
        let server = common::start(common::config(db.url())).await;
        let channel = server.channel().await;
        let admin = token(tenant, "admin", &["ADMIN"]);
        let mut directory = DirectoryServiceClient::new(channel.clone());
        let property = directory
            .create_property(authorized(
                pb::CreatePropertyRequest {
                    property: Some(pb::Property {
                        name: "Gym Centro".into(),
                        time_zone: "Europe/Madrid".into(),
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
        Self {
            _db: db,
            _server: server,
            admin,
            directory,
            rules: RuleServiceClient::new(channel.clone()),
            access: AccessServiceClient::new(channel.clone()),
            audit: AuditServiceClient::new(channel),
            property,
        }
    }

    async fn door(&mut self, name: &str, kind: pb::DoorType) -> String {
        self.directory
            .create_door(authorized(
                pb::CreateDoorRequest {
                    door: Some(pb::Door {
                        property_id: self.property.clone(),
                        name: name.into(),
                        r#type: kind as i32,
                        location: "Floor 1".into(),
                        active: true,
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
    }

    async fn user(&mut self, name: &str, roles: &[&str]) -> String {
        self.directory
            .create_user(authorized(
                pb::CreateUserRequest {
                    user: Some(pb::User {
                        external_id: format!("ext-{name}"),
                        name: name.into(),
                        email: format!("{name}@example.com"),
                        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                        active: true,
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
    }

    async fn membership(
        &mut self,
        user: &str,
        status: pb::MembershipStatus,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) {
        self.directory
            .create_membership(authorized(
                pb::CreateMembershipRequest {
                    membership: Some(pb::Membership {
                        user_id: user.into(),
                        status: status as i32,
                        start_time: Some(timestamp(start)),
                        end_time: end.map(timestamp),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &self.admin,
            ))
            .await
            .unwrap();
    }

    async fn rule(&mut self, rule: pb::Rule) -> pb::Rule {
        self.rules
            .create_rule(authorized(
                pb::CreateRuleRequest {
                    rule: Some(rule),
                    request_id: String::new(),
                },
                &self.admin,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    async fn explain(&mut self, door: &str, user: &str, at: DateTime<Utc>) -> pb::Decision {
        self.access
            .explain_access(authorized(
                pb::ExplainAccessRequest {
                    door_id: door.into(),
                    user_id: user.into(),
                    at: Some(timestamp(at)),
                    method: pb::AccessMethod::Card as i32,
                },
                &self.admin,
            ))
            .await
            .unwrap()
            .into_inner()
            .decision
            .unwrap()
    }
}

fn slot(day: i32, start: &str, end: &str) -> pb::TimeSlot {
    pb::TimeSlot {
        day_of_week: day,
        start: start.into(),
        end: end.into(),
    }
}

fn madrid(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Madrid
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

fn reason(decision: &pb::Decision) -> pb::ReasonCode {
    pb::ReasonCode::try_from(decision.reason_code).unwrap()
}

fn rule_for(door: &str, name: &str) -> pb::Rule {
    pb::Rule {
        door_id: door.into(),
        name: name.into(),
        active: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn weekly_slots_weekends_and_round_the_clock() {
    let mut w = World::new("gym").await;
    let office = w.door("Office", pb::DoorType::Room).await;
    let lounge = w.door("Lounge", pb::DoorType::Room).await;
    let store = w.door("Store", pb::DoorType::Room).await;
    let ana = w.user("ana", &["member"]).await;
    let business = w
        .rule(pb::Rule {
            user_ids: vec![ana.clone()],
            time_slots: (1..=5).map(|d| slot(d, "09:00", "18:00")).collect(),
            ..rule_for(&office, "Business hours")
        })
        .await;
    w.rule(pb::Rule {
        user_ids: vec![ana.clone()],
        time_slots: vec![slot(6, "00:00", "24:00"), slot(0, "00:00", "24:00")],
        ..rule_for(&lounge, "Weekends")
    })
    .await;
    w.rule(pb::Rule {
        user_ids: vec![ana.clone()],
        ..rule_for(&store, "Always")
    })
    .await;

    // Wednesday 2026-11-18.
    let inside = w.explain(&office, &ana, madrid(2026, 11, 18, 10, 0)).await;
    assert!(inside.granted);
    assert_eq!(reason(&inside), pb::ReasonCode::Granted);
    assert_eq!(inside.rule_id, business.id);
    assert_eq!(inside.rule_version, business.version);
    assert_eq!(inside.access_type, pb::AccessType::UserSpecific as i32);
    assert_eq!(inside.time_zone, "Europe/Madrid");
    assert_eq!(
        inside.valid_until,
        Some(timestamp(madrid(2026, 11, 18, 18, 0)))
    );
    assert!(inside.steps.iter().all(|s| s.passed));

    let evening = w.explain(&office, &ana, madrid(2026, 11, 18, 18, 0)).await;
    assert_eq!(reason(&evening), pb::ReasonCode::OutsideTimeSlot);
    assert_eq!(
        evening.valid_until,
        Some(timestamp(madrid(2026, 11, 19, 9, 0)))
    );
    let saturday = w.explain(&office, &ana, madrid(2026, 11, 21, 10, 0)).await;
    assert_eq!(reason(&saturday), pb::ReasonCode::OutsideTimeSlot);

    assert!(
        w.explain(&lounge, &ana, madrid(2026, 11, 21, 23, 59))
            .await
            .granted
    );
    assert!(
        !w.explain(&lounge, &ana, madrid(2026, 11, 23, 12, 0))
            .await
            .granted
    );
    assert!(
        w.explain(&store, &ana, madrid(2026, 11, 23, 3, 0))
            .await
            .granted
    );
}

#[tokio::test]
async fn roles_memberships_and_inactive_things() {
    let mut w = World::new("gym").await;
    let pool = w.door("Pool", pb::DoorType::Facility).await;
    let staff_room = w.door("Staff room", pb::DoorType::Room).await;
    let carla = w.user("carla", &["staff"]).await;
    let bob = w.user("bob", &["member"]).await;
    let dan = w.user("dan", &["member"]).await;
    w.rule(pb::Rule {
        roles: vec!["staff".into()],
        ..rule_for(&staff_room, "Staff")
    })
    .await;
    w.rule(pb::Rule {
        roles: vec!["member".into(), "staff".into()],
        ..rule_for(&pool, "Members")
    })
    .await;
    let now = Utc::now();
    w.membership(
        &bob,
        pb::MembershipStatus::Active,
        now - chrono::Duration::days(60),
        Some(now - chrono::Duration::days(1)),
    )
    .await;
    w.membership(
        &dan,
        pb::MembershipStatus::Frozen,
        now - chrono::Duration::days(60),
        None,
    )
    .await;
    w.membership(
        &carla,
        pb::MembershipStatus::Active,
        now - chrono::Duration::days(60),
        None,
    )
    .await;

    let staff = w.explain(&staff_room, &carla, now).await;
    assert!(staff.granted);
    assert_eq!(staff.access_type, pb::AccessType::RoleBased as i32);
    assert_eq!(
        reason(&w.explain(&staff_room, &bob, now).await),
        pb::ReasonCode::NoMatchingRule
    );
    assert!(w.explain(&pool, &carla, now).await.granted);
    assert_eq!(
        reason(&w.explain(&pool, &bob, now).await),
        pb::ReasonCode::MembershipExpired
    );
    assert_eq!(
        reason(&w.explain(&pool, &dan, now).await),
        pb::ReasonCode::MembershipFrozen
    );

    // An inactive door, then an inactive user.
    let admin = w.admin.clone();
    w.directory
        .update_door(authorized(
            pb::UpdateDoorRequest {
                door: Some(pb::Door {
                    id: staff_room.clone(),
                    active: false,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["active".into()],
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    w.directory
        .update_user(authorized(
            pb::UpdateUserRequest {
                user: Some(pb::User {
                    id: carla.clone(),
                    active: false,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["active".into()],
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    assert_eq!(
        reason(&w.explain(&staff_room, &carla, now).await),
        pb::ReasonCode::DoorInactive
    );
    assert_eq!(
        reason(&w.explain(&pool, &carla, now).await),
        pb::ReasonCode::UserInactive
    );
}

#[tokio::test]
async fn validity_windows_overnight_slots_and_daylight_saving_in_madrid() {
    let mut w = World::new("gym").await;
    let door = w.door("Night gate", pb::DoorType::Gate).await;
    let temp = w.door("Temp", pb::DoorType::Room).await;
    let eve = w.user("eve", &["member"]).await;
    // Friday 22:00 to Saturday 06:00, and Sunday 01:00–04:00 around the clock changes.
    w.rule(pb::Rule {
        user_ids: vec![eve.clone()],
        time_slots: vec![slot(5, "22:00", "06:00"), slot(0, "01:00", "04:00")],
        ..rule_for(&door, "Night shift")
    })
    .await;
    w.rule(pb::Rule {
        user_ids: vec![eve.clone()],
        valid_from: Some(timestamp(madrid(2026, 12, 1, 0, 0))),
        valid_until: Some(timestamp(madrid(2026, 12, 8, 0, 0))),
        ..rule_for(&temp, "First week of December")
    })
    .await;

    // Saturday 2026-11-21 03:00 is inside Friday's overnight slot; 06:00 is not.
    assert!(
        w.explain(&door, &eve, madrid(2026, 11, 21, 3, 0))
            .await
            .granted
    );
    assert!(
        !w.explain(&door, &eve, madrid(2026, 11, 21, 6, 0))
            .await
            .granted
    );

    // Spring forward, Sunday 2026-03-29: 02:00 becomes 03:00 (UTC+1 to UTC+2).
    let before_gap = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap(); // 01:30 local
    let after_gap = Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap(); // 03:30 local
    let granted = w.explain(&door, &eve, before_gap).await;
    assert!(granted.granted);
    assert_eq!(
        granted.valid_until,
        Some(timestamp(
            Utc.with_ymd_and_hms(2026, 3, 29, 2, 0, 0).unwrap()
        ))
    );
    assert!(w.explain(&door, &eve, after_gap).await.granted);
    assert!(
        !w.explain(
            &door,
            &eve,
            Utc.with_ymd_and_hms(2026, 3, 29, 2, 0, 0).unwrap()
        )
        .await
        .granted
    );

    // Fall back, Sunday 2026-10-25: 03:00 becomes 02:00 (UTC+2 to UTC+1); 04:00 local
    // is 03:00 UTC.
    let first_two_thirty = Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap();
    let second_two_thirty = Utc.with_ymd_and_hms(2026, 10, 25, 1, 30, 0).unwrap();
    let fall = w.explain(&door, &eve, first_two_thirty).await;
    assert!(fall.granted);
    assert_eq!(
        fall.valid_until,
        Some(timestamp(
            Utc.with_ymd_and_hms(2026, 10, 25, 3, 0, 0).unwrap()
        ))
    );
    assert!(w.explain(&door, &eve, second_two_thirty).await.granted);
    assert!(
        !w.explain(
            &door,
            &eve,
            Utc.with_ymd_and_hms(2026, 10, 25, 3, 0, 0).unwrap()
        )
        .await
        .granted
    );

    assert_eq!(
        reason(&w.explain(&temp, &eve, madrid(2026, 11, 30, 12, 0)).await),
        pb::ReasonCode::OutsideValidity
    );
    assert!(
        w.explain(&temp, &eve, madrid(2026, 12, 3, 12, 0))
            .await
            .granted
    );
    assert_eq!(
        reason(&w.explain(&temp, &eve, madrid(2026, 12, 8, 0, 0)).await),
        pb::ReasonCode::OutsideValidity
    );
}

#[tokio::test]
async fn check_access_is_recorded_before_it_is_answered_and_follows_changes() {
    let mut w = World::new("gym").await;
    let door = w.door("Studio", pb::DoorType::Room).await;
    let ana = w.user("ana", &["member"]).await;
    let rule = w
        .rule(pb::Rule {
            user_ids: vec![ana.clone()],
            ..rule_for(&door, "Always")
        })
        .await;
    let admin = w.admin.clone();
    let check = |user: &str| pb::CheckAccessRequest {
        door_id: door.clone(),
        user_id: user.into(),
        method: pb::AccessMethod::Card as i32,
        client_ip: "203.0.113.9".into(),
        request_id: "req-1".into(),
        code: String::new(),
    };

    let answer = w
        .access
        .check_access(authorized(check(&ana), &admin))
        .await
        .unwrap()
        .into_inner();
    let decision = answer.decision.unwrap();
    assert!(decision.granted);
    assert!(answer.audit_sequence > 0);
    let row = w
        .audit
        .get_access_log(authorized(
            pb::GetAccessLogRequest {
                sequence: answer.audit_sequence,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(row.action, pb::AuditAction::AccessGranted as i32);
    assert_eq!(
        (
            row.door_name.as_str(),
            row.door_location.as_str(),
            row.user_name.as_str()
        ),
        ("Studio", "Floor 1", "ana")
    );
    assert_eq!(
        (row.rule_id.as_str(), row.rule_version),
        (rule.id.as_str(), rule.version)
    );
    assert_eq!(
        (
            row.client_ip.as_str(),
            row.request_id.as_str(),
            row.reason_code.as_str()
        ),
        ("203.0.113.9", "req-1", "GRANTED")
    );
    assert!(row.metadata_json.contains("\"steps\""));

    // A member asks about themselves by their external id; not about others.
    let member = token("gym", "ext-ana", &["member"]);
    let own = w
        .access
        .check_access(authorized(check(""), &member))
        .await
        .unwrap()
        .into_inner();
    assert!(own.decision.unwrap().granted);
    let other = w
        .access
        .check_access(authorized(check("someone-else"), &member))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);

    // Turning the rule off is seen by the next decisions without a restart.
    w.rules
        .toggle_rule(authorized(
            pb::ToggleRuleRequest {
                id: rule.id.clone(),
                active: false,
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let mut denied = None;
    for _ in 0..100 {
        let answer = w
            .access
            .check_access(authorized(check(&ana), &admin))
            .await
            .unwrap()
            .into_inner();
        let decision = answer.decision.unwrap();
        if !decision.granted {
            denied = Some(decision);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        reason(&denied.expect("the change reached the snapshot within a second")),
        pb::ReasonCode::NoMatchingRule
    );

    // Door access switched off for the whole tenant.
    w.directory
        .update_tenant_settings(authorized(
            pb::UpdateTenantSettingsRequest {
                settings: Some(pb::TenantSettings {
                    door_access_enabled: false,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["door_access_enabled".into()],
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    assert_eq!(
        reason(&w.explain(&door, &ana, Utc::now()).await),
        pb::ReasonCode::TenantAccessDisabled
    );
}

#[tokio::test]
async fn bad_input_names_the_field_and_other_tenants_doors_are_unknown() {
    let mut w = World::new("tenant-a").await;
    let door = w.door("A's door", pb::DoorType::Room).await;
    let admin = w.admin.clone();
    let status = w
        .access
        .check_access(authorized(
            pb::CheckAccessRequest {
                door_id: "front".into(),
                client_ip: "300.1.1.1".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<_> = status
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, ["door_id", "method", "client_ip"]);

    let intruder = token("tenant-b", "admin", &["ADMIN"]);
    let answer = w
        .access
        .check_access(authorized(
            pb::CheckAccessRequest {
                door_id: door.clone(),
                method: pb::AccessMethod::Api as i32,
                ..Default::default()
            },
            &intruder,
        ))
        .await
        .unwrap()
        .into_inner();
    let decision = answer.decision.unwrap();
    assert!(!decision.granted);
    assert_eq!(reason(&decision), pb::ReasonCode::DoorNotFound);
    let theirs = w
        .audit
        .query_access_logs(authorized(pb::QueryAccessLogsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner()
        .logs;
    assert!(
        theirs
            .iter()
            .all(|l| l.action != pb::AuditAction::AccessDenied as i32),
        "tenant A's log holds none of B's attempts"
    );
    let status = w
        .access
        .get_door_status(authorized(
            pb::GetDoorStatusRequest { door_id: door },
            &intruder,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn unlock_without_a_lock_records_the_decision_and_says_nothing_moved() {
    let mut w = World::new("gym").await;
    let door = w.door("Studio", pb::DoorType::Room).await;
    let ana = w.user("ana", &["member"]).await;
    w.rule(pb::Rule {
        user_ids: vec![ana.clone()],
        ..rule_for(&door, "Always")
    })
    .await;
    let admin = w.admin.clone();
    let missing = w
        .access
        .unlock_door(authorized(
            pb::UnlockDoorRequest {
                door_id: door.clone(),
                user_id: ana.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        missing
            .get_error_details()
            .bad_request()
            .unwrap()
            .field_violations[0]
            .field,
        "request_id"
    );
    let answer = w
        .access
        .unlock_door(authorized(
            pb::UnlockDoorRequest {
                door_id: door,
                user_id: ana,
                client_ip: String::new(),
                request_id: "u-1".into(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.decision.unwrap().granted);
    assert_eq!(answer.outcome, pb::UnlockOutcome::NoLock as i32);
    // Nothing was sent: the decision is the only row.
    assert_eq!(answer.outcome_audit_sequence, 0);

    let accessible = w
        .access
        .list_accessible_doors(authorized(
            pb::ListAccessibleDoorsRequest {
                user_id: "ext-ana".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accessible.doors.len(), 1);
    assert_eq!(accessible.doors[0].door.as_ref().unwrap().name, "Studio");
}

fn violated(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect()
}

#[tokio::test]
async fn access_and_audit_rpcs_check_their_input_and_their_callers() {
    let mut w = World::new("gym").await;
    let door = w.door("Studio", pb::DoorType::Room).await;
    let admin = w.admin.clone();
    let manager = token("gym", "mgr", &["MANAGER"]);
    let member = token("gym", "ext-ana", &["member"]);
    w.user("ana", &["member"]).await;

    let explain = w
        .access
        .explain_access(authorized(
            pb::ExplainAccessRequest {
                door_id: "x".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated(&explain), ["door_id"]);
    let other = w
        .access
        .explain_access(authorized(
            pb::ExplainAccessRequest {
                door_id: door.clone(),
                user_id: "ext-bob".into(),
                ..Default::default()
            },
            &member,
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
    assert!(
        w.access
            .explain_access(authorized(
                pb::ExplainAccessRequest {
                    door_id: door.clone(),
                    user_id: "ext-ana".into(),
                    ..Default::default()
                },
                &manager
            ))
            .await
            .is_ok()
    );
    let listed = w
        .access
        .list_accessible_doors(authorized(
            pb::ListAccessibleDoorsRequest {
                page_size: -3,
                page_token: "nope".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated(&listed), ["page_size", "page_token"]);
    let status = w
        .access
        .get_door_status(authorized(
            pb::GetDoorStatusRequest {
                door_id: "door-1".into(),
            },
            &member,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated(&status), ["door_id"]);
    let own = w
        .access
        .get_door_status(authorized(
            pb::GetDoorStatusRequest {
                door_id: door.clone(),
            },
            &member,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (own.status, own.active, own.has_lock),
        (pb::DoorStatus::Unknown as i32, true, false)
    );

    let get = w
        .audit
        .get_access_log(authorized(pb::GetAccessLogRequest { sequence: 0 }, &admin))
        .await
        .unwrap_err();
    assert_eq!(violated(&get), ["sequence"]);
    let missing = w
        .audit
        .get_access_log(authorized(
            pb::GetAccessLogRequest { sequence: 99_999 },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let verify = w
        .audit
        .verify_audit_chain(authorized(
            pb::VerifyAuditChainRequest {
                from_sequence: 5,
                to_sequence: 2,
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated(&verify), ["to_sequence"]);
    let door_stats = w
        .audit
        .get_door_stats(authorized(pb::GetDoorStatsRequest::default(), &manager))
        .await
        .unwrap_err();
    assert_eq!(violated(&door_stats), ["door_id"]);
    let range = w
        .audit
        .get_access_stats(authorized(
            pb::GetAccessStatsRequest {
                start_time: Some(timestamp(Utc::now())),
                end_time: Some(timestamp(Utc::now() - chrono::Duration::hours(1))),
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated(&range), ["end_time"]);
    let query = w
        .audit
        .query_access_logs(authorized(
            pb::QueryAccessLogsRequest {
                filter: Some(pb::LogFilter {
                    flagged: "yes".into(),
                    action: 99,
                    ..Default::default()
                }),
                page_size: 0,
                page_token: "s1.x".into(),
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated(&query), ["filter.action"]);

    for (name, refused) in [
        (
            "member queries logs",
            w.audit
                .query_access_logs(authorized(pb::QueryAccessLogsRequest::default(), &member))
                .await
                .err(),
        ),
        (
            "manager verifies",
            w.audit
                .verify_audit_chain(authorized(pb::VerifyAuditChainRequest::default(), &manager))
                .await
                .err(),
        ),
        (
            "manager hunts bursts",
            w.audit
                .find_suspicious_activity(authorized(
                    pb::FindSuspiciousActivityRequest {
                        window_minutes: 5,
                        threshold: 3,
                        ..Default::default()
                    },
                    &manager,
                ))
                .await
                .err(),
        ),
        (
            "member reads stats",
            w.audit
                .get_access_stats(authorized(pb::GetAccessStatsRequest::default(), &member))
                .await
                .err(),
        ),
    ] {
        assert_eq!(
            refused.map(|s| s.code()),
            Some(Code::PermissionDenied),
            "{name}"
        );
    }
    let stranger = token("elsewhere", "admin", &["ADMIN"]);
    let logs = w
        .audit
        .query_access_logs(authorized(pb::QueryAccessLogsRequest::default(), &stranger))
        .await
        .unwrap()
        .into_inner();
    assert!(
        logs.logs.is_empty(),
        "another tenant sees none of this tenant's rows"
    );
}

#[tokio::test]
async fn a_change_through_one_replica_reaches_the_other_within_a_second() {
    let db = common::database().await;
    let first = common::start(common::config(db.url())).await;
    let second = common::start(common::config(db.url())).await;
    let admin = token("gym", "admin", &["ADMIN"]);
    let mut directory = common::directory(&first).await;
    let mut rules = common::rules(&first).await;
    let mut other = AccessServiceClient::new(second.channel().await);
    let home = common::property(&mut directory, &admin, "Gym", "Europe/Madrid").await;
    let door = common::door(
        &mut directory,
        &admin,
        pb::Door {
            r#type: pb::DoorType::Room.into(),
            ..common::door_spec(&home.id, "Studio")
        },
    )
    .await;
    let ana = common::user(&mut directory, &admin, "Ana", &["member"]).await;
    let rule = common::grant(&mut rules, &admin, &door.id, &ana.id, "Ana any time").await;
    let explain = || {
        authorized(
            pb::ExplainAccessRequest {
                door_id: door.id.clone(),
                user_id: ana.id.clone(),
                ..Default::default()
            },
            &admin,
        )
    };
    let decided = |answer: pb::ExplainAccessResponse| answer.decision.unwrap().reason_code;
    // The second replica reads the tenant (and so caches it) before the change.
    let before = other.explain_access(explain()).await.unwrap().into_inner();
    assert_eq!(decided(before), pb::ReasonCode::Granted as i32);

    rules
        .toggle_rule(authorized(
            pb::ToggleRuleRequest {
                id: rule.id,
                active: false,
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let toggled = std::time::Instant::now();
    loop {
        let answer = other.explain_access(explain()).await.unwrap().into_inner();
        if decided(answer) == pb::ReasonCode::NoMatchingRule as i32 {
            break;
        }
        assert!(
            toggled.elapsed() < std::time::Duration::from_secs(1),
            "the other replica still granted a second after the rule was switched off"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_nul_in_one_request_fails_that_request_alone() {
    // One caller in sixteen sends a NUL; the others' decisions share the audit writer's
    // runs with it and must all be answered and recorded.
    let mut w = World::new("gym").await;
    let door = w.door("Studio", pb::DoorType::Room).await;
    let ana = w.user("ana", &["member"]).await;
    w.rule(pb::Rule {
        user_ids: vec![ana.clone()],
        ..rule_for(&door, "Always")
    })
    .await;
    let admin = w.admin.clone();
    let calls = (0..64).map(|i| {
        let mut access = w.access.clone();
        let request = pb::CheckAccessRequest {
            door_id: door.clone(),
            user_id: if i % 16 == 5 {
                "ana\0".to_owned()
            } else {
                ana.clone()
            },
            method: pb::AccessMethod::Card as i32,
            ..Default::default()
        };
        let admin = admin.clone();
        async move { access.check_access(authorized(request, &admin)).await }
    });
    let mut sequences = Vec::new();
    for (i, answer) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        if i % 16 == 5 {
            assert_eq!(violated(&answer.unwrap_err()), ["user_id"]);
        } else {
            let answer = answer
                .unwrap_or_else(|e| panic!("call {i}: {e:?}"))
                .into_inner();
            assert!(answer.decision.unwrap().granted);
            sequences.push(answer.audit_sequence);
        }
    }
    assert_eq!(sequences.len(), 60);

    // Filters reach queries too.
    let nul_door = pb::LogFilter {
        door_id: "d\0".into(),
        ..Default::default()
    };
    let status = w
        .audit
        .query_access_logs(authorized(
            pb::QueryAccessLogsRequest {
                filter: Some(nul_door.clone()),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated(&status), ["filter.door_id"]);
    let mut export = w
        .audit
        .export_access_logs(authorized(
            pb::ExportAccessLogsRequest {
                filter: Some(pb::LogFilter {
                    user_id: "\0".into(),
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await;
    let status = match &mut export {
        Err(status) => status.clone(),
        Ok(stream) => stream.get_mut().message().await.unwrap_err(),
    };
    assert_eq!(violated(&status), ["filter.user_id"]);
    let status = w
        .audit
        .get_door_stats(authorized(
            pb::GetDoorStatsRequest {
                door_id: "\0".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated(&status), ["door_id"]);
    let status = w
        .directory
        .list_properties(authorized(
            pb::ListPropertiesRequest {
                name_contains: "Gym\0".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated(&status), ["name_contains"]);
    // A token whose subject holds a NUL is refused before anything is decided.
    let status = w
        .access
        .check_access(authorized(
            pb::CheckAccessRequest {
                door_id: door.clone(),
                method: pb::AccessMethod::Card as i32,
                ..Default::default()
            },
            &token("gym", "ana\0", &["member"]),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "TOKEN_CLAIM_INVALID"
    );

    // Every answered decision is in the log, and nothing else was written for them.
    let logs = w
        .audit
        .query_access_logs(authorized(
            pb::QueryAccessLogsRequest {
                page_size: 1000,
                filter: Some(pb::LogFilter {
                    door_id: door.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .logs;
    let mut logged: Vec<i64> = logs.iter().map(|l| l.sequence).collect();
    logged.sort_unstable();
    sequences.sort_unstable();
    assert_eq!(logged, sequences);
}
