#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use latchkey::pb::access::v1::ReasonCode;
use uuid::Uuid;

use super::*;

const MADRID: Tz = chrono_tz::Europe::Madrid;
const NEW_YORK: Tz = chrono_tz::America::New_York;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// A wall-clock time in `tz` that exists exactly once.
fn local(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

fn slot(day: i32, start: &str, end: &str) -> Slot {
    Slot::parse(day, start, end).unwrap()
}

fn weekdays(start: &str, end: &str) -> Vec<Slot> {
    (1..=5).map(|d| slot(d, start, end)).collect()
}

fn rule(name: &str, users: &[Uuid], roles: &[&str], slots: Vec<Slot>) -> RuleView {
    RuleView {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        version: 1,
        active: true,
        user_ids: users.to_vec(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        slots,
        valid_from: None,
        valid_until: None,
    }
}

struct Fixture {
    tenant_enabled: bool,
    door: Option<DoorView>,
    user: Option<UserView>,
    memberships: Vec<MembershipView>,
    rules: DoorRules,
}

impl Fixture {
    /// An active ROOM door in `tz` (no membership needed) and an active user.
    fn new(tz: Tz, roles: &[&str], rules: impl FnOnce(Uuid) -> Vec<RuleView>) -> Fixture {
        let user = UserView {
            id: Uuid::new_v4(),
            active: true,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        };
        Fixture {
            tenant_enabled: true,
            door: Some(DoorView {
                id: Uuid::new_v4(),
                active: true,
                kind: DoorKind::Room,
                tz,
            }),
            rules: DoorRules::build(rules(user.id)),
            user: Some(user),
            memberships: Vec::new(),
        }
    }

    fn kind(mut self, kind: DoorKind) -> Fixture {
        if let Some(door) = self.door.as_mut() {
            door.kind = kind;
        }
        self
    }

    fn at(&self, at: DateTime<Utc>) -> Outcome {
        self.eval(at, false)
    }

    fn eval(&self, at: DateTime<Utc>, explain: bool) -> Outcome {
        let outcome = evaluate(&EvalInput {
            tenant_enabled: self.tenant_enabled,
            door: self.door.as_ref(),
            user: self.user.as_ref(),
            memberships: &self.memberships,
            rules: &self.rules,
            at,
            explain,
        });
        // Whatever the answer, the last step tells it.
        assert_eq!(
            outcome.steps.last().map(|s| s.passed),
            Some(outcome.granted),
            "{outcome:?}"
        );
        outcome
    }
}

#[track_caller]
fn assert_granted(
    outcome: &Outcome,
    rule: &str,
    kind: AccessKind,
    valid_until: Option<DateTime<Utc>>,
) {
    assert!(outcome.granted, "{outcome:?}");
    assert_eq!(outcome.reason, Reason::Granted);
    assert_eq!(outcome.rule.as_ref().map(|r| r.name.as_str()), Some(rule));
    assert_eq!(outcome.access_type, Some(kind));
    assert_eq!(outcome.valid_until, valid_until, "{outcome:?}");
}

#[track_caller]
fn assert_denied(outcome: &Outcome, reason: Reason, valid_until: Option<DateTime<Utc>>) {
    assert!(!outcome.granted, "{outcome:?}");
    assert_eq!(outcome.reason, reason, "{outcome:?}");
    assert_eq!(outcome.rule, None);
    assert_eq!(outcome.access_type, None);
    assert_eq!(outcome.valid_until, valid_until, "{outcome:?}");
}

// 2026-01-05 is a Monday; Madrid is on UTC+1 in January.

#[test]
fn weekday_business_hours() {
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule("office", &[u], &[], weekdays("09:00", "18:00"))]
    });
    let us = AccessKind::UserSpecific;
    assert_granted(
        &f.at(local(MADRID, 2026, 1, 5, 10, 0)),
        "office",
        us,
        Some(utc(2026, 1, 5, 17, 0)),
    );
    assert_granted(
        &f.at(local(MADRID, 2026, 1, 9, 17, 59)),
        "office",
        us,
        Some(utc(2026, 1, 9, 17, 0)),
    );
    // Before opening: until 09:00 the same day.
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 5, 8, 59)),
        Reason::OutsideTimeSlot,
        Some(utc(2026, 1, 5, 8, 0)),
    );
    // At closing (end is exclusive): until Tuesday 09:00.
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 5, 18, 0)),
        Reason::OutsideTimeSlot,
        Some(utc(2026, 1, 6, 8, 0)),
    );
    // Saturday: until Monday 09:00.
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 10, 12, 0)),
        Reason::OutsideTimeSlot,
        Some(utc(2026, 1, 12, 8, 0)),
    );
}

#[test]
fn weekend_only() {
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule(
            "weekend",
            &[u],
            &[],
            vec![slot(6, "00:00", "24:00"), slot(0, "00:00", "24:00")],
        )]
    });
    // Saturday and Sunday form one stretch: it ends at Monday 00:00 local.
    assert_granted(
        &f.at(local(MADRID, 2026, 1, 10, 10, 0)),
        "weekend",
        AccessKind::UserSpecific,
        Some(utc(2026, 1, 11, 23, 0)),
    );
    assert_granted(
        &f.at(local(MADRID, 2026, 1, 11, 23, 59)),
        "weekend",
        AccessKind::UserSpecific,
        Some(utc(2026, 1, 11, 23, 0)),
    );
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 7, 10, 0)),
        Reason::OutsideTimeSlot,
        Some(utc(2026, 1, 9, 23, 0)),
    );
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 12, 0, 0)),
        Reason::OutsideTimeSlot,
        Some(utc(2026, 1, 16, 23, 0)),
    );
}

#[test]
fn rule_without_slots_admits_at_any_time() {
    let f = Fixture::new(MADRID, &[], |u| vec![rule("24/7", &[u], &[], vec![])]);
    for at in [utc(2026, 1, 4, 0, 0), utc(2026, 7, 15, 13, 37)] {
        assert_granted(&f.at(at), "24/7", AccessKind::UserSpecific, None);
    }
}

#[test]
fn slots_covering_the_whole_week_never_end() {
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule(
            "always",
            &[u],
            &[],
            (0..7).map(|d| slot(d, "00:00", "24:00")).collect(),
        )]
    });
    assert_granted(
        &f.at(utc(2026, 3, 29, 1, 30)),
        "always",
        AccessKind::UserSpecific,
        None,
    );
}

#[test]
fn role_based_staff_access() {
    let f = Fixture::new(MADRID, &["member", "staff"], |_| {
        vec![
            rule("cleaners", &[], &["cleaner"], vec![]),
            rule("staff", &[], &["staff"], weekdays("07:00", "22:00")),
        ]
    });
    assert_granted(
        &f.at(local(MADRID, 2026, 1, 6, 7, 0)),
        "staff",
        AccessKind::RoleBased,
        Some(utc(2026, 1, 6, 21, 0)),
    );
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 6, 22, 0)),
        Reason::OutsideTimeSlot,
        Some(utc(2026, 1, 7, 6, 0)),
    );
}

#[test]
fn user_specific_grant_wins_over_role_grant() {
    let f = Fixture::new(MADRID, &["staff"], |u| {
        // The role rule comes first: precedence is by kind, not by order.
        vec![
            rule("staff", &[], &["staff"], vec![]),
            rule("alice evenings", &[u], &[], weekdays("18:00", "23:00")),
        ]
    });
    assert_granted(
        &f.at(local(MADRID, 2026, 1, 6, 19, 0)),
        "alice evenings",
        AccessKind::UserSpecific,
        Some(utc(2026, 1, 6, 22, 0)),
    );
    // Outside the user's own slot the role grant still admits.
    assert_granted(
        &f.at(local(MADRID, 2026, 1, 6, 12, 0)),
        "staff",
        AccessKind::RoleBased,
        None,
    );
}

#[test]
fn no_matching_rule() {
    let f = Fixture::new(MADRID, &["member"], |u| {
        let mut inactive = rule("retired", &[u], &["member"], vec![]);
        inactive.active = false;
        vec![
            rule("others", &[Uuid::new_v4()], &["staff"], vec![]),
            inactive,
        ]
    });
    assert_eq!(f.rules.len(), 1);
    assert_eq!(f.rules.inactive(), 1);
    let outcome = f.at(utc(2026, 1, 6, 12, 0));
    assert_denied(&outcome, Reason::NoMatchingRule, None);
    assert_eq!(outcome.steps.last().map(|s| s.check), Some(CHECK_RULES));
}

#[test]
fn membership_gates_facility_doors_only() {
    let at = utc(2026, 2, 10, 12, 0);
    let membership = |status, start, end| MembershipView { status, start, end };
    let mut f = Fixture::new(MADRID, &["member"], |_| {
        vec![rule("members", &[], &["member"], vec![])]
    })
    .kind(DoorKind::Facility);

    assert_denied(&f.at(at), Reason::NoMembership, None);

    f.memberships = vec![membership(
        MembershipState::Active,
        utc(2025, 1, 1, 0, 0),
        Some(utc(2026, 1, 1, 0, 0)),
    )];
    assert_denied(&f.at(at), Reason::MembershipExpired, None);
    // The end is exclusive.
    assert_denied(
        &f.at(utc(2026, 1, 1, 0, 0)),
        Reason::MembershipExpired,
        None,
    );

    // A renewal not started yet is the more useful reason, and its start is when the
    // answer could change.
    f.memberships.push(membership(
        MembershipState::Active,
        utc(2026, 3, 1, 0, 0),
        None,
    ));
    assert_denied(
        &f.at(at),
        Reason::MembershipNotStarted,
        Some(utc(2026, 3, 1, 0, 0)),
    );

    // Frozen covering now is the most specific of all.
    f.memberships.push(membership(
        MembershipState::Frozen,
        utc(2026, 2, 1, 0, 0),
        Some(utc(2026, 3, 1, 0, 0)),
    ));
    let outcome = f.at(at);
    assert_denied(
        &outcome,
        Reason::MembershipFrozen,
        Some(utc(2026, 3, 1, 0, 0)),
    );
    assert_eq!(
        outcome.steps.last().map(|s| s.check),
        Some(CHECK_MEMBERSHIP)
    );

    // Suspended and cancelled memberships that ended are no reason at all.
    f.memberships = vec![
        membership(
            MembershipState::Suspended,
            utc(2025, 1, 1, 0, 0),
            Some(utc(2025, 6, 1, 0, 0)),
        ),
        membership(MembershipState::Cancelled, utc(2026, 2, 1, 0, 0), None),
    ];
    assert_denied(&f.at(at), Reason::MembershipCancelled, None);
    f.memberships.push(membership(
        MembershipState::Suspended,
        utc(2026, 2, 1, 0, 0),
        None,
    ));
    assert_denied(&f.at(at), Reason::MembershipSuspended, None);

    // An active membership admits and its end bounds the grant.
    f.memberships.push(membership(
        MembershipState::Active,
        utc(2026, 2, 1, 0, 0),
        Some(utc(2026, 2, 28, 0, 0)),
    ));
    assert_granted(
        &f.at(at),
        "members",
        AccessKind::RoleBased,
        Some(utc(2026, 2, 28, 0, 0)),
    );

    // The same user without any membership at a room door.
    f.memberships.clear();
    let f = f.kind(DoorKind::Room);
    assert_granted(&f.at(at), "members", AccessKind::RoleBased, None);
    let f = f.kind(DoorKind::Entrance);
    assert_denied(&f.at(at), Reason::NoMembership, None);
}

#[test]
fn door_and_user_checks() {
    let at = utc(2026, 1, 6, 12, 0);
    let mut f = Fixture::new(MADRID, &[], |u| vec![rule("any", &[u], &[], vec![])]);
    assert!(f.at(at).granted);

    f.tenant_enabled = false;
    let outcome = f.at(at);
    assert_denied(&outcome, Reason::TenantAccessDisabled, None);
    assert_eq!(outcome.steps.len(), 1);
    assert_eq!(outcome.steps[0].check, CHECK_TENANT);
    f.tenant_enabled = true;

    if let Some(user) = f.user.as_mut() {
        user.active = false;
    }
    let outcome = f.at(at);
    assert_denied(&outcome, Reason::UserInactive, None);
    assert_eq!(outcome.steps.last().map(|s| s.check), Some(CHECK_USER));

    if let Some(door) = f.door.as_mut() {
        door.active = false;
    }
    let outcome = f.at(at);
    assert_denied(&outcome, Reason::DoorInactive, None);
    assert_eq!(outcome.steps.last().map(|s| s.check), Some(CHECK_DOOR));

    f.door = None;
    assert_denied(&f.at(at), Reason::DoorNotFound, None);

    let mut f = Fixture::new(MADRID, &[], |u| vec![rule("any", &[u], &[], vec![])]);
    f.user = None;
    assert_denied(&f.at(at), Reason::UserNotFound, None);
}

#[test]
fn validity_window() {
    let from = utc(2026, 5, 1, 10, 0);
    let until = utc(2026, 5, 3, 10, 0);
    let f = Fixture::new(MADRID, &[], |u| {
        let mut r = rule("guest", &[u], &[], vec![]);
        r.valid_from = Some(from);
        r.valid_until = Some(until);
        vec![r]
    });
    let minute = chrono::TimeDelta::minutes(1);
    assert_denied(&f.at(from - minute), Reason::OutsideValidity, Some(from));
    assert_granted(&f.at(from), "guest", AccessKind::UserSpecific, Some(until));
    assert_granted(
        &f.at(until - minute),
        "guest",
        AccessKind::UserSpecific,
        Some(until),
    );
    let outcome = f.at(until);
    assert_denied(&outcome, Reason::OutsideValidity, None);
    assert_eq!(outcome.steps.last().map(|s| s.check), Some(CHECK_VALIDITY));
}

#[test]
fn validity_and_slots_together() {
    // Valid from a Wednesday noon, weekdays 09:00-18:00, until Friday 12:00 (Madrid).
    let from = local(MADRID, 2026, 1, 7, 12, 0);
    let until = local(MADRID, 2026, 1, 9, 12, 0);
    let f = Fixture::new(MADRID, &[], |u| {
        let mut r = rule("contractor", &[u], &[], weekdays("09:00", "18:00"));
        r.valid_from = Some(from);
        r.valid_until = Some(until);
        vec![r]
    });
    // Before validity the next chance is its start, which falls inside a slot.
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 5, 10, 0)),
        Reason::OutsideValidity,
        Some(from),
    );
    // Inside validity but after hours: the next slot start.
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 8, 20, 0)),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 1, 9, 9, 0)),
    );
    // The validity end comes before the slot's end.
    assert_granted(
        &f.at(local(MADRID, 2026, 1, 9, 10, 0)),
        "contractor",
        AccessKind::UserSpecific,
        Some(until),
    );
    // After the last slot within validity nothing would admit.
    let mut f = f;
    f.rules = DoorRules::build(vec![{
        let mut r = rule(
            "contractor",
            &[f.user.as_ref().unwrap().id],
            &[],
            weekdays("09:00", "11:00"),
        );
        r.valid_until = Some(until);
        r
    }]);
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 9, 11, 0)),
        Reason::OutsideTimeSlot,
        None,
    );
}

#[test]
fn overnight_slot() {
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule("night", &[u], &[], vec![slot(5, "22:00", "06:00")])]
    });
    let night = |at| f.at(at);
    let us = AccessKind::UserSpecific;
    // Friday 2026-01-09 22:00 to Saturday 06:00 local.
    let end = Some(local(MADRID, 2026, 1, 10, 6, 0));
    assert_granted(&night(local(MADRID, 2026, 1, 9, 22, 0)), "night", us, end);
    assert_granted(&night(local(MADRID, 2026, 1, 10, 3, 0)), "night", us, end);
    assert_denied(
        &night(local(MADRID, 2026, 1, 9, 21, 59)),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 1, 9, 22, 0)),
    );
    assert_denied(
        &night(local(MADRID, 2026, 1, 10, 6, 0)),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 1, 16, 22, 0)),
    );
    // Thursday night is not Friday night.
    assert_denied(
        &night(local(MADRID, 2026, 1, 9, 3, 0)),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 1, 9, 22, 0)),
    );
}

#[test]
fn saturday_night_runs_into_sunday() {
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule("party", &[u], &[], vec![slot(6, "22:00", "06:00")])]
    });
    assert_granted(
        &f.at(local(MADRID, 2026, 1, 11, 3, 0)),
        "party",
        AccessKind::UserSpecific,
        Some(local(MADRID, 2026, 1, 11, 6, 0)),
    );
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 11, 6, 0)),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 1, 17, 22, 0)),
    );
}

#[test]
fn end_of_day_slot() {
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule("late", &[u], &[], vec![slot(1, "18:00", "24:00")])]
    });
    let midnight = local(MADRID, 2026, 1, 6, 0, 0);
    assert_granted(
        &f.at(local(MADRID, 2026, 1, 5, 23, 59)),
        "late",
        AccessKind::UserSpecific,
        Some(midnight),
    );
    assert_denied(
        &f.at(midnight),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 1, 12, 18, 0)),
    );
}

#[test]
fn adjacent_slots_join_across_midnight() {
    // Monday 20:00-24:00 and Tuesday 00:00-02:00 are one stretch.
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule(
            "late",
            &[u],
            &[],
            vec![slot(1, "20:00", "24:00"), slot(2, "00:00", "02:00")],
        )]
    });
    assert_granted(
        &f.at(local(MADRID, 2026, 1, 5, 21, 0)),
        "late",
        AccessKind::UserSpecific,
        Some(local(MADRID, 2026, 1, 6, 2, 0)),
    );
}

// Europe/Madrid 2026: spring-forward on Sunday 03-29 at 01:00 UTC (02:00 CET becomes
// 03:00 CEST); fall-back on Sunday 10-25 at 01:00 UTC (03:00 CEST becomes 02:00 CET).

#[test]
fn spring_forward_in_madrid() {
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule("early", &[u], &[], vec![slot(0, "01:00", "04:00")])]
    });
    let us = AccessKind::UserSpecific;
    // 04:00 CEST is 02:00 UTC.
    let closing = utc(2026, 3, 29, 2, 0);
    let end = Some(closing);
    // 01:30 CET.
    assert_granted(&f.at(utc(2026, 3, 29, 0, 30)), "early", us, end);
    // The first instant after the gap: 03:00 CEST.
    assert_granted(&f.at(utc(2026, 3, 29, 1, 0)), "early", us, end);
    // 03:30 CEST.
    assert_granted(&f.at(utc(2026, 3, 29, 1, 30)), "early", us, end);
    assert_denied(
        &f.at(closing),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 4, 5, 1, 0)),
    );
    // Before it, in winter time: opens at 01:00 CET = 00:00 UTC.
    assert_denied(
        &f.at(utc(2026, 3, 28, 23, 30)),
        Reason::OutsideTimeSlot,
        Some(utc(2026, 3, 29, 0, 0)),
    );
}

#[test]
fn spring_forward_skips_a_slot_start() {
    // 02:30 does not exist on 03-29: the slot opens at the first instant after the gap.
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule("gap", &[u], &[], vec![slot(0, "02:30", "05:00")])]
    });
    let gap_end = utc(2026, 3, 29, 1, 0);
    assert_denied(
        &f.at(utc(2026, 3, 29, 0, 30)),
        Reason::OutsideTimeSlot,
        Some(gap_end),
    );
    assert_granted(
        &f.at(gap_end),
        "gap",
        AccessKind::UserSpecific,
        Some(utc(2026, 3, 29, 3, 0)),
    );
}

#[test]
fn spring_forward_skips_a_slot_end() {
    // A slot ending inside the gap closes when the gap starts.
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule("short", &[u], &[], vec![slot(0, "01:00", "02:30")])]
    });
    let gap = utc(2026, 3, 29, 1, 0);
    assert_granted(
        &f.at(utc(2026, 3, 29, 0, 30)),
        "short",
        AccessKind::UserSpecific,
        Some(gap),
    );
    assert_denied(
        &f.at(gap),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 4, 5, 1, 0)),
    );
}

#[test]
fn fall_back_in_madrid() {
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule("early", &[u], &[], vec![slot(0, "01:00", "04:00")])]
    });
    let us = AccessKind::UserSpecific;
    // 04:00 CET is 03:00 UTC, three hours of wall clock but four real hours after 01:00.
    let end = Some(utc(2026, 10, 25, 3, 0));
    // 01:30 CEST.
    assert_granted(&f.at(utc(2026, 10, 24, 23, 30)), "early", us, end);
    // 02:30 CEST and 02:30 CET: the repeated hour is inside the slot both times.
    assert_granted(&f.at(utc(2026, 10, 25, 0, 30)), "early", us, end);
    assert_granted(&f.at(utc(2026, 10, 25, 1, 30)), "early", us, end);
    // 03:30 CET.
    assert_granted(&f.at(utc(2026, 10, 25, 2, 30)), "early", us, end);
    // Opens at 01:00 CEST, the earlier instant, which is 23:00 UTC on Saturday.
    assert_denied(
        &f.at(utc(2026, 10, 24, 22, 0)),
        Reason::OutsideTimeSlot,
        Some(utc(2026, 10, 24, 23, 0)),
    );
}

#[test]
fn fall_back_repeats_a_slot_end() {
    // 01:00-02:30 on 10-25: the clock shows 02:30 at 00:30 UTC (CEST), leaves the slot,
    // falls back to 02:00 at 01:00 UTC and is inside again until 02:30 CET (01:30 UTC).
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule("short", &[u], &[], vec![slot(0, "01:00", "02:30")])]
    });
    let us = AccessKind::UserSpecific;
    assert_granted(
        &f.at(utc(2026, 10, 24, 23, 30)),
        "short",
        us,
        Some(utc(2026, 10, 25, 0, 30)),
    );
    assert_denied(
        &f.at(utc(2026, 10, 25, 0, 30)),
        Reason::OutsideTimeSlot,
        Some(utc(2026, 10, 25, 1, 0)),
    );
    assert_granted(
        &f.at(utc(2026, 10, 25, 1, 0)),
        "short",
        us,
        Some(utc(2026, 10, 25, 1, 30)),
    );
    assert_denied(
        &f.at(utc(2026, 10, 25, 1, 30)),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 11, 1, 1, 0)),
    );
}

#[test]
fn fall_back_repeats_a_slot_start() {
    // 02:30-02:45 on 10-25: missed at 02:50 CEST, the clock shows 02:30 again at 01:30 UTC.
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule("blip", &[u], &[], vec![slot(0, "02:30", "02:45")])]
    });
    assert_denied(
        &f.at(utc(2026, 10, 25, 0, 50)),
        Reason::OutsideTimeSlot,
        Some(utc(2026, 10, 25, 1, 30)),
    );
    assert_granted(
        &f.at(utc(2026, 10, 25, 1, 30)),
        "blip",
        AccessKind::UserSpecific,
        Some(utc(2026, 10, 25, 1, 45)),
    );
}

#[test]
fn judged_in_the_door_time_zone() {
    // Weekdays 09:00-17:00 in New York (UTC-5 in January).
    let f = Fixture::new(NEW_YORK, &[], |u| {
        vec![rule("office", &[u], &[], weekdays("09:00", "17:00"))]
    });
    // 13:30 UTC is inside 09-17 in UTC, but it is 08:30 in New York.
    assert_denied(
        &f.at(utc(2026, 1, 5, 13, 30)),
        Reason::OutsideTimeSlot,
        Some(utc(2026, 1, 5, 14, 0)),
    );
    // 21:30 UTC is outside 09-17 in UTC, but it is 16:30 in New York.
    assert_granted(
        &f.at(utc(2026, 1, 5, 21, 30)),
        "office",
        AccessKind::UserSpecific,
        Some(utc(2026, 1, 5, 22, 0)),
    );
    // Monday 20:00 in New York is already Tuesday in UTC; the next opening is Tuesday
    // 09:00 New York time.
    assert_denied(
        &f.at(utc(2026, 1, 6, 1, 0)),
        Reason::OutsideTimeSlot,
        Some(utc(2026, 1, 6, 14, 0)),
    );
}

#[test]
fn invalid_slot_fields_never_match() {
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule(
            "broken",
            &[u],
            &[],
            vec![
                Slot {
                    day: 9,
                    start: 0,
                    end: 600,
                },
                Slot {
                    day: 1,
                    start: 600,
                    end: 600,
                },
                Slot {
                    day: 1,
                    start: 0,
                    end: 5000,
                },
            ],
        )]
    });
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 5, 5, 0)),
        Reason::OutsideTimeSlot,
        None,
    );
}

#[test]
fn slot_parsing() {
    assert_eq!(
        Slot::parse(5, "22:00", "06:00"),
        Ok(Slot {
            day: 5,
            start: 1320,
            end: 360
        })
    );
    assert_eq!(
        Slot::parse(0, "00:00", "24:00"),
        Ok(Slot {
            day: 0,
            start: 0,
            end: 1440
        })
    );
    assert_eq!(
        Slot::parse(6, "23:59", "00:00"),
        Ok(Slot {
            day: 6,
            start: 1439,
            end: 0
        })
    );
    let err = |day, start, end| Slot::parse(day, start, end).unwrap_err();
    assert_eq!(err(7, "09:00", "10:00"), SlotError::Day(7));
    assert_eq!(err(-1, "09:00", "10:00"), SlotError::Day(-1));
    assert_eq!(err(1, "24:00", "10:00"), SlotError::Start);
    assert_eq!(err(1, "9:00", "10:00"), SlotError::Start);
    assert_eq!(err(1, "09:60", "10:00"), SlotError::Start);
    assert_eq!(err(1, "0900", "10:00"), SlotError::Start);
    assert_eq!(err(1, "09:00", "24:01"), SlotError::End);
    assert_eq!(err(1, "09:00", "1a:00"), SlotError::End);
    assert_eq!(err(1, "09:00", "09:00"), SlotError::Empty);
    assert_eq!(err(1, "09:00", "09:00").field(), "end");
    assert_eq!(err(8, "09:00", "09:00").field(), "day_of_week");
    assert_eq!(err(1, "x", "09:00").field(), "start");
    assert_eq!(slot(5, "22:00", "06:00").to_string(), "Fri 22:00-06:00");
}

#[test]
fn steps_and_explanations() {
    let f = Fixture::new(MADRID, &[], |u| {
        vec![rule("office", &[u], &[], weekdays("09:00", "18:00"))]
    });
    let at = local(MADRID, 2026, 1, 5, 10, 0);
    let checks = |o: &Outcome| o.steps.iter().map(|s| s.check).collect::<Vec<_>>();
    let all = [
        CHECK_TENANT,
        CHECK_DOOR,
        CHECK_USER,
        CHECK_MEMBERSHIP,
        CHECK_RULES,
        CHECK_VALIDITY,
        CHECK_TIME_SLOT,
    ];

    let short = f.eval(at, false);
    assert_eq!(checks(&short), all);
    assert!(short.steps.iter().all(|s| s.passed));
    assert_eq!(short.message, "access granted");

    let long = f.eval(at, true);
    assert_eq!(checks(&long), all);
    assert_eq!(long.message, "granted by rule 'office' (user-specific)");
    assert_eq!(
        long.steps.last().map(|s| s.detail.as_str()),
        Some("Mon 10:00 Europe/Madrid is inside Mon 09:00-Mon 18:00")
    );
    assert_eq!(long.valid_until, short.valid_until);

    let denied = f.eval(local(MADRID, 2026, 1, 10, 12, 0), true);
    assert_eq!(checks(&denied), all);
    assert_eq!(
        denied.message,
        "no time slot of the user's rules covers this time (Sat 12:00 Europe/Madrid)"
    );
}

#[test]
fn reasons_mirror_the_contract() {
    let all = [
        Reason::Granted,
        Reason::TenantAccessDisabled,
        Reason::DoorNotFound,
        Reason::DoorInactive,
        Reason::UserNotFound,
        Reason::UserInactive,
        Reason::NoMembership,
        Reason::MembershipNotStarted,
        Reason::MembershipExpired,
        Reason::MembershipFrozen,
        Reason::MembershipSuspended,
        Reason::MembershipCancelled,
        Reason::NoMatchingRule,
        Reason::OutsideValidity,
        Reason::OutsideTimeSlot,
        Reason::CodeInvalid,
    ];
    for reason in all {
        assert_eq!(
            ReasonCode::from(reason).as_str_name(),
            format!("REASON_CODE_{}", reason.as_str())
        );
    }
    assert_eq!(Reason::OutsideTimeSlot.as_str(), "OUTSIDE_TIME_SLOT");
}

#[test]
fn many_rules_only_the_named_ones_decide() {
    let f = Fixture::new(MADRID, &["r3"], |u| {
        let mut rules: Vec<RuleView> = (0..500)
            .map(|i| rule(&format!("other {i}"), &[Uuid::new_v4()], &[], vec![]))
            .collect();
        rules.extend((0..500).map(|i| {
            rule(
                &format!("role {i}"),
                &[],
                &[&format!("r{}", i % 50)],
                weekdays("09:00", "10:00"),
            )
        }));
        rules.push(rule("mine", &[u, u], &[], vec![slot(0, "10:00", "11:00")]));
        rules
    });
    assert_eq!(f.rules.len(), 1001);
    // Monday 09:30: a role rule for r3 (the fourth) decides.
    assert_granted(
        &f.at(local(MADRID, 2026, 1, 5, 9, 30)),
        "role 3",
        AccessKind::RoleBased,
        Some(local(MADRID, 2026, 1, 5, 10, 0)),
    );
    // Sunday 08:00: the user's own rule opens first, at 10:00.
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 4, 8, 0)),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 1, 4, 10, 0)),
    );
}

#[test]
fn denial_waits_for_the_earliest_candidate() {
    // Saturdays 10:00-12:00 throughout; weekdays 09:00-18:00 until Wednesday 00:00; and
    // Thursday 13:00-14:00 from Thursday 12:00, one by role (Madrid, January 2026).
    let ends = local(MADRID, 2026, 1, 7, 0, 0);
    let starts = local(MADRID, 2026, 1, 8, 12, 0);
    let mut without_saturday = Vec::new();
    let mut f = Fixture::new(MADRID, &["crew"], |u| {
        let mut weekdays = rule("weekdays", &[u], &[], weekdays("09:00", "18:00"));
        weekdays.valid_until = Some(ends);
        let mut thursday = rule("thursday", &[], &["crew"], vec![slot(4, "13:00", "14:00")]);
        thursday.valid_from = Some(starts);
        without_saturday = vec![weekdays.clone(), thursday.clone()];
        vec![
            rule("saturday", &[u], &[], vec![slot(6, "10:00", "12:00")]),
            weekdays,
            thursday,
        ]
    });
    // Monday evening: the weekday rule opens again on Tuesday.
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 5, 20, 0)),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 1, 6, 9, 0)),
    );
    // Tuesday evening: the weekday rule ends before it would open; Thursday's comes first.
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 6, 20, 0)),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 1, 8, 13, 0)),
    );
    // Friday evening: only Saturday's remains this week.
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 9, 20, 0)),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 1, 10, 10, 0)),
    );
    // Without the Saturday rule, Friday evening waits for next Thursday.
    f.rules = DoorRules::build(without_saturday);
    assert_denied(
        &f.at(local(MADRID, 2026, 1, 9, 20, 0)),
        Reason::OutsideTimeSlot,
        Some(local(MADRID, 2026, 1, 15, 13, 0)),
    );
}

#[test]
fn a_patched_index_decides_as_one_built_from_the_rules_as_they_now_are() {
    let mut f = Fixture::new(MADRID, &["member"], |u| {
        vec![
            rule("staff only", &[], &["staff"], vec![]),
            rule("Ana on weekdays", &[u], &[], weekdays("09:00", "17:00")),
            rule("members", &[], &["member"], vec![]),
        ]
    });
    let tuesday_night = utc(2026, 1, 6, 22, 0);
    assert_granted(&f.at(tuesday_night), "members", AccessKind::RoleBased, None);

    // "members" narrowed to staff, "Ana on weekdays" made round the clock.
    let mut changed = HashSet::new();
    let mut fresh = Vec::new();
    for at in 0..f.rules.len() {
        let Some(old) = f.rules.rule(at).map(|r| r.view.clone()) else {
            continue;
        };
        if old.name == "members" || old.name == "Ana on weekdays" {
            changed.insert(old.id);
            fresh.push(RuleView {
                roles: if old.name == "members" {
                    vec!["staff".to_owned()]
                } else {
                    old.roles
                },
                slots: if old.name == "members" {
                    old.slots
                } else {
                    Vec::new()
                },
                version: old.version + 1,
                ..old
            });
        }
    }
    let patched = f.rules.patched(&changed, fresh);
    assert_eq!(patched.len(), 3);
    let untouched = f.rules.rule(0).unwrap().view.id;
    assert!(
        std::ptr::eq(
            f.rules.get(&untouched).unwrap(),
            patched.get(&untouched).unwrap()
        ),
        "a rule not changed is shared"
    );
    f.rules = patched;
    let outcome = f.at(tuesday_night);
    assert_granted(&outcome, "Ana on weekdays", AccessKind::UserSpecific, None);
    assert_eq!(outcome.rule.as_ref().map(|r| r.version), Some(2));

    // Taken out without a new state: deleted.
    let ana = outcome.rule.as_ref().unwrap().id;
    f.rules = f.rules.patched(&HashSet::from([ana]), Vec::new());
    assert_denied(&f.at(tuesday_night), Reason::NoMatchingRule, None);
    assert_eq!((f.rules.len(), f.rules.inactive()), (2, 0));

    // Edited again and again, past the point where the overlay is folded into the
    // base: the latest state decides.
    let mut edited = f.rules.rule(0).unwrap().view.clone();
    edited.name = "staff only, opened to members".to_owned();
    edited.roles = vec!["member".to_owned()];
    for version in 1..=200 {
        edited.version = version;
        edited.active = version % 3 != 0 || version == 200;
        f.rules = f
            .rules
            .patched(&HashSet::from([edited.id]), vec![edited.clone()]);
    }
    assert_eq!((f.rules.len(), f.rules.inactive()), (2, 0));
    let outcome = f.at(tuesday_night);
    assert_granted(
        &outcome,
        "staff only, opened to members",
        AccessKind::RoleBased,
        None,
    );
    assert_eq!(outcome.rule.as_ref().map(|r| r.version), Some(200));
}
