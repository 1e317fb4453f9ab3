//! `evaluate` on a door with 1,000 rules, most of them naming other users and roles.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use access_service::decision::{
    DoorKind, DoorRules, DoorView, EvalInput, MembershipState, MembershipView, RuleView, Slot,
    UserView, evaluate,
};
use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use uuid::Uuid;

const RULES: u128 = 1_000;
const ROLES: u128 = 40;

fn slot(day: i32, start: &str, end: &str) -> Slot {
    Slot::parse(day, start, end).unwrap()
}

fn rule(i: u128, users: Vec<Uuid>, roles: Vec<String>, slots: Vec<Slot>) -> RuleView {
    RuleView {
        id: Uuid::from_u128(i),
        name: format!("rule {i}"),
        version: 1,
        active: true,
        user_ids: users,
        roles,
        slots,
        valid_from: None,
        valid_until: Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()),
    }
}

/// Six user-specific rules in ten (three users each), the rest role rules spread over
/// 40 roles; slots vary between business hours, evenings, an overnight slot and none.
fn door_rules(granted: Uuid, denied: Uuid) -> DoorRules {
    let mut rules: Vec<RuleView> = (0..RULES)
        .map(|i| {
            let slots = match i % 4 {
                0 => (1..=5).map(|d| slot(d, "09:00", "18:00")).collect(),
                1 => (1..=5).map(|d| slot(d, "18:00", "22:00")).collect(),
                2 => vec![slot(5, "22:00", "06:00"), slot(6, "10:00", "14:00")],
                _ => Vec::new(),
            };
            if i % 10 < 6 {
                let users = (0..3).map(|k| Uuid::from_u128(1_000_000 + i * 3 + k));
                rule(i, users.collect(), Vec::new(), slots)
            } else {
                rule(i, Vec::new(), vec![format!("role-{}", i % ROLES)], slots)
            }
        })
        .collect();
    // The granted user is named by a morning rule (not covering the evening) and holds
    // a role whose evening rule admits; the denied user is named by rules that do not
    // cover Monday 23:00.
    rules.push(rule(
        RULES,
        vec![granted, denied],
        Vec::new(),
        (1..=5).map(|d| slot(d, "06:00", "09:00")).collect(),
    ));
    rules.push(rule(
        RULES + 1,
        vec![denied],
        Vec::new(),
        vec![slot(6, "10:00", "14:00")],
    ));
    rules.push(rule(
        RULES + 2,
        Vec::new(),
        vec!["evening".to_owned()],
        (1..=5).map(|d| slot(d, "18:00", "23:30")).collect(),
    ));
    DoorRules::build(rules)
}

fn bench(c: &mut Criterion) {
    let granted = Uuid::from_u128(1);
    let denied = Uuid::from_u128(2);
    let rules = door_rules(granted, denied);
    let door = DoorView {
        id: Uuid::from_u128(3),
        active: true,
        kind: DoorKind::Facility,
        tz: chrono_tz::Europe::Madrid,
    };
    let roles = |names: &[&str]| names.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>();
    let granted_user = UserView {
        id: granted,
        active: true,
        roles: roles(&["role-6", "role-17", "evening"]),
    };
    let denied_user = UserView {
        id: denied,
        active: true,
        roles: roles(&["role-8", "role-9"]),
    };
    let stranger = UserView {
        id: Uuid::from_u128(4),
        active: true,
        roles: roles(&["visitor"]),
    };
    let memberships = [MembershipView {
        status: MembershipState::Active,
        start: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        end: Some(Utc.with_ymd_and_hms(2026, 12, 31, 0, 0, 0).unwrap()),
    }];
    // Monday 2026-03-23 23:00 in Madrid.
    let at = Utc.with_ymd_and_hms(2026, 3, 23, 22, 0, 0).unwrap();
    let input = |user, explain| EvalInput {
        tenant_enabled: true,
        door: Some(&door),
        user: Some(user),
        memberships: &memberships,
        rules: &rules,
        at,
        explain,
    };

    let outcome = evaluate(&input(&granted_user, false));
    assert!(outcome.granted, "{outcome:?}");
    let outcome = evaluate(&input(&denied_user, false));
    assert_eq!(outcome.reason.as_str(), "OUTSIDE_TIME_SLOT", "{outcome:?}");
    let outcome = evaluate(&input(&stranger, false));
    assert_eq!(outcome.reason.as_str(), "NO_MATCHING_RULE", "{outcome:?}");

    let mut group = c.benchmark_group("evaluate_1000_rules");
    group.bench_function("granted", |b| {
        b.iter(|| evaluate(black_box(&input(&granted_user, false))))
    });
    group.bench_function("granted_explain", |b| {
        b.iter(|| evaluate(black_box(&input(&granted_user, true))))
    });
    group.bench_function("denied_outside_time_slot", |b| {
        b.iter(|| evaluate(black_box(&input(&denied_user, false))))
    });
    group.bench_function("denied_no_matching_rule", |b| {
        b.iter(|| evaluate(black_box(&input(&stranger, false))))
    });
    group.finish();

    c.bench_function("door_rules_build_1000", |b| {
        b.iter(|| door_rules(black_box(granted), black_box(denied)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
