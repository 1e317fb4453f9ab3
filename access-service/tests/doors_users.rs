//! Doors, users and memberships: validation, lock binding, zones, masks, versions,
//! idempotency, pagination, cascades, roles, audit rows and tenant isolation.

#![allow(clippy::unwrap_used)]

mod common;

use common::{audit_rows, audited, fields, mask, reason};
use latchkey::pb::access::v1::access_service_client::AccessServiceClient;
use latchkey::pb::access::v1::{
    CreateDoorRequest, CreateMembershipRequest, CreateRuleRequest, CreateUserRequest,
    DeleteDoorRequest, DeleteMembershipRequest, DeleteUserRequest, Door, DoorStatus, DoorType,
    GetDoorRequest, GetMembershipRequest, GetRuleRequest, GetUserRequest, ListDoorsRequest,
    ListMembershipsRequest, ListUsersRequest, LockBinding, Membership, MembershipStatus, Rule,
    UpdateDoorRequest, UpdateMembershipRequest, UpdateUserRequest, User,
};
use latchkey::pb::access::v1::{ExplainAccessRequest, ReasonCode};
use latchkey::testkit::{authorized, token};
use prost_types::Timestamp;
use tonic::Code;

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

#[tokio::test]
async fn door_input_is_checked_field_by_field_and_nothing_is_stored() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut client = common::directory(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);
    let home = common::property(&mut client, &admin, "Casa", "Europe/Madrid").await;

    let bad = Door {
        property_id: "not-a-uuid".into(),
        name: " ".into(),
        r#type: 0,
        location: "x".repeat(501),
        time_zone: "Mars/Olympus".into(),
        lock: Some(LockBinding {
            account_id: "acct".into(),
            lock_id: 0,
        }),
        ..Default::default()
    };
    let status = client
        .create_door(authorized(
            CreateDoorRequest {
                door: Some(bad),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&status),
        [
            "door.property_id",
            "door.name",
            "door.type",
            "door.location",
            "door.time_zone",
            "door.lock.account_id",
            "door.lock.lock_id",
        ]
    );

    let unknown_type = Door {
        r#type: 42,
        ..common::door_spec(&home.id, "Front")
    };
    let status = client
        .create_door(authorized(
            CreateDoorRequest {
                door: Some(unknown_type),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["door.type"]);

    let nowhere = common::door_spec(&uuid::Uuid::now_v7().to_string(), "Front");
    let status = client
        .create_door(authorized(
            CreateDoorRequest {
                door: Some(nowhere),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields(&status), ["door.property_id"]);

    let status = client
        .create_door(authorized(CreateDoorRequest::default(), &admin))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["door"]);

    let status = client
        .get_door(authorized(GetDoorRequest { id: "7".into() }, &admin))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["id"]);

    let status = client
        .list_doors(authorized(
            ListDoorsRequest {
                page_size: -3,
                page_token: "forged".into(),
                property_id: "x".into(),
                r#type: 77,
                active: "yes".into(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        fields(&status),
        ["page_size", "page_token", "property_id", "type", "active"]
    );

    let door = common::door(&mut client, &admin, common::door_spec(&home.id, "Front")).await;
    for (update_mask, change, expected) in [
        (
            mask(&["name", "status"]),
            Door {
                name: "Side".into(),
                ..Default::default()
            },
            "update_mask",
        ),
        (mask(&["type"]), Door::default(), "door.type"),
        (
            mask(&["time_zone"]),
            Door {
                time_zone: "Nowhere/Land".into(),
                ..Default::default()
            },
            "door.time_zone",
        ),
        (
            mask(&["lock"]),
            Door {
                lock: Some(LockBinding {
                    account_id: uuid::Uuid::now_v7().to_string(),
                    lock_id: -5,
                }),
                ..Default::default()
            },
            "door.lock.lock_id",
        ),
    ] {
        let status = client
            .update_door(authorized(
                UpdateDoorRequest {
                    door: Some(Door {
                        id: door.id.clone(),
                        ..change
                    }),
                    update_mask,
                    request_id: String::new(),
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(fields(&status), [expected]);
    }

    let listed = client
        .list_doors(authorized(ListDoorsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.doors,
        std::slice::from_ref(&door),
        "refused calls stored nothing"
    );
    assert_eq!(listed.doors[0].version, 1);
    assert_eq!(
        audit_rows(&db, "t1").await,
        [
            audited("ADMIN_CREATE", "property", &home.id),
            audited("ADMIN_CREATE", "door", &door.id),
        ]
    );
}

#[tokio::test]
async fn doors_take_zones_bind_one_lock_each_follow_masks_and_page_completely() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut client = common::directory(&server).await;
    let mut rules = common::rules(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);
    let madrid = common::property(&mut client, &admin, "Madrid", "Europe/Madrid").await;
    let tokyo = common::property(&mut client, &admin, "Tokyo", "Asia/Tokyo").await;
    let account = uuid::Uuid::now_v7().to_string();
    let lock = LockBinding {
        account_id: account.clone(),
        lock_id: 4711,
    };

    let create = CreateDoorRequest {
        door: Some(Door {
            lock: Some(lock.clone()),
            location: "Ground floor".into(),
            ..common::door_spec(&madrid.id, "Front")
        }),
        request_id: "door-1".into(),
    };
    let front = client
        .create_door(authorized(create.clone(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(front.time_zone, "");
    assert_eq!(front.effective_time_zone, "Europe/Madrid");
    assert_eq!(front.status, i32::from(DoorStatus::Unknown));
    assert_eq!(front.r#type, i32::from(DoorType::Entrance));
    assert_eq!(front.lock.as_ref(), Some(&lock));
    assert_eq!(front.version, 1);
    let retried = client
        .create_door(authorized(create, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, front, "the same request id returns the first door");

    let second_binding = client
        .create_door(authorized(
            CreateDoorRequest {
                door: Some(Door {
                    lock: Some(lock.clone()),
                    ..common::door_spec(&madrid.id, "Back")
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(second_binding.code(), Code::AlreadyExists);
    assert_eq!(reason(&second_binding), "LOCK_ALREADY_BOUND");

    let gym = common::door(
        &mut client,
        &admin,
        Door {
            time_zone: "America/New_York".into(),
            r#type: DoorType::Facility.into(),
            ..common::door_spec(&tokyo.id, "Gym")
        },
    )
    .await;
    assert_eq!(gym.effective_time_zone, "America/New_York");

    let renamed = client
        .update_door(authorized(
            UpdateDoorRequest {
                door: Some(Door {
                    id: front.id.clone(),
                    name: "Main entrance".into(),
                    location: "ignored".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "Main entrance");
    assert_eq!(renamed.location, "Ground floor", "outside the mask");
    assert_eq!(renamed.lock.as_ref(), Some(&lock), "outside the mask");
    assert_eq!(renamed.version, 2);

    let unbound = client
        .update_door(authorized(
            UpdateDoorRequest {
                door: Some(Door {
                    id: front.id.clone(),
                    time_zone: "Asia/Tokyo".into(),
                    active: false,
                    ..Default::default()
                }),
                update_mask: mask(&["lock", "time_zone", "active"]),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unbound.lock, None);
    assert_eq!(unbound.effective_time_zone, "Asia/Tokyo");
    assert!(!unbound.active);
    assert_eq!(unbound.version, 3);
    // The lock is free again.
    let back = common::door(
        &mut client,
        &admin,
        Door {
            lock: Some(lock.clone()),
            ..common::door_spec(&madrid.id, "Back")
        },
    )
    .await;

    for i in 0..3 {
        common::door(
            &mut client,
            &admin,
            common::door_spec(&tokyo.id, &format!("Room {i}")),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_doors(authorized(
                ListDoorsRequest {
                    page_size: 2,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.doors.len() <= 2);
        seen.extend(page.doors.into_iter().map(|d| d.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(
        seen,
        ["Main entrance", "Gym", "Back", "Room 0", "Room 1", "Room 2"]
    );

    let names = |doors: Vec<Door>| doors.into_iter().map(|d| d.name).collect::<Vec<_>>();
    let list = |request: ListDoorsRequest| authorized(request, &admin);
    let in_madrid = client
        .list_doors(list(ListDoorsRequest {
            property_id: madrid.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(in_madrid.doors), ["Main entrance", "Back"]);
    let facilities = client
        .list_doors(list(ListDoorsRequest {
            r#type: DoorType::Facility.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(facilities.doors), ["Gym"]);
    let inactive = client
        .list_doors(list(ListDoorsRequest {
            active: "false".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(inactive.doors), ["Main entrance"]);

    // Deleting a door removes its rules through the foreign key.
    let rule = rules
        .create_rule(authorized(
            CreateRuleRequest {
                rule: Some(Rule {
                    door_id: back.id.clone(),
                    name: "Staff".into(),
                    roles: vec!["staff".into()],
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
    client
        .delete_door(authorized(
            DeleteDoorRequest {
                id: back.id.clone(),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let gone = client
        .get_door(authorized(
            GetDoorRequest {
                id: back.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let rule_gone = rules
        .get_rule(authorized(
            GetRuleRequest {
                id: rule.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(rule_gone.code(), Code::NotFound);
    let again = client
        .delete_door(authorized(
            DeleteDoorRequest {
                id: back.id.clone(),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);

    let rows = audit_rows(&db, "t1").await;
    let door_rows: Vec<_> = rows.iter().filter(|r| r.1 != "property").cloned().collect();
    assert_eq!(door_rows.len(), 10, "{door_rows:?}");
    assert_eq!(
        door_rows[..6],
        [
            audited("ADMIN_CREATE", "door", &front.id),
            audited("ADMIN_CREATE", "door", &gym.id),
            audited("ADMIN_UPDATE", "door", &front.id),
            audited("ADMIN_UPDATE", "door", &front.id),
            audited("ADMIN_CREATE", "door", &back.id),
            audited("ADMIN_CREATE", "door", &door_rows[5].2),
        ]
    );
    assert_eq!(
        door_rows[8..],
        [
            audited("ADMIN_CREATE", "rule", &rule.id),
            audited("ADMIN_DELETE", "door", &back.id),
        ]
    );
}

#[tokio::test]
async fn users_are_checked_unique_by_external_id_searchable_and_deleted_with_their_grants() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut client = common::directory(&server).await;
    let mut rules = common::rules(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);

    let status = client
        .create_user(authorized(
            CreateUserRequest {
                user: Some(User {
                    external_id: "e".repeat(129),
                    name: "".into(),
                    email: "not-an-email".into(),
                    roles: vec!["staff".into(), "has space".into()],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&status),
        [
            "user.external_id",
            "user.name",
            "user.email",
            "user.roles[1]"
        ]
    );
    let status = client
        .create_user(authorized(
            CreateUserRequest {
                user: Some(User {
                    name: "Many".into(),
                    roles: (0..51).map(|i| format!("r{i}")).collect(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["user.roles"]);
    // PostgreSQL text cannot hold NUL: named as invalid, never an internal error.
    let status = client
        .create_user(authorized(
            CreateUserRequest {
                user: Some(User {
                    name: "Ana\0".into(),
                    external_id: "x\0".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["user.external_id", "user.name"]);
    let status = client
        .list_users(authorized(
            ListUsersRequest {
                active: "maybe".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["active"]);
    // NUL characters are refused before the service sees the request.
    let status = client
        .list_users(authorized(
            ListUsersRequest {
                active: "maybe".into(),
                query: "a\0".into(),
                role: "r\0".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["role", "query"]);

    let create = CreateUserRequest {
        user: Some(User {
            external_id: "member-17".into(),
            name: "Ana García".into(),
            email: "ana@example.com".into(),
            roles: vec!["member".into(), "staff".into()],
            active: true,
            ..Default::default()
        }),
        request_id: "user-1".into(),
    };
    let ana = client
        .create_user(authorized(create.clone(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ana.version, 1);
    let retried = client
        .create_user(authorized(create.clone(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, ana);
    let taken = client
        .create_user(authorized(
            CreateUserRequest {
                request_id: String::new(),
                ..create
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert_eq!(reason(&taken), "EXTERNAL_ID_TAKEN");

    let percent = common::user(&mut client, &admin, "100% Fitness", &["member"]).await;
    let plain = common::user(&mut client, &admin, "100 Fitness", &["guest"]).await;
    let list = |request: ListUsersRequest| authorized(request, &admin);
    let names = |users: Vec<User>| users.into_iter().map(|u| u.name).collect::<Vec<_>>();
    let literal = client
        .list_users(list(ListUsersRequest {
            query: "100%".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        names(literal.users),
        ["100% Fitness"],
        "% matches literally"
    );
    let by_email = client
        .list_users(list(ListUsersRequest {
            query: "ANA@EXAMPLE".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(by_email.users), ["Ana García"]);
    let members = client
        .list_users(list(ListUsersRequest {
            role: "member".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(members.users), ["Ana García", "100% Fitness"]);

    let updated = client
        .update_user(authorized(
            UpdateUserRequest {
                user: Some(User {
                    id: plain.id.clone(),
                    roles: vec!["staff".into()],
                    active: false,
                    name: "ignored".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["roles", "active"]),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.roles, ["staff"]);
    assert!(!updated.active);
    assert_eq!(updated.name, "100 Fitness");
    assert_eq!(updated.version, 2);
    let inactive = client
        .list_users(list(ListUsersRequest {
            active: "false".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(inactive.users), ["100 Fitness"]);
    let bad_update = client
        .update_user(authorized(
            UpdateUserRequest {
                user: Some(User {
                    id: plain.id.clone(),
                    email: "a@b".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["email", "password"]),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&bad_update), ["update_mask", "user.email"]);

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_users(list(ListUsersRequest {
                page_size: 1,
                page_token: page_token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.users.len() <= 1);
        seen.extend(page.users.into_iter().map(|u| u.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, [ana.id.clone(), percent.id.clone(), plain.id.clone()]);

    // Deleting a user removes their memberships and rule grants.
    let home = common::property(&mut client, &admin, "Gym", "UTC").await;
    let door = common::door(&mut client, &admin, common::door_spec(&home.id, "Entry")).await;
    let membership = client
        .create_membership(authorized(
            CreateMembershipRequest {
                membership: Some(Membership {
                    user_id: ana.id.clone(),
                    status: MembershipStatus::Active.into(),
                    start_time: at(1_700_000_000),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let rule = rules
        .create_rule(authorized(
            CreateRuleRequest {
                rule: Some(Rule {
                    door_id: door.id.clone(),
                    name: "Ana and Percent".into(),
                    user_ids: vec![ana.id.clone(), percent.id.clone()],
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
    assert_eq!(rule.user_ids, [ana.id.clone(), percent.id.clone()]);
    let mut access = AccessServiceClient::new(server.channel().await);
    let explain = |user: &str| {
        authorized(
            ExplainAccessRequest {
                door_id: door.id.clone(),
                user_id: user.to_owned(),
                ..Default::default()
            },
            &admin,
        )
    };
    let before = access.explain_access(explain(&ana.id)).await.unwrap();
    assert_eq!(
        before.into_inner().decision.unwrap().reason_code,
        ReasonCode::Granted as i32
    );
    client
        .delete_user(authorized(
            DeleteUserRequest {
                id: ana.id.clone(),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let gone = client
        .get_user(authorized(GetUserRequest { id: ana.id.clone() }, &admin))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let membership_gone = client
        .get_membership(authorized(
            GetMembershipRequest {
                id: membership.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(membership_gone.code(), Code::NotFound);
    // The replica that deleted the user decides without it at once.
    let after = access.explain_access(explain(&ana.id)).await.unwrap();
    assert_eq!(
        after.into_inner().decision.unwrap().reason_code,
        ReasonCode::UserNotFound as i32
    );
    let rule_now = rules
        .get_rule(authorized(GetRuleRequest { id: rule.id }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rule_now.user_ids, std::slice::from_ref(&percent.id));

    let user_rows: Vec<_> = audit_rows(&db, "t1")
        .await
        .into_iter()
        .filter(|r| r.1 == "user")
        .collect();
    assert_eq!(
        user_rows,
        [
            audited("ADMIN_CREATE", "user", &ana.id),
            audited("ADMIN_CREATE", "user", &percent.id),
            audited("ADMIN_CREATE", "user", &plain.id),
            audited("ADMIN_UPDATE", "user", &plain.id),
            audited("ADMIN_DELETE", "user", &ana.id),
        ]
    );
}

#[tokio::test]
async fn memberships_need_a_user_a_status_and_a_window_and_keep_it_on_update() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut client = common::directory(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);
    let ana = common::user(&mut client, &admin, "Ana", &["member"]).await;
    let bo = common::user(&mut client, &admin, "Bo", &["member"]).await;

    let create = |membership: Membership| {
        authorized(
            CreateMembershipRequest {
                membership: Some(membership),
                request_id: String::new(),
            },
            &admin,
        )
    };
    let status = client
        .create_membership(create(Membership {
            user_id: "x".into(),
            plan: "p".repeat(201),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        fields(&status),
        [
            "membership.user_id",
            "membership.status",
            "membership.start_time",
            "membership.plan"
        ]
    );
    let status = client
        .create_membership(create(Membership {
            user_id: ana.id.clone(),
            status: MembershipStatus::Active.into(),
            start_time: at(2_000),
            end_time: at(1_000),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["membership.end_time"]);
    let status = client
        .create_membership(create(Membership {
            user_id: uuid::Uuid::now_v7().to_string(),
            status: MembershipStatus::Active.into(),
            start_time: at(1_000),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields(&status), ["membership.user_id"]);

    let request = CreateMembershipRequest {
        membership: Some(Membership {
            user_id: ana.id.clone(),
            status: MembershipStatus::Active.into(),
            start_time: at(1_000),
            end_time: at(5_000),
            plan: "monthly".into(),
            ..Default::default()
        }),
        request_id: "m-1".into(),
    };
    let first = client
        .create_membership(authorized(request.clone(), &admin))
        .await
        .unwrap()
        .into_inner();
    let retried = client
        .create_membership(authorized(request, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, first);
    assert_eq!(first.start_time, at(1_000));
    assert_eq!(first.end_time, at(5_000));
    let frozen = client
        .create_membership(create(Membership {
            user_id: bo.id.clone(),
            status: MembershipStatus::Frozen.into(),
            start_time: at(1_000),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(frozen.end_time, None, "open-ended");

    // The window is checked against the stored start.
    let status = client
        .update_membership(authorized(
            UpdateMembershipRequest {
                membership: Some(Membership {
                    id: first.id.clone(),
                    end_time: at(500),
                    ..Default::default()
                }),
                update_mask: mask(&["end_time"]),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["membership.end_time"]);
    let updated = client
        .update_membership(authorized(
            UpdateMembershipRequest {
                membership: Some(Membership {
                    id: first.id.clone(),
                    status: MembershipStatus::Suspended.into(),
                    plan: "ignored".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["status"]),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.status, i32::from(MembershipStatus::Suspended));
    assert_eq!(updated.plan, "monthly");
    assert_eq!(
        updated.end_time,
        at(5_000),
        "the refused update changed nothing"
    );
    assert_eq!(updated.version, 2);
    let status = client
        .update_membership(authorized(
            UpdateMembershipRequest {
                membership: Some(Membership {
                    id: first.id.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["status", "user_id"]),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["update_mask", "membership.status"]);

    let list = |request: ListMembershipsRequest| authorized(request, &admin);
    let of_bo = client
        .list_memberships(list(ListMembershipsRequest {
            user_id: bo.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(of_bo.memberships, std::slice::from_ref(&frozen));
    let suspended = client
        .list_memberships(list(ListMembershipsRequest {
            status: MembershipStatus::Suspended.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(suspended.memberships, std::slice::from_ref(&updated));
    let status = client
        .list_memberships(list(ListMembershipsRequest {
            user_id: "bo".into(),
            status: 9,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["user_id", "status"]);
    let page = client
        .list_memberships(list(ListMembershipsRequest {
            page_size: 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.memberships, std::slice::from_ref(&updated));
    let rest = client
        .list_memberships(list(ListMembershipsRequest {
            page_size: 1,
            page_token: page.next_page_token,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.memberships, std::slice::from_ref(&frozen));
    assert!(rest.next_page_token.is_empty());

    client
        .delete_membership(authorized(
            DeleteMembershipRequest {
                id: frozen.id.clone(),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let rows: Vec<_> = audit_rows(&db, "t1")
        .await
        .into_iter()
        .filter(|r| r.1 == "membership")
        .collect();
    assert_eq!(
        rows,
        [
            audited("ADMIN_CREATE", "membership", &first.id),
            audited("ADMIN_CREATE", "membership", &frozen.id),
            audited("ADMIN_UPDATE", "membership", &first.id),
            audited("ADMIN_DELETE", "membership", &frozen.id),
        ]
    );
}

#[tokio::test]
async fn members_are_denied_managers_read_and_only_admins_change_the_directory() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut client = common::directory(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);
    let manager = token("t1", "mgr", &["MANAGER"]);
    let member = token("t1", "mem", &["member"]);
    let home = common::property(&mut client, &admin, "Home", "UTC").await;
    let door = common::door(&mut client, &admin, common::door_spec(&home.id, "Front")).await;
    let user = common::user(&mut client, &admin, "Ana", &[]).await;

    let denied = client
        .list_doors(authorized(ListDoorsRequest::default(), &member))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = client
        .get_user(authorized(
            GetUserRequest {
                id: user.id.clone(),
            },
            &member,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let read = client
        .get_door(authorized(
            GetDoorRequest {
                id: door.id.clone(),
            },
            &manager,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, door);
    let users = client
        .list_users(authorized(ListUsersRequest::default(), &manager))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(users.users, std::slice::from_ref(&user));
    client
        .list_memberships(authorized(ListMembershipsRequest::default(), &manager))
        .await
        .unwrap();

    let create_door = client
        .create_door(authorized(
            CreateDoorRequest {
                door: Some(common::door_spec(&home.id, "Back")),
                request_id: String::new(),
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(create_door.code(), Code::PermissionDenied);
    let update_door = client
        .update_door(authorized(
            UpdateDoorRequest {
                door: Some(Door {
                    id: door.id.clone(),
                    name: "Taken".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                request_id: String::new(),
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(update_door.code(), Code::PermissionDenied);
    let create_user = client
        .create_user(authorized(
            CreateUserRequest {
                user: Some(User {
                    name: "Eve".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(create_user.code(), Code::PermissionDenied);
    let delete_user = client
        .delete_user(authorized(
            DeleteUserRequest {
                id: user.id.clone(),
                request_id: String::new(),
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(delete_user.code(), Code::PermissionDenied);
    let create_membership = client
        .create_membership(authorized(
            CreateMembershipRequest {
                membership: Some(Membership {
                    user_id: user.id.clone(),
                    status: MembershipStatus::Active.into(),
                    start_time: at(0),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(create_membership.code(), Code::PermissionDenied);

    let doors = client
        .list_doors(authorized(ListDoorsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(doors.doors, [door], "refused calls changed nothing");
    let memberships = client
        .list_memberships(authorized(ListMembershipsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(memberships.memberships.is_empty());
    let still = client
        .get_user(authorized(GetUserRequest { id: user.id }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.version, 1);
}

#[tokio::test]
async fn a_tenant_never_reads_changes_or_refers_to_another_tenants_directory() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut client = common::directory(&server).await;
    let alice = token("tenant-a", "adm-a", &["ADMIN"]);
    let bob = token("tenant-b", "adm-b", &["ADMIN"]);

    let home = common::property(&mut client, &alice, "A's home", "UTC").await;
    let door = common::door(&mut client, &alice, common::door_spec(&home.id, "A's door")).await;
    let user = common::user(&mut client, &alice, "A's user", &["member"]).await;
    let membership = client
        .create_membership(authorized(
            CreateMembershipRequest {
                membership: Some(Membership {
                    user_id: user.id.clone(),
                    status: MembershipStatus::Active.into(),
                    start_time: at(0),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    let before = audit_rows(&db, "tenant-a").await;

    let not_found = |status: tonic::Status| assert_eq!(status.code(), Code::NotFound, "{status:?}");
    not_found(
        client
            .get_door(authorized(
                GetDoorRequest {
                    id: door.id.clone(),
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );
    not_found(
        client
            .update_door(authorized(
                UpdateDoorRequest {
                    door: Some(Door {
                        id: door.id.clone(),
                        name: "Mine".into(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["name"]),
                    request_id: String::new(),
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );
    not_found(
        client
            .delete_door(authorized(
                DeleteDoorRequest {
                    id: door.id.clone(),
                    request_id: String::new(),
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );
    not_found(
        client
            .get_user(authorized(
                GetUserRequest {
                    id: user.id.clone(),
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );
    not_found(
        client
            .update_user(authorized(
                UpdateUserRequest {
                    user: Some(User {
                        id: user.id.clone(),
                        roles: vec!["ADMIN".into()],
                        ..Default::default()
                    }),
                    update_mask: mask(&["roles"]),
                    request_id: String::new(),
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );
    not_found(
        client
            .delete_user(authorized(
                DeleteUserRequest {
                    id: user.id.clone(),
                    request_id: String::new(),
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );
    not_found(
        client
            .get_membership(authorized(
                GetMembershipRequest {
                    id: membership.id.clone(),
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );
    not_found(
        client
            .update_membership(authorized(
                UpdateMembershipRequest {
                    membership: Some(Membership {
                        id: membership.id.clone(),
                        status: MembershipStatus::Cancelled.into(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["status"]),
                    request_id: String::new(),
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );
    not_found(
        client
            .delete_membership(authorized(
                DeleteMembershipRequest {
                    id: membership.id.clone(),
                    request_id: String::new(),
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );

    // Another tenant's property and user cannot be referred to.
    let on_their_property = client
        .create_door(authorized(
            CreateDoorRequest {
                door: Some(common::door_spec(&home.id, "Sneaky")),
                request_id: String::new(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(on_their_property.code(), Code::InvalidArgument);
    assert_eq!(fields(&on_their_property), ["door.property_id"]);
    let for_their_user = client
        .create_membership(authorized(
            CreateMembershipRequest {
                membership: Some(Membership {
                    user_id: user.id.clone(),
                    status: MembershipStatus::Active.into(),
                    start_time: at(0),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&for_their_user), ["membership.user_id"]);

    let doors = client
        .list_doors(authorized(
            ListDoorsRequest {
                property_id: home.id.clone(),
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(doors.doors.is_empty());
    let users = client
        .list_users(authorized(ListUsersRequest::default(), &bob))
        .await
        .unwrap()
        .into_inner();
    assert!(users.users.is_empty());
    let memberships = client
        .list_memberships(authorized(
            ListMembershipsRequest {
                user_id: user.id.clone(),
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(memberships.memberships.is_empty());

    let door_now = client
        .get_door(authorized(
            GetDoorRequest {
                id: door.id.clone(),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(door_now, door);
    let user_now = client
        .get_user(authorized(
            GetUserRequest {
                id: user.id.clone(),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user_now, user);
    let membership_now = client
        .get_membership(authorized(
            GetMembershipRequest {
                id: membership.id.clone(),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(membership_now, membership);
    assert_eq!(audit_rows(&db, "tenant-a").await, before);
    assert!(audit_rows(&db, "tenant-b").await.is_empty());
}
