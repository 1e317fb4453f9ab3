//! The access decision, as a pure function of an in-memory view of one door, one user,
//! the user's memberships and the door's rules at a given instant. No database, no
//! clock: callers fill [`EvalInput`] from their snapshot and pass `at`.
//!
//! Checks run in a fixed order and the first failure decides: the tenant's door access,
//! the door, the user, the membership (entrance and facility doors only), then the rules:
//! user-specific grants before role grants, each within its validity window and with a
//! weekly slot covering `at` in the door's own time zone. Anything else is denied.
//!
//! [`Outcome::valid_until`] says when the answer could next change, so a caller may hold
//! it until then. A grant holds until the earliest of the end of the deciding rule's
//! covering slots, the rule's `valid_until` and the membership's end. A denial by
//! validity or time slot holds until the earliest instant a candidate rule could start
//! to apply, looking at most [`LOOKAHEAD_DAYS`] days ahead of each rule's start; a
//! denial for a membership not yet started holds until that start. Wall-clock boundaries
//! become instants by following the door's UTC offset: a time skipped by spring-forward
//! maps to the first instant after the gap, and a time shown twice by fall-back maps to
//! the first showing still ahead of `at` (for a start normally the earlier one; for an
//! end the earlier one when the slot was entered before the repeated hour, since the
//! door's clock then leaves the slot at that first showing).

mod code;
mod index;
mod schedule;
#[cfg(test)]
mod tests;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use latchkey::pb::access::v1::{AccessType, ReasonCode};
use uuid::Uuid;

pub use code::{
    CHECK_CODE, CHECK_USAGES, CodeInput, CodeKind, CodeOutcome, CodeView, DoorCodes, evaluate_code,
};
pub use index::{DoorRules, IndexedRule};
pub use schedule::{Slot, SlotError};

use schedule::{Probe, Times, at_week_minute, first_start, format_pos, next_change, week_minute};

/// How far ahead a denial looks for the next slot start; a week and a day covers every
/// weekly slot whatever weekday `at` falls on.
pub const LOOKAHEAD_DAYS: i64 = 8;

/// Step names, as `EvaluationStep.check` carries them.
pub const CHECK_TENANT: &str = "tenant";
pub const CHECK_DOOR: &str = "door";
pub const CHECK_USER: &str = "user";
pub const CHECK_MEMBERSHIP: &str = "membership";
pub const CHECK_RULES: &str = "rules";
pub const CHECK_VALIDITY: &str = "validity";
pub const CHECK_TIME_SLOT: &str = "time_slot";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DoorKind {
    Entrance,
    Facility,
    Room,
    Unit,
    Gate,
    Other,
}

impl DoorKind {
    /// Entrances and facilities admit members only; rooms, units and the rest rely on
    /// their rules alone.
    pub fn needs_membership(self) -> bool {
        matches!(self, DoorKind::Entrance | DoorKind::Facility)
    }
}

#[derive(Debug, Clone)]
pub struct DoorView {
    pub id: Uuid,
    pub active: bool,
    pub kind: DoorKind,
    /// The zone every slot of the door's rules is judged in.
    pub tz: Tz,
}

#[derive(Debug, Clone)]
pub struct UserView {
    pub id: Uuid,
    pub active: bool,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MembershipState {
    Active,
    Frozen,
    Suspended,
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct MembershipView {
    pub status: MembershipState,
    /// Inclusive.
    pub start: DateTime<Utc>,
    /// Exclusive; open when absent.
    pub end: Option<DateTime<Utc>>,
}

impl MembershipView {
    fn covers(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && self.end.is_none_or(|end| at < end)
    }
}

#[derive(Debug, Clone)]
pub struct RuleView {
    pub id: Uuid,
    pub name: String,
    pub version: i64,
    pub active: bool,
    /// Users granted by name.
    pub user_ids: Vec<Uuid>,
    /// Roles granted.
    pub roles: Vec<String>,
    /// Weekly windows in the door's zone; empty means at any time.
    pub slots: Vec<Slot>,
    /// Inclusive; open when absent.
    pub valid_from: Option<DateTime<Utc>>,
    /// Exclusive; open when absent.
    pub valid_until: Option<DateTime<Utc>>,
}

/// Everything one decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct EvalInput<'a> {
    /// The tenant's door-access switch.
    pub tenant_enabled: bool,
    pub door: Option<&'a DoorView>,
    pub user: Option<&'a UserView>,
    /// The user's memberships, in any order.
    pub memberships: &'a [MembershipView],
    /// The door's rules.
    pub rules: &'a DoorRules,
    pub at: DateTime<Utc>,
    /// Build detailed step and reason texts; off, they are short fixed phrases.
    pub explain: bool,
}

/// Why a decision came out as it did; mirrors `ReasonCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Granted,
    TenantAccessDisabled,
    DoorNotFound,
    DoorInactive,
    UserNotFound,
    UserInactive,
    NoMembership,
    MembershipNotStarted,
    MembershipExpired,
    MembershipFrozen,
    MembershipSuspended,
    MembershipCancelled,
    NoMatchingRule,
    OutsideValidity,
    OutsideTimeSlot,
    /// No active code of the door matches; [`evaluate`] never returns the code reasons,
    /// [`evaluate_code`] does.
    CodeInvalid,
    CodeNotYetValid,
    CodeExpired,
    CodeOutsideTimeSlot,
    CodeExhausted,
    /// An administrator's emergency unlock, outside the rules.
    Emergency,
}

impl Reason {
    /// The `ReasonCode` name without its prefix, e.g. "OUTSIDE_TIME_SLOT".
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Granted => "GRANTED",
            Reason::TenantAccessDisabled => "TENANT_ACCESS_DISABLED",
            Reason::DoorNotFound => "DOOR_NOT_FOUND",
            Reason::DoorInactive => "DOOR_INACTIVE",
            Reason::UserNotFound => "USER_NOT_FOUND",
            Reason::UserInactive => "USER_INACTIVE",
            Reason::NoMembership => "NO_MEMBERSHIP",
            Reason::MembershipNotStarted => "MEMBERSHIP_NOT_STARTED",
            Reason::MembershipExpired => "MEMBERSHIP_EXPIRED",
            Reason::MembershipFrozen => "MEMBERSHIP_FROZEN",
            Reason::MembershipSuspended => "MEMBERSHIP_SUSPENDED",
            Reason::MembershipCancelled => "MEMBERSHIP_CANCELLED",
            Reason::NoMatchingRule => "NO_MATCHING_RULE",
            Reason::OutsideValidity => "OUTSIDE_VALIDITY",
            Reason::OutsideTimeSlot => "OUTSIDE_TIME_SLOT",
            Reason::CodeInvalid => "CODE_INVALID",
            Reason::CodeNotYetValid => "CODE_NOT_YET_VALID",
            Reason::CodeExpired => "CODE_EXPIRED",
            Reason::CodeOutsideTimeSlot => "CODE_OUTSIDE_TIME_SLOT",
            Reason::CodeExhausted => "CODE_EXHAUSTED",
            Reason::Emergency => "EMERGENCY",
        }
    }

    /// A short human sentence for the reason.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Granted => "access granted",
            Reason::TenantAccessDisabled => "door access is disabled for this tenant",
            Reason::DoorNotFound => "door not found",
            Reason::DoorInactive => "door is inactive",
            Reason::UserNotFound => "user not found",
            Reason::UserInactive => "user is inactive",
            Reason::NoMembership => "no membership covers this time",
            Reason::MembershipNotStarted => "membership has not started yet",
            Reason::MembershipExpired => "membership has expired",
            Reason::MembershipFrozen => "membership is frozen",
            Reason::MembershipSuspended => "membership is suspended",
            Reason::MembershipCancelled => "membership is cancelled",
            Reason::NoMatchingRule => "no active rule of the door names the user or their roles",
            Reason::OutsideValidity => "no rule naming the user is within its validity window",
            Reason::OutsideTimeSlot => "no time slot of the user's rules covers this time",
            Reason::CodeInvalid => "access code is invalid",
            Reason::CodeNotYetValid => "access code is not valid yet",
            Reason::CodeExpired => "access code has expired",
            Reason::CodeOutsideTimeSlot => "no time slot of the access code covers this time",
            Reason::CodeExhausted => "access code reached its maximum number of uses",
            Reason::Emergency => "emergency unlock by an administrator",
        }
    }
}

impl From<Reason> for ReasonCode {
    fn from(reason: Reason) -> ReasonCode {
        match reason {
            Reason::Granted => ReasonCode::Granted,
            Reason::TenantAccessDisabled => ReasonCode::TenantAccessDisabled,
            Reason::DoorNotFound => ReasonCode::DoorNotFound,
            Reason::DoorInactive => ReasonCode::DoorInactive,
            Reason::UserNotFound => ReasonCode::UserNotFound,
            Reason::UserInactive => ReasonCode::UserInactive,
            Reason::NoMembership => ReasonCode::NoMembership,
            Reason::MembershipNotStarted => ReasonCode::MembershipNotStarted,
            Reason::MembershipExpired => ReasonCode::MembershipExpired,
            Reason::MembershipFrozen => ReasonCode::MembershipFrozen,
            Reason::MembershipSuspended => ReasonCode::MembershipSuspended,
            Reason::MembershipCancelled => ReasonCode::MembershipCancelled,
            Reason::NoMatchingRule => ReasonCode::NoMatchingRule,
            Reason::OutsideValidity => ReasonCode::OutsideValidity,
            Reason::OutsideTimeSlot => ReasonCode::OutsideTimeSlot,
            Reason::CodeInvalid => ReasonCode::CodeInvalid,
            Reason::CodeNotYetValid => ReasonCode::CodeNotYetValid,
            Reason::CodeExpired => ReasonCode::CodeExpired,
            Reason::CodeOutsideTimeSlot => ReasonCode::CodeOutsideTimeSlot,
            Reason::CodeExhausted => ReasonCode::CodeExhausted,
            Reason::Emergency => ReasonCode::Emergency,
        }
    }
}

/// How the deciding rule reached the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessKind {
    UserSpecific,
    RoleBased,
    /// An access code presented with PIN or PASSCODE.
    Code,
}

impl From<AccessKind> for AccessType {
    fn from(kind: AccessKind) -> AccessType {
        match kind {
            AccessKind::UserSpecific => AccessType::UserSpecific,
            AccessKind::RoleBased => AccessType::RoleBased,
            AccessKind::Code => AccessType::Code,
        }
    }
}

/// The rule that decided a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    pub id: Uuid,
    pub name: String,
    pub version: i64,
}

/// One check as it ran. Serialised (fields in this order) into the audit row's metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub check: &'static str,
    pub detail: String,
    pub passed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub granted: bool,
    pub reason: Reason,
    /// A human sentence; detailed when explaining.
    pub message: String,
    pub rule: Option<RuleRef>,
    pub access_type: Option<AccessKind>,
    /// The checks that ran, in order; the last failed unless granted.
    pub steps: Vec<Step>,
    /// The next instant the answer could change; `None` when nothing known changes it.
    pub valid_until: Option<DateTime<Utc>>,
}

impl Outcome {
    fn denied(reason: Reason, steps: Vec<Step>, valid_until: Option<DateTime<Utc>>) -> Outcome {
        Outcome {
            granted: false,
            reason,
            message: reason.describe().to_owned(),
            rule: None,
            access_type: None,
            steps,
            valid_until,
        }
    }
}

/// The short phrase, or the long text only when explaining.
fn detail(explain: bool, short: &'static str, long: impl FnOnce() -> String) -> String {
    if explain { long() } else { short.to_owned() }
}

fn step(check: &'static str, passed: bool, detail: String) -> Step {
    Step {
        check,
        passed,
        detail,
    }
}

/// The earlier of two optional instants, `None` standing for "never".
fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn plus_lookahead(from: DateTime<Utc>) -> DateTime<Utc> {
    from.checked_add_signed(TimeDelta::days(LOOKAHEAD_DAYS))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Decides one access attempt.
pub fn evaluate(input: &EvalInput<'_>) -> Outcome {
    let explain = input.explain;
    let mut steps = Vec::with_capacity(7);

    if !input.tenant_enabled {
        steps.push(step(CHECK_TENANT, false, "door access disabled".to_owned()));
        return Outcome::denied(Reason::TenantAccessDisabled, steps, None);
    }
    steps.push(step(CHECK_TENANT, true, "door access enabled".to_owned()));

    let Some(door) = input.door else {
        steps.push(step(CHECK_DOOR, false, "not found".to_owned()));
        return Outcome::denied(Reason::DoorNotFound, steps, None);
    };
    if !door.active {
        let text = detail(explain, "inactive", || {
            format!("door {} is inactive", door.id)
        });
        steps.push(step(CHECK_DOOR, false, text));
        return Outcome::denied(Reason::DoorInactive, steps, None);
    }
    let text = detail(explain, "active", || {
        format!(
            "door {} ({:?}) is active, time zone {}",
            door.id, door.kind, door.tz
        )
    });
    steps.push(step(CHECK_DOOR, true, text));

    let Some(user) = input.user else {
        steps.push(step(CHECK_USER, false, "not found".to_owned()));
        return Outcome::denied(Reason::UserNotFound, steps, None);
    };
    if !user.active {
        let text = detail(explain, "inactive", || {
            format!("user {} is inactive", user.id)
        });
        steps.push(step(CHECK_USER, false, text));
        return Outcome::denied(Reason::UserInactive, steps, None);
    }
    let text = detail(explain, "active", || {
        format!(
            "user {} is active, roles [{}]",
            user.id,
            user.roles.join(", ")
        )
    });
    steps.push(step(CHECK_USER, true, text));

    let membership_end = if door.kind.needs_membership() {
        match check_membership(input.memberships, input.at) {
            Membership::Active { end } => {
                let text = detail(explain, "active", || match end {
                    Some(end) => format!("active membership until {}", end.to_rfc3339()),
                    None => "active membership without end".to_owned(),
                });
                steps.push(step(CHECK_MEMBERSHIP, true, text));
                end
            }
            Membership::Denied { reason, next } => {
                steps.push(step(CHECK_MEMBERSHIP, false, reason.describe().to_owned()));
                return Outcome::denied(reason, steps, next);
            }
        }
    } else {
        let text = detail(explain, "not required", || {
            format!("{:?} doors need no membership", door.kind)
        });
        steps.push(step(CHECK_MEMBERSHIP, true, text));
        None
    };

    decide_by_rules(input, door, user, membership_end, steps)
}

enum Membership {
    Active {
        end: Option<DateTime<Utc>>,
    },
    Denied {
        reason: Reason,
        next: Option<DateTime<Utc>>,
    },
}

/// An active membership covering `at` admits, the longest-running one deciding its end.
/// Otherwise the reason names the most specific state covering `at` (frozen, then
/// suspended, then cancelled), else an active one not started yet (whose start is when
/// the answer could change), else one that expired, else none at all.
fn check_membership(memberships: &[MembershipView], at: DateTime<Utc>) -> Membership {
    let mut active: Option<Option<DateTime<Utc>>> = None;
    let (mut frozen, mut suspended, mut cancelled, mut expired) = (false, false, false, false);
    let mut upcoming: Option<DateTime<Utc>> = None;
    for m in memberships {
        let covers = m.covers(at);
        match m.status {
            MembershipState::Active if covers => {
                active = Some(match (active, m.end) {
                    (Some(None), _) | (_, None) => None,
                    (Some(Some(a)), Some(b)) => Some(a.max(b)),
                    (None, Some(b)) => Some(b),
                });
            }
            MembershipState::Active if m.start > at => {
                // A period ending before it starts never admits.
                if m.end.is_none_or(|end| end > m.start) {
                    upcoming = earliest(upcoming, Some(m.start));
                }
            }
            MembershipState::Active => expired = true,
            MembershipState::Frozen => frozen |= covers,
            MembershipState::Suspended => suspended |= covers,
            MembershipState::Cancelled => cancelled |= covers,
        }
    }
    if let Some(end) = active {
        return Membership::Active { end };
    }
    let reason = if frozen {
        Reason::MembershipFrozen
    } else if suspended {
        Reason::MembershipSuspended
    } else if cancelled {
        Reason::MembershipCancelled
    } else if upcoming.is_some() {
        Reason::MembershipNotStarted
    } else if expired {
        Reason::MembershipExpired
    } else {
        Reason::NoMembership
    };
    Membership::Denied {
        reason,
        next: upcoming,
    }
}

fn decide_by_rules(
    input: &EvalInput<'_>,
    door: &DoorView,
    user: &UserView,
    membership_end: Option<DateTime<Utc>>,
    mut steps: Vec<Step>,
) -> Outcome {
    let (rules, at, explain) = (input.rules, input.at, input.explain);
    let wall = at.with_timezone(&door.tz).naive_local();
    let pos = week_minute(wall);
    let limit = plus_lookahead(at);
    // Valid now and through the whole look-ahead: such rules share one search for the
    // next start, seeded by the week minutes noted in this pass.
    let open = |rule: &IndexedRule| {
        rule.valid_at(at) && rule.view.valid_until.is_none_or(|until| until >= limit)
    };

    let mut named = false;
    let mut valid = false;
    let mut first_open: Option<u32> = None;
    let mut any_open = false;
    for (i, kind) in candidates(rules, user) {
        let Some(rule) = rules.rule(i) else { continue };
        named = true;
        if !rule.valid_at(at) {
            continue;
        }
        valid = true;
        match rule.times.probe(pos) {
            Probe::Covers => return grant(input, door, rule, kind, pos, membership_end, steps),
            Probe::Opens(start) if open(rule) => {
                any_open = true;
                first_open = Some(first_open.map_or(start, |f| f.min(start)));
            }
            Probe::Opens(_) | Probe::Never => any_open |= open(rule),
        }
    }

    if !named {
        let text = detail(explain, "none name the user", || {
            format!(
                "none of {} active rules names the user or their roles",
                rules.len()
            )
        });
        steps.push(step(CHECK_RULES, false, text));
        return Outcome::denied(Reason::NoMatchingRule, steps, None);
    }
    let text = detail(explain, "rules name the user", || {
        let mut named: Vec<usize> = candidates(rules, user)
            .map(|(i, _)| i)
            .filter(|&i| rules.rule(i).is_some())
            .collect();
        named.sort_unstable();
        named.dedup();
        format!("{} active rules name the user or their roles", named.len())
    });
    steps.push(step(CHECK_RULES, true, text));

    // The open rules' next start, from the first pass while the clock is where it was
    // at `at`; after an offset change, from their slots again.
    let next_open = if any_open {
        next_change(door.tz, at, limit, |w| {
            if w == wall {
                at_week_minute(wall, first_open?)
            } else {
                let open_rules = candidates(rules, user)
                    .filter_map(|(i, _)| rules.rule(i))
                    .filter(|r| open(r));
                first_start(open_rules.map(|r| &r.times), w)
            }
        })
    } else {
        None
    };
    let rest = candidates(rules, user)
        .filter_map(|(i, _)| rules.rule(i))
        .filter(|r| !open(r));
    let next = earliest(next_open, next_grant(at, door.tz, rest));

    let reason = if valid {
        steps.push(step(CHECK_VALIDITY, true, "within validity".to_owned()));
        let text = detail(explain, "no slot covers now", || {
            format!("no slot covers {} {}", format_pos(pos), door.tz)
        });
        steps.push(step(CHECK_TIME_SLOT, false, text));
        Reason::OutsideTimeSlot
    } else {
        steps.push(step(CHECK_VALIDITY, false, "outside validity".to_owned()));
        Reason::OutsideValidity
    };
    let mut outcome = Outcome::denied(reason, steps, next);
    if explain && reason == Reason::OutsideTimeSlot {
        outcome.message = format!("{} ({} {})", reason.describe(), format_pos(pos), door.tz);
    }
    outcome
}

/// The rules naming the user, user-specific first. A rule reached twice (through two
/// roles, or the user and a role) appears twice; no caller minds. Positions of rules
/// changed since the index was built are among them: `rules.rule` skips those.
fn candidates<'a>(
    rules: &'a DoorRules,
    user: &'a UserView,
) -> impl Iterator<Item = (usize, AccessKind)> + 'a {
    let direct = rules
        .for_user(&user.id)
        .map(|i| (i, AccessKind::UserSpecific));
    let by_role = user
        .roles
        .iter()
        .flat_map(move |role| rules.for_role(role).map(|i| (i, AccessKind::RoleBased)));
    direct.chain(by_role)
}

/// The earliest instant after `at` at which one of `rules` (those not valid throughout
/// the look-ahead) applies within its validity, each searched from its own start for
/// [`LOOKAHEAD_DAYS`] days.
fn next_grant<'a>(
    at: DateTime<Utc>,
    tz: Tz,
    rules: impl Iterator<Item = &'a IndexedRule>,
) -> Option<DateTime<Utc>> {
    let mut next = None;
    for rule in rules {
        let from = rule.view.valid_from.map_or(at, |from| from.max(at));
        let limit = plus_lookahead(from);
        let limit = rule
            .view
            .valid_until
            .map_or(limit, |until| until.min(limit));
        let start = match &rule.times {
            // Not covering now, so it is not yet valid and starts with its validity.
            Times::Always => (from > at && from < limit).then_some(from),
            times => next_change(tz, from, limit, |wall| times.start_from(wall)),
        };
        next = earliest(next, start);
    }
    next
}

fn grant(
    input: &EvalInput<'_>,
    door: &DoorView,
    rule: &IndexedRule,
    kind: AccessKind,
    pos: u16,
    membership_end: Option<DateTime<Utc>>,
    mut steps: Vec<Step>,
) -> Outcome {
    let (at, explain, view) = (input.at, input.explain, &rule.view);
    let kind_name = match kind {
        AccessKind::UserSpecific => "user-specific",
        AccessKind::RoleBased => "role-based",
        AccessKind::Code => "code",
    };
    let text = detail(explain, kind_name, || {
        format!(
            "rule '{}' v{} grants ({kind_name})",
            view.name, view.version
        )
    });
    steps.push(step(CHECK_RULES, true, text));
    let text = detail(explain, "within validity", || match view.valid_until {
        Some(until) => format!("valid until {}", until.to_rfc3339()),
        None => "valid without end".to_owned(),
    });
    steps.push(step(CHECK_VALIDITY, true, text));
    let text = detail(explain, "inside a slot", || {
        format!(
            "{} {} is inside {}",
            format_pos(pos),
            door.tz,
            rule.times.describe_at(pos)
        )
    });
    steps.push(step(CHECK_TIME_SLOT, true, text));

    let slot_end = match &rule.times {
        Times::Always => None,
        times => next_change(door.tz, at, plus_lookahead(at), |wall| times.end_from(wall)),
    };
    let valid_until = earliest(earliest(slot_end, view.valid_until), membership_end);
    let message = if explain {
        format!("granted by rule '{}' ({kind_name})", view.name)
    } else {
        Reason::Granted.describe().to_owned()
    };
    Outcome {
        granted: true,
        reason: Reason::Granted,
        message,
        rule: Some(RuleRef {
            id: view.id,
            name: view.name.clone(),
            version: view.version,
        }),
        access_type: Some(kind),
        steps,
        valid_until,
    }
}
