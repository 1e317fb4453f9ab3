//! RuleService: validation naming each field, the stored slot shape, versions and
//! optimistic concurrency, user grants, pagination, roles, audit rows and tenant
//! isolation.

#![allow(clippy::unwrap_used)]

mod common;

use common::{audit_rows, audited, fields, mask, reason};
use latchkey::pb::access::v1::rule_service_client::RuleServiceClient;
use latchkey::pb::access::v1::{
    AddRuleUsersRequest, CreateRuleRequest, DeleteRuleRequest, GetRuleRequest, ListRulesRequest,
    RemoveRuleUsersRequest, Rule, TimeSlot, ToggleRuleRequest, UpdateRuleRequest,
};
use latchkey::testkit::{authorized, token};
use prost_types::Timestamp;
use tonic::Code;
use tonic::transport::Channel;

fn slot(day: i32, start: &str, end: &str) -> TimeSlot {
    TimeSlot {
        day_of_week: day,
        start: start.into(),
        end: end.into(),
    }
}

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn rule(door_id: &str, name: &str) -> Rule {
    Rule {
        door_id: door_id.into(),
        name: name.into(),
        active: true,
        ..Default::default()
    }
}

async fn create(client: &mut RuleServiceClient<Channel>, token: &str, rule: Rule) -> Rule {
    client
        .create_rule(authorized(
            CreateRuleRequest {
                rule: Some(rule),
                request_id: String::new(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn list_all(client: &mut RuleServiceClient<Channel>, token: &str) -> Vec<Rule> {
    client
        .list_rules(authorized(ListRulesRequest::default(), token))
        .await
        .unwrap()
        .into_inner()
        .rules
}

#[tokio::test]
async fn invalid_rules_name_every_field_and_store_nothing() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut directory = common::directory(&server).await;
    let mut client = common::rules(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);
    let home = common::property(&mut directory, &admin, "Gym", "Europe/Madrid").await;
    let door = common::door(&mut directory, &admin, common::door_spec(&home.id, "Entry")).await;
    let ana = common::user(&mut directory, &admin, "Ana", &["member"]).await;
    let before = audit_rows(&db, "t1").await;

    let bad = Rule {
        door_id: "door".into(),
        name: "   ".into(),
        description: "d".repeat(2001),
        user_ids: vec!["ana".into()],
        roles: vec!["bad role".into()],
        time_slots: vec![
            slot(7, "09:00", "10:00"),
            slot(1, "24:00", "25:00"),
            slot(1, "09:00", "09:00"),
            slot(5, "22:00", "06:00"),
        ],
        valid_from: at(2_000),
        valid_until: at(1_000),
        ..Default::default()
    };
    let cases: Vec<(Rule, Vec<&str>)> = vec![
        (
            bad,
            vec![
                "rule.door_id",
                "rule.name",
                "rule.description",
                "rule.user_ids[0]",
                "rule.roles[0]",
                "rule.time_slots[0].day_of_week",
                "rule.time_slots[1].start",
                "rule.time_slots[1].end",
                "rule.time_slots[2].end",
                "rule.valid_until",
            ],
        ),
        (
            Rule {
                name: "n".repeat(201),
                ..rule(&door.id, "")
            },
            vec!["rule.name"],
        ),
        (
            Rule {
                time_slots: (0..65).map(|i| slot(i % 7, "08:00", "09:00")).collect(),
                ..rule(&door.id, "Too many slots")
            },
            vec!["rule.time_slots"],
        ),
        (
            Rule {
                roles: (0..101).map(|i| format!("r{i}")).collect(),
                ..rule(&door.id, "Too many roles")
            },
            vec!["rule.roles"],
        ),
        (
            Rule {
                user_ids: (0..10_001).map(|_| ana.id.clone()).collect(),
                ..rule(&door.id, "Too many users")
            },
            vec!["rule.user_ids"],
        ),
        (
            Rule {
                description: "nul\0".into(),
                ..rule(&door.id, "Nul\0")
            },
            vec!["rule.name", "rule.description"],
        ),
        (
            Rule {
                valid_from: at(1_000),
                valid_until: at(1_000),
                ..rule(&door.id, "Empty window")
            },
            vec!["rule.valid_until"],
        ),
        // Ids that parse but name nothing of this tenant.
        (
            rule(&uuid::Uuid::now_v7().to_string(), "No such door"),
            vec!["rule.door_id"],
        ),
        (
            Rule {
                user_ids: vec![ana.id.clone(), uuid::Uuid::now_v7().to_string()],
                ..rule(&door.id, "No such user")
            },
            vec!["rule.user_ids[1]"],
        ),
    ];
    for (rule, expected) in cases {
        let status = client
            .create_rule(authorized(
                CreateRuleRequest {
                    rule: Some(rule),
                    request_id: String::new(),
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{expected:?}");
        assert_eq!(fields(&status), expected);
    }
    let status = client
        .create_rule(authorized(CreateRuleRequest::default(), &admin))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["rule"]);
    let status = client
        .list_rules(authorized(
            ListRulesRequest {
                page_size: -1,
                page_token: "forged".into(),
                door_id: "door".into(),
                active: "1".into(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        fields(&status),
        ["page_size", "page_token", "door_id", "active"]
    );
    for id in ["", "42"] {
        let status = client
            .get_rule(authorized(GetRuleRequest { id: id.into() }, &admin))
            .await
            .unwrap_err();
        assert_eq!(fields(&status), ["id"]);
        let status = client
            .toggle_rule(authorized(
                ToggleRuleRequest {
                    id: id.into(),
                    active: false,
                    request_id: String::new(),
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(fields(&status), ["id"]);
        let status = client
            .delete_rule(authorized(
                DeleteRuleRequest {
                    id: id.into(),
                    request_id: String::new(),
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(fields(&status), ["id"]);
    }
    assert!(list_all(&mut client, &admin).await.is_empty());
    assert_eq!(audit_rows(&db, "t1").await, before, "nothing was recorded");

    // A valid rule, then bad changes to it, each refused whole.
    let overnight = create(
        &mut client,
        &admin,
        Rule {
            time_slots: vec![slot(5, "22:00", "06:00"), slot(6, "00:00", "24:00")],
            user_ids: vec![ana.id.clone()],
            ..rule(&door.id, "Night shift")
        },
    )
    .await;
    let stored_shape: bool = db
        .client()
        .await
        .query_one(
            "SELECT time_slots = '[{\"day_of_week\":5,\"start\":\"22:00\",\"end\":\"06:00\"},\
             {\"day_of_week\":6,\"start\":\"00:00\",\"end\":\"24:00\"}]'::jsonb \
             FROM access.rules WHERE id = $1::text::uuid",
            &[&overnight.id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        stored_shape,
        "slots are stored in the shape evaluation reads"
    );
    assert_eq!(overnight.time_slots[0], slot(5, "22:00", "06:00"));

    let update = |rule: Rule, paths: &[&str]| {
        authorized(
            UpdateRuleRequest {
                rule: Some(rule),
                update_mask: mask(paths),
                request_id: String::new(),
                expected_version: 0,
            },
            &admin,
        )
    };
    let cases: Vec<(Rule, Vec<&str>, Vec<&str>)> = vec![
        (
            Rule::default(),
            vec!["name", "door_id"],
            vec!["update_mask", "rule.name"],
        ),
        (
            Rule {
                time_slots: vec![slot(3, "10:00", "10:00")],
                ..Default::default()
            },
            vec!["time_slots"],
            vec!["rule.time_slots[0].end"],
        ),
        (
            Rule {
                user_ids: vec![uuid::Uuid::now_v7().to_string()],
                ..Default::default()
            },
            vec!["user_ids"],
            vec!["rule.user_ids[0]"],
        ),
    ];
    for (change, paths, expected) in cases {
        let status = client
            .update_rule(update(
                Rule {
                    id: overnight.id.clone(),
                    ..change
                },
                &paths,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(fields(&status), expected);
    }
    // valid_until before the stored valid_from: judged as merged.
    client
        .update_rule(update(
            Rule {
                id: overnight.id.clone(),
                valid_from: at(5_000),
                ..Default::default()
            },
            &["valid_from"],
        ))
        .await
        .unwrap();
    let status = client
        .update_rule(update(
            Rule {
                id: overnight.id.clone(),
                valid_until: at(4_000),
                ..Default::default()
            },
            &["valid_until"],
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["rule.valid_until"]);
    let status = client
        .add_rule_users(authorized(
            AddRuleUsersRequest {
                id: overnight.id.clone(),
                user_ids: vec![ana.id.clone(), "nobody".into()],
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["user_ids[1]"]);
    let status = client
        .remove_rule_users(authorized(
            RemoveRuleUsersRequest {
                id: overnight.id.clone(),
                user_ids: vec![],
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["user_ids"]);

    let now = client
        .get_rule(authorized(
            GetRuleRequest {
                id: overnight.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.version, 2, "only the one valid update counted");
    assert_eq!(now.name, "Night shift");
    assert_eq!(now.time_slots, overnight.time_slots);
    assert_eq!(now.user_ids, std::slice::from_ref(&ana.id));
    assert_eq!(now.valid_from, at(5_000));
    assert_eq!(now.valid_until, None);
}

#[tokio::test]
async fn every_change_raises_the_version_by_one_and_is_audited() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut directory = common::directory(&server).await;
    let mut client = common::rules(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);
    let home = common::property(&mut directory, &admin, "Gym", "UTC").await;
    let door = common::door(&mut directory, &admin, common::door_spec(&home.id, "Entry")).await;
    let ana = common::user(&mut directory, &admin, "Ana", &[]).await;
    let bo = common::user(&mut directory, &admin, "Bo", &[]).await;
    let cy = common::user(&mut directory, &admin, "Cy", &[]).await;

    let request = CreateRuleRequest {
        rule: Some(Rule {
            description: "Weekday mornings".into(),
            roles: vec!["staff".into()],
            user_ids: vec![ana.id.clone(), ana.id.clone()],
            time_slots: vec![slot(1, "07:00", "12:00")],
            valid_from: at(1_000),
            valid_until: at(9_000_000_000),
            ..rule(&door.id, "Mornings")
        }),
        request_id: "rule-1".into(),
    };
    let created = client
        .create_rule(authorized(request.clone(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.version, 1);
    assert_eq!(
        created.user_ids,
        std::slice::from_ref(&ana.id),
        "repeats are granted once"
    );
    assert_eq!(created.roles, ["staff"]);
    assert_eq!(created.valid_until, at(9_000_000_000));
    let retried = client
        .create_rule(authorized(request, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        retried, created,
        "the same request id returns the first rule"
    );

    let versioned = |version: i64, paths: &[&str], change: Rule| {
        authorized(
            UpdateRuleRequest {
                rule: Some(Rule {
                    id: created.id.clone(),
                    ..change
                }),
                update_mask: mask(paths),
                request_id: String::new(),
                expected_version: version,
            },
            &admin,
        )
    };
    let renamed = client
        .update_rule(versioned(
            1,
            &["name"],
            Rule {
                name: "Early birds".into(),
                description: "ignored".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.version, 2);
    assert_eq!(renamed.name, "Early birds");
    assert_eq!(renamed.description, "Weekday mornings", "outside the mask");
    let stale = client
        .update_rule(versioned(
            1,
            &["name"],
            Rule {
                name: "Lost update".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert_eq!(reason(&stale), "VERSION_MISMATCH");

    let toggled = client
        .toggle_rule(authorized(
            ToggleRuleRequest {
                id: created.id.clone(),
                active: false,
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!toggled.active);
    assert_eq!(toggled.version, 3);
    let added = client
        .add_rule_users(authorized(
            AddRuleUsersRequest {
                id: created.id.clone(),
                user_ids: vec![bo.id.clone(), cy.id.clone(), ana.id.clone()],
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        added.user_ids,
        [ana.id.clone(), bo.id.clone(), cy.id.clone()]
    );
    assert_eq!(added.version, 4);
    let removed = client
        .remove_rule_users(authorized(
            RemoveRuleUsersRequest {
                id: created.id.clone(),
                user_ids: vec![ana.id.clone()],
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.user_ids, [bo.id.clone(), cy.id.clone()]);
    assert_eq!(removed.version, 5);
    let replaced = client
        .update_rule(versioned(
            5,
            &["user_ids", "time_slots", "active", "valid_until"],
            Rule {
                user_ids: vec![cy.id.clone()],
                time_slots: vec![slot(0, "18:00", "02:00")],
                active: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replaced.version, 6);
    assert_eq!(replaced.user_ids, std::slice::from_ref(&cy.id));
    assert_eq!(replaced.time_slots, [slot(0, "18:00", "02:00")]);
    assert!(replaced.active);
    assert_eq!(replaced.valid_until, None, "cleared through the mask");
    assert_eq!(replaced.valid_from, at(1_000));
    assert_eq!(replaced.name, "Early birds");

    client
        .delete_rule(authorized(
            DeleteRuleRequest {
                id: created.id.clone(),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let gone = client
        .get_rule(authorized(
            GetRuleRequest {
                id: created.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let grants: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM access.rule_users WHERE rule_id = $1::text::uuid",
            &[&created.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(grants, 0, "grants go with the rule");

    let rule_rows: Vec<_> = audit_rows(&db, "t1")
        .await
        .into_iter()
        .filter(|r| r.1 == "rule")
        .collect();
    let id = created.id.as_str();
    assert_eq!(
        rule_rows,
        [
            audited("ADMIN_CREATE", "rule", id),
            audited("ADMIN_UPDATE", "rule", id),
            audited("ADMIN_UPDATE", "rule", id),
            audited("ADMIN_UPDATE", "rule", id),
            audited("ADMIN_UPDATE", "rule", id),
            audited("ADMIN_UPDATE", "rule", id),
            audited("ADMIN_DELETE", "rule", id),
        ]
    );
}

#[tokio::test]
async fn rules_list_by_door_and_state_in_complete_pages() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut directory = common::directory(&server).await;
    let mut client = common::rules(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);
    let home = common::property(&mut directory, &admin, "Office", "UTC").await;
    let front = common::door(&mut directory, &admin, common::door_spec(&home.id, "Front")).await;
    let back = common::door(&mut directory, &admin, common::door_spec(&home.id, "Back")).await;
    let user = common::user(&mut directory, &admin, "Ana", &[]).await;

    let mut expected = Vec::new();
    for i in 0..7 {
        let door = if i % 2 == 0 { &front } else { &back };
        let created = create(
            &mut client,
            &admin,
            Rule {
                active: i != 3,
                user_ids: vec![user.id.clone()],
                ..rule(&door.id, &format!("Rule {i}"))
            },
        )
        .await;
        expected.push(created);
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_rules(authorized(
                ListRulesRequest {
                    page_size: 3,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.rules.len() <= 3);
        seen.extend(page.rules);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, expected, "every rule once, in order, with its users");

    let names = |rules: Vec<Rule>| rules.into_iter().map(|r| r.name).collect::<Vec<_>>();
    let at_back = client
        .list_rules(authorized(
            ListRulesRequest {
                door_id: back.id.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(at_back.rules), ["Rule 1", "Rule 3", "Rule 5"]);
    let inactive_at_back = client
        .list_rules(authorized(
            ListRulesRequest {
                door_id: back.id.clone(),
                active: "false".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(inactive_at_back.rules), ["Rule 3"]);
    let active = client
        .list_rules(authorized(
            ListRulesRequest {
                active: "true".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active.rules.len(), 6);
}

#[tokio::test]
async fn managers_manage_rules_and_members_may_not() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut directory = common::directory(&server).await;
    let mut client = common::rules(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);
    let manager = token("t1", "mgr", &["MANAGER"]);
    let member = token("t1", "mem", &["member"]);
    let home = common::property(&mut directory, &admin, "Office", "UTC").await;
    let door = common::door(&mut directory, &admin, common::door_spec(&home.id, "Front")).await;
    let user = common::user(&mut directory, &admin, "Ana", &[]).await;

    let by_manager = create(&mut client, &manager, rule(&door.id, "Managed")).await;
    let added = client
        .add_rule_users(authorized(
            AddRuleUsersRequest {
                id: by_manager.id.clone(),
                user_ids: vec![user.id.clone()],
                request_id: String::new(),
            },
            &manager,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.version, 2);
    let toggled = client
        .toggle_rule(authorized(
            ToggleRuleRequest {
                id: by_manager.id.clone(),
                active: false,
                request_id: String::new(),
            },
            &manager,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(toggled.version, 3);
    assert_eq!(
        list_all(&mut client, &manager).await,
        std::slice::from_ref(&toggled)
    );

    let denied = client
        .create_rule(authorized(
            CreateRuleRequest {
                rule: Some(rule(&door.id, "By a member")),
                request_id: String::new(),
            },
            &member,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(reason(&denied), "ROLE_NOT_ALLOWED");
    let denied = client
        .list_rules(authorized(ListRulesRequest::default(), &member))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = client
        .delete_rule(authorized(
            DeleteRuleRequest {
                id: by_manager.id.clone(),
                request_id: String::new(),
            },
            &member,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let by_admin = create(&mut client, &admin, rule(&door.id, "Administered")).await;
    assert_eq!(
        list_all(&mut client, &admin).await,
        [toggled, by_admin],
        "the member's calls stored nothing"
    );
    let actors: Vec<String> = db
        .client()
        .await
        .query(
            "SELECT actor FROM access.audit_log WHERE target_type = 'rule' ORDER BY sequence",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(actors, ["mgr", "mgr", "mgr", "adm"]);
}

#[tokio::test]
async fn a_tenant_never_reads_changes_or_attaches_rules_to_another_tenants_data() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut directory = common::directory(&server).await;
    let mut client = common::rules(&server).await;
    let alice = token("tenant-a", "adm-a", &["ADMIN"]);
    let bob = token("tenant-b", "mgr-b", &["MANAGER", "ADMIN"]);

    let a_home = common::property(&mut directory, &alice, "A", "UTC").await;
    let a_door = common::door(&mut directory, &alice, common::door_spec(&a_home.id, "A")).await;
    let a_user = common::user(&mut directory, &alice, "A user", &[]).await;
    let a_rule = create(
        &mut client,
        &alice,
        Rule {
            user_ids: vec![a_user.id.clone()],
            ..rule(&a_door.id, "A's rule")
        },
    )
    .await;
    let b_home = common::property(&mut directory, &bob, "B", "UTC").await;
    let b_door = common::door(&mut directory, &bob, common::door_spec(&b_home.id, "B")).await;
    let b_rule = create(&mut client, &bob, rule(&b_door.id, "B's rule")).await;
    let a_audit = audit_rows(&db, "tenant-a").await;

    let not_found = |status: tonic::Status| assert_eq!(status.code(), Code::NotFound, "{status:?}");
    not_found(
        client
            .get_rule(authorized(
                GetRuleRequest {
                    id: a_rule.id.clone(),
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );
    not_found(
        client
            .update_rule(authorized(
                UpdateRuleRequest {
                    rule: Some(Rule {
                        id: a_rule.id.clone(),
                        name: "Mine".into(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["name"]),
                    request_id: String::new(),
                    expected_version: 0,
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );
    not_found(
        client
            .toggle_rule(authorized(
                ToggleRuleRequest {
                    id: a_rule.id.clone(),
                    active: false,
                    request_id: String::new(),
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );
    not_found(
        client
            .remove_rule_users(authorized(
                RemoveRuleUsersRequest {
                    id: a_rule.id.clone(),
                    user_ids: vec![a_user.id.clone()],
                    request_id: String::new(),
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );
    not_found(
        client
            .delete_rule(authorized(
                DeleteRuleRequest {
                    id: a_rule.id.clone(),
                    request_id: String::new(),
                },
                &bob,
            ))
            .await
            .unwrap_err(),
    );

    // Another tenant's door and users cannot be named in a rule.
    let status = client
        .create_rule(authorized(
            CreateRuleRequest {
                rule: Some(rule(&a_door.id, "On A's door")),
                request_id: String::new(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields(&status), ["rule.door_id"]);
    let status = client
        .create_rule(authorized(
            CreateRuleRequest {
                rule: Some(Rule {
                    user_ids: vec![a_user.id.clone()],
                    ..rule(&b_door.id, "With A's user")
                }),
                request_id: String::new(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["rule.user_ids[0]"]);
    let status = client
        .add_rule_users(authorized(
            AddRuleUsersRequest {
                id: b_rule.id.clone(),
                user_ids: vec![a_user.id.clone()],
                request_id: String::new(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["user_ids[0]"]);
    let status = client
        .update_rule(authorized(
            UpdateRuleRequest {
                rule: Some(Rule {
                    id: b_rule.id.clone(),
                    user_ids: vec![a_user.id.clone()],
                    ..Default::default()
                }),
                update_mask: mask(&["user_ids"]),
                request_id: String::new(),
                expected_version: 0,
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["rule.user_ids[0]"]);

    let listed = client
        .list_rules(authorized(
            ListRulesRequest {
                door_id: a_door.id.clone(),
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.rules.is_empty());
    assert_eq!(list_all(&mut client, &bob).await, [b_rule]);

    let a_now = client
        .get_rule(authorized(
            GetRuleRequest {
                id: a_rule.id.clone(),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a_now, a_rule, "A's rule is unchanged");
    assert_eq!(audit_rows(&db, "tenant-a").await, a_audit);
}
