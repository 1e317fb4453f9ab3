//! The decision for a presented access code (methods PIN and PASSCODE), as a pure
//! function of the door, its active codes and the instant, like [`super::evaluate`].
//!
//! The presented code is compared with every active code of the door, whatever matched
//! before, so the time a check takes does not tell where a match sits among the door's
//! codes; the comparison itself is the caller's (a constant-time keyed-hash check), so
//! no plaintext and no key reach this module. A matching code then has to be inside its
//! window, inside one of its weekly slots (RECURRING, in the door's zone) and under its
//! maximum number of uses.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::schedule::{Times, format_pos, next_change, week_minute};
use super::{
    AccessKind, CHECK_DOOR, CHECK_TENANT, CHECK_TIME_SLOT, CHECK_VALIDITY, DoorView, Outcome,
    Reason, Slot, Step, detail, earliest, plus_lookahead, step,
};

/// Step names of a code decision, besides tenant, door, validity and time slot.
pub const CHECK_CODE: &str = "code";
pub const CHECK_USAGES: &str = "usages";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeKind {
    Permanent,
    Temporary,
    Recurring,
}

/// One active code of a door, as decisions need it: never the code, only its keyed hash.
#[derive(Clone)]
pub struct CodeView {
    pub id: Uuid,
    /// The keyed hash the code is stored as.
    pub hmac: Vec<u8>,
    pub kind: CodeKind,
    /// Inclusive; open when absent.
    pub start: Option<DateTime<Utc>>,
    /// Exclusive; open when absent.
    pub end: Option<DateTime<Utc>>,
    /// Weekly windows in the door's zone (RECURRING only).
    pub slots: Vec<Slot>,
    /// 0: unlimited.
    pub max_usages: i32,
    pub usage_count: i32,
    /// The directory user the code was issued to, if any.
    pub user_id: Option<Uuid>,
    pub grantee_name: String,
    /// The last two digits, for display.
    pub last_digits: String,
}

// The hash is left out: it is not the code, but it has no business in logs either.
impl std::fmt::Debug for CodeView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeView")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("start", &self.start)
            .field("end", &self.end)
            .field("slots", &self.slots)
            .field("max_usages", &self.max_usages)
            .field("usage_count", &self.usage_count)
            .finish_non_exhaustive()
    }
}

impl CodeView {
    /// "****42".
    pub fn masked(&self) -> String {
        format!("****{}", self.last_digits)
    }
}

#[derive(Debug, Clone)]
struct IndexedCode {
    view: CodeView,
    times: Times,
}

/// The active codes of one door, with their slots folded once per snapshot.
#[derive(Debug, Clone, Default)]
pub struct DoorCodes {
    codes: Vec<IndexedCode>,
}

impl DoorCodes {
    pub fn build(codes: Vec<CodeView>) -> DoorCodes {
        DoorCodes {
            codes: codes
                .into_iter()
                .map(|view| {
                    let times = match view.kind {
                        // A recurring code without a valid slot never opens.
                        CodeKind::Recurring if view.slots.is_empty() => Times::Weekly(Vec::new()),
                        CodeKind::Recurring => Times::from_slots(&view.slots),
                        CodeKind::Permanent | CodeKind::Temporary => Times::Always,
                    };
                    IndexedCode { view, times }
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &CodeView> {
        self.codes.iter().map(|c| &c.view)
    }
}

/// Everything one code decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct CodeInput<'a> {
    pub tenant_enabled: bool,
    pub door: Option<&'a DoorView>,
    pub codes: &'a DoorCodes,
    pub at: DateTime<Utc>,
    pub explain: bool,
}

#[derive(Debug, Clone)]
pub struct CodeOutcome {
    pub outcome: Outcome,
    /// The code that matched, granted or not.
    pub code: Option<CodeView>,
}

impl CodeOutcome {
    fn denied(reason: Reason, steps: Vec<Step>, next: Option<DateTime<Utc>>) -> CodeOutcome {
        CodeOutcome {
            outcome: Outcome::denied(reason, steps, next),
            code: None,
        }
    }
}

/// Decides one attempt with a code; `matches(stored_hash)` says whether the presented
/// code hashes to a stored one and is called once for every active code of the door.
pub fn evaluate_code(input: &CodeInput<'_>, mut matches: impl FnMut(&[u8]) -> bool) -> CodeOutcome {
    let (at, explain) = (input.at, input.explain);
    let mut steps = Vec::with_capacity(6);

    if !input.tenant_enabled {
        steps.push(step(CHECK_TENANT, false, "door access disabled".to_owned()));
        return CodeOutcome::denied(Reason::TenantAccessDisabled, steps, None);
    }
    steps.push(step(CHECK_TENANT, true, "door access enabled".to_owned()));

    let Some(door) = input.door else {
        steps.push(step(CHECK_DOOR, false, "not found".to_owned()));
        return CodeOutcome::denied(Reason::DoorNotFound, steps, None);
    };
    if !door.active {
        steps.push(step(CHECK_DOOR, false, "inactive".to_owned()));
        return CodeOutcome::denied(Reason::DoorInactive, steps, None);
    }
    steps.push(step(CHECK_DOOR, true, "active".to_owned()));

    let mut found: Option<&IndexedCode> = None;
    for code in &input.codes.codes {
        // No early exit: every code is compared.
        let hit = matches(&code.view.hmac);
        if hit && found.is_none() {
            found = Some(code);
        }
    }
    let Some(code) = found else {
        let text = detail(explain, "no active code matches", || {
            format!("none of {} active codes matches", input.codes.len())
        });
        steps.push(step(CHECK_CODE, false, text));
        return CodeOutcome::denied(Reason::CodeInvalid, steps, None);
    };
    let view = &code.view;
    let text = detail(explain, "matches", || {
        format!("matches code {} ({})", view.id, view.masked())
    });
    steps.push(step(CHECK_CODE, true, text));

    let denied = |reason, steps, next| CodeOutcome {
        outcome: Outcome::denied(reason, steps, next),
        code: Some(view.clone()),
    };
    if let Some(start) = view.start
        && at < start
    {
        let text = detail(explain, "not valid yet", || {
            format!("valid from {}", start.to_rfc3339())
        });
        steps.push(step(CHECK_VALIDITY, false, text));
        return denied(Reason::CodeNotYetValid, steps, Some(start));
    }
    if let Some(end) = view.end
        && end <= at
    {
        let text = detail(explain, "expired", || {
            format!("valid until {}", end.to_rfc3339())
        });
        steps.push(step(CHECK_VALIDITY, false, text));
        return denied(Reason::CodeExpired, steps, None);
    }
    steps.push(step(CHECK_VALIDITY, true, "within its window".to_owned()));

    let pos = week_minute(at.with_timezone(&door.tz).naive_local());
    let lookahead = plus_lookahead(at);
    let limit = view.end.map_or(lookahead, |end| end.min(lookahead));
    if !code.times.covers(pos) {
        let text = detail(explain, "no slot covers now", || {
            format!("no slot covers {} {}", format_pos(pos), door.tz)
        });
        steps.push(step(CHECK_TIME_SLOT, false, text));
        let next = next_change(door.tz, at, limit, |wall| code.times.start_from(wall));
        return denied(Reason::CodeOutsideTimeSlot, steps, next);
    }
    let slot_end = match &code.times {
        Times::Always => None,
        times => next_change(door.tz, at, lookahead, |wall| times.end_from(wall)),
    };
    let text = detail(explain, "inside a slot", || {
        format!(
            "{} {} is inside {}",
            format_pos(pos),
            door.tz,
            code.times.describe_at(pos)
        )
    });
    steps.push(step(CHECK_TIME_SLOT, true, text));

    if view.max_usages > 0 && view.usage_count >= view.max_usages {
        let text = detail(explain, "exhausted", || {
            format!("used {} of {} times", view.usage_count, view.max_usages)
        });
        steps.push(step(CHECK_USAGES, false, text));
        return denied(Reason::CodeExhausted, steps, None);
    }
    let text = detail(explain, "under its limit", || {
        if view.max_usages == 0 {
            "no usage limit".to_owned()
        } else {
            format!("used {} of {} times", view.usage_count, view.max_usages)
        }
    });
    steps.push(step(CHECK_USAGES, true, text));

    CodeOutcome {
        outcome: Outcome {
            granted: true,
            reason: Reason::Granted,
            message: Reason::Granted.describe().to_owned(),
            rule: None,
            access_type: Some(AccessKind::Code),
            steps,
            valid_until: earliest(view.end, slot_end),
        },
        code: Some(view.clone()),
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use chrono_tz::Tz;

    use super::super::DoorKind;
    use super::*;

    const MADRID: Tz = chrono_tz::Europe::Madrid;

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        MADRID
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn door(active: bool) -> DoorView {
        DoorView {
            id: Uuid::new_v4(),
            active,
            kind: DoorKind::Unit,
            tz: MADRID,
        }
    }

    fn code(tag: u8, kind: CodeKind) -> CodeView {
        CodeView {
            id: Uuid::new_v4(),
            hmac: vec![tag; 32],
            kind,
            start: Some(local(2027, 3, 1, 15, 0)),
            end: Some(local(2027, 3, 8, 11, 0)),
            slots: Vec::new(),
            max_usages: 0,
            usage_count: 0,
            user_id: None,
            grantee_name: format!("Guest {tag}"),
            last_digits: "42".to_owned(),
        }
    }

    fn decide(
        codes: &DoorCodes,
        door: Option<&DoorView>,
        at: DateTime<Utc>,
        presented: u8,
    ) -> CodeOutcome {
        evaluate_code(
            &CodeInput {
                tenant_enabled: true,
                door,
                codes,
                at,
                explain: false,
            },
            |stored| stored == [presented; 32].as_slice(),
        )
    }

    #[test]
    fn the_matching_code_grants_until_its_end_and_every_code_is_compared() {
        let codes = DoorCodes::build(vec![
            code(1, CodeKind::Temporary),
            code(2, CodeKind::Temporary),
            code(3, CodeKind::Temporary),
        ]);
        let wanted = codes.iter().nth(1).unwrap().clone();
        let door = door(true);
        let mut compared = 0;
        let decided = evaluate_code(
            &CodeInput {
                tenant_enabled: true,
                door: Some(&door),
                codes: &codes,
                at: local(2027, 3, 2, 9, 0),
                explain: true,
            },
            |stored| {
                compared += 1;
                stored == [2; 32].as_slice()
            },
        );
        assert_eq!(compared, 3, "no early exit");
        assert!(decided.outcome.granted);
        assert_eq!(decided.outcome.access_type, Some(AccessKind::Code));
        assert_eq!(decided.code.unwrap().id, wanted.id);
        assert_eq!(decided.outcome.valid_until, wanted.end);
    }

    #[test]
    fn an_unknown_code_is_invalid() {
        let codes = DoorCodes::build(vec![code(1, CodeKind::Temporary)]);
        let door = door(true);
        let decided = decide(&codes, Some(&door), local(2027, 3, 2, 9, 0), 9);
        assert!(!decided.outcome.granted);
        assert_eq!(decided.outcome.reason, Reason::CodeInvalid);
        assert!(decided.code.is_none());
        let none = DoorCodes::default();
        assert_eq!(
            decide(&none, Some(&door), local(2027, 3, 2, 9, 0), 1)
                .outcome
                .reason,
            Reason::CodeInvalid
        );
    }

    #[test]
    fn the_window_is_inclusive_at_its_start_and_exclusive_at_its_end() {
        let codes = DoorCodes::build(vec![code(1, CodeKind::Temporary)]);
        let view = codes.iter().next().unwrap().clone();
        let door = door(true);
        let start = view.start.unwrap();
        let end = view.end.unwrap();
        let early = decide(&codes, Some(&door), start - chrono::Duration::seconds(1), 1);
        assert_eq!(early.outcome.reason, Reason::CodeNotYetValid);
        assert_eq!(early.outcome.valid_until, Some(start));
        assert_eq!(early.code.unwrap().id, view.id);
        assert!(decide(&codes, Some(&door), start, 1).outcome.granted);
        assert!(
            decide(&codes, Some(&door), end - chrono::Duration::seconds(1), 1)
                .outcome
                .granted
        );
        assert_eq!(
            decide(&codes, Some(&door), end, 1).outcome.reason,
            Reason::CodeExpired
        );
    }

    #[test]
    fn recurring_codes_open_only_inside_their_slots_in_the_door_zone() {
        let mut view = code(1, CodeKind::Recurring);
        // Tuesdays 09:00-12:00 Madrid.
        view.slots = vec![Slot::parse(2, "09:00", "12:00").unwrap()];
        let codes = DoorCodes::build(vec![view]);
        let door = door(true);
        // 2027-03-02 is a Tuesday.
        let inside = decide(&codes, Some(&door), local(2027, 3, 2, 10, 0), 1);
        assert!(inside.outcome.granted);
        assert_eq!(inside.outcome.valid_until, Some(local(2027, 3, 2, 12, 0)));
        let after = decide(&codes, Some(&door), local(2027, 3, 2, 12, 0), 1);
        assert_eq!(after.outcome.reason, Reason::CodeOutsideTimeSlot);
        // The next Tuesday's slot opens after the code ends.
        assert_eq!(after.outcome.valid_until, None);
        let before = decide(&codes, Some(&door), local(2027, 3, 2, 8, 0), 1);
        assert_eq!(before.outcome.reason, Reason::CodeOutsideTimeSlot);
        assert_eq!(before.outcome.valid_until, Some(local(2027, 3, 2, 9, 0)));
        let wednesday = decide(&codes, Some(&door), local(2027, 3, 3, 10, 0), 1);
        assert_eq!(wednesday.outcome.reason, Reason::CodeOutsideTimeSlot);
    }

    #[test]
    fn a_code_at_its_limit_is_exhausted() {
        let mut view = code(1, CodeKind::Permanent);
        view.start = None;
        view.end = None;
        view.max_usages = 3;
        view.usage_count = 2;
        let door = door(true);
        let under = DoorCodes::build(vec![view.clone()]);
        let granted = decide(&under, Some(&door), local(2027, 3, 2, 10, 0), 1);
        assert!(granted.outcome.granted);
        assert_eq!(granted.outcome.valid_until, None);
        view.usage_count = 3;
        let at_limit = DoorCodes::build(vec![view]);
        let denied = decide(&at_limit, Some(&door), local(2027, 3, 2, 10, 0), 1);
        assert_eq!(denied.outcome.reason, Reason::CodeExhausted);
    }

    #[test]
    fn tenant_and_door_come_first() {
        let codes = DoorCodes::build(vec![code(1, CodeKind::Temporary)]);
        let at = local(2027, 3, 2, 10, 0);
        let inactive = door(false);
        assert_eq!(
            decide(&codes, None, at, 1).outcome.reason,
            Reason::DoorNotFound
        );
        assert_eq!(
            decide(&codes, Some(&inactive), at, 1).outcome.reason,
            Reason::DoorInactive
        );
        let active = door(true);
        let disabled = evaluate_code(
            &CodeInput {
                tenant_enabled: false,
                door: Some(&active),
                codes: &codes,
                at,
                explain: false,
            },
            |_| true,
        );
        assert_eq!(disabled.outcome.reason, Reason::TenantAccessDisabled);
    }
}
