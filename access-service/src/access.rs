//! Access decisions as the API offers them: CheckAccess (decided, recorded, answered),
//! ExplainAccess (any instant, nothing recorded), the doors a user may open, door
//! status. UnlockDoor's decision is made here; the actuation is [`crate::unlock`]'s.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pagination;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::audit::chain::truncate_to_micros;
use crate::audit::{AuditAction, AuditEntry};
use crate::code_keys::CodeKeys;
use crate::decision::{CodeInput, CodeView, EvalInput, Outcome, Step, evaluate, evaluate_code};
use crate::error::Result;
use crate::policy::may_name_others;
use crate::snapshot::{DoorEntry, TenantSnapshot};
use crate::state::AppState;

/// Who is asking about which door, how, and from where.
#[derive(Debug, Default, Clone)]
pub struct Attempt {
    pub door_id: String,
    pub user_id: String,
    /// The access method's stored name, e.g. "CARD"; empty when not given.
    pub method: String,
    pub client_ip: String,
    pub request_id: String,
}

/// A decision and what it was about.
#[derive(Debug, Clone)]
pub struct Decided {
    pub outcome: Outcome,
    pub at: DateTime<Utc>,
    pub time_zone: String,
    pub door: Option<DoorEntry>,
    pub user_id: Option<Uuid>,
    /// The code presented with PIN or PASSCODE that matched, granted or not.
    pub access_code_id: Option<Uuid>,
}

/// Checks the shape of an attempt; the door must be a UUID, the method known.
fn check_attempt(
    attempt: &Attempt,
    method_required: bool,
    violations: &mut FieldViolations,
) -> Uuid {
    let door = match Uuid::try_parse(&attempt.door_id) {
        Ok(id) => id,
        Err(_) => {
            violations.add("door_id", "must be a door id (UUID)");
            Uuid::nil()
        }
    };
    if attempt.user_id.len() > 128 {
        violations.add("user_id", "must be at most 128 characters");
    }
    if method_required && attempt.method.is_empty() {
        violations.add(
            "method",
            "is required: CARD, PIN, MOBILE, MANUAL, API, PASSCODE or REMOTE",
        );
    }
    check_client_ip(&attempt.client_ip, violations);
    pagination::request_id(&attempt.request_id, violations);
    door
}

pub fn check_client_ip(client_ip: &str, violations: &mut FieldViolations) {
    if !client_ip.is_empty() && client_ip.parse::<IpAddr>().is_err() {
        violations.add("client_ip", "must be an IPv4 or IPv6 address");
    }
}

/// An actuation's request id: required, so a retried call never opens the door twice.
pub fn check_request_id(request_id: &str, violations: &mut FieldViolations) {
    if request_id.is_empty() {
        violations.add(
            "request_id",
            "is required, so a retried unlock never opens the door twice",
        );
    }
    pagination::request_id(request_id, violations);
}

/// Checks an UnlockDoor attempt before its request id is claimed.
pub fn check_unlock_attempt(attempt: &Attempt) -> Result<()> {
    let mut violations = FieldViolations::default();
    check_attempt(attempt, false, &mut violations);
    if attempt.request_id.is_empty() {
        check_request_id(&attempt.request_id, &mut violations);
    }
    Ok(violations.check()?)
}

/// The user an attempt is about: the one named, or the caller. Callers other than
/// SERVICE and ADMIN (or MANAGER when only explaining) may name only themselves.
fn subject(
    snapshot: &TenantSnapshot,
    caller: &Caller,
    named: &str,
    others_allowed: bool,
) -> Result<(String, Option<Uuid>)> {
    let own = snapshot.resolve_user(&caller.user_id);
    if named.is_empty() {
        return Ok((caller.user_id.clone(), own));
    }
    let resolved = snapshot.resolve_user(named);
    if !others_allowed && (resolved.is_none() || resolved != own) && named != caller.user_id {
        return Err(ApiError::PermissionDenied {
            reason: "OTHER_USER",
            message: "the caller's roles may not name another user in this call".to_owned(),
        }
        .into());
    }
    Ok((named.to_owned(), resolved))
}

fn decide(
    snapshot: &TenantSnapshot,
    door: Uuid,
    user: Option<Uuid>,
    at: DateTime<Utc>,
    explain: bool,
) -> Decided {
    let door_entry = snapshot.doors.get(&door);
    let user_entry = user.and_then(|id| snapshot.users.get(&id));
    let outcome = evaluate(&EvalInput {
        tenant_enabled: snapshot.tenant_enabled,
        door: door_entry.map(|d| &d.view),
        user: user_entry.map(|u| &u.view),
        memberships: user
            .map(|id| snapshot.memberships_of(&id))
            .unwrap_or_default(),
        rules: snapshot.door_rules(&door),
        at,
        explain,
    });
    Decided {
        outcome,
        at,
        time_zone: door_entry.map(|d| d.time_zone.clone()).unwrap_or_default(),
        door: door_entry.cloned(),
        user_id: user_entry.map(|u| u.view.id),
        access_code_id: None,
    }
}

/// The part every decision's audit entry shares: the outcome, its time and the door.
fn decision_entry(caller: &Caller, attempt: &Attempt, decided: &Decided) -> AuditEntry {
    let granted = decided.outcome.granted;
    let action = if granted {
        AuditAction::AccessGranted
    } else {
        AuditAction::AccessDenied
    };
    let mut entry = AuditEntry::new(&caller.tenant_id, &caller.user_id, action, granted);
    entry.time = decided.at;
    entry.door_id = attempt.door_id.clone();
    if let Some(door) = &decided.door {
        entry.door_name = door.name.clone();
        entry.door_type = door.door_type.clone();
        entry.door_location = door.location.clone();
    }
    entry
}

/// What a decision's audit metadata holds, in the order it is written. A struct rather
/// than a built `Value`: it is serialised for every decision, on the hot path.
#[derive(serde::Serialize)]
struct DecisionMetadata<'a> {
    operation: &'static str,
    time_zone: &'a str,
    valid_until: Option<String>,
    /// Present (possibly null) only for decisions on a presented code.
    #[serde(skip_serializing_if = "Option::is_none")]
    access_code_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    masked_code: Option<Option<String>>,
    steps: &'a [Step],
}

impl<'a> DecisionMetadata<'a> {
    fn new(operation: &'static str, decided: &'a Decided) -> Self {
        Self {
            operation,
            time_zone: &decided.time_zone,
            valid_until: decided.outcome.valid_until.map(|t| t.to_rfc3339()),
            access_code_id: None,
            masked_code: None,
            steps: &decided.outcome.steps,
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// The audit entry of a decision.
fn entry_for(
    snapshot: &TenantSnapshot,
    caller: &Caller,
    attempt: &Attempt,
    subject: &str,
    decided: &Decided,
    unlock: bool,
) -> AuditEntry {
    let outcome = &decided.outcome;
    let mut entry = decision_entry(caller, attempt, decided);
    match decided.user_id.and_then(|id| snapshot.users.get(&id)) {
        Some(user) => {
            entry.user_id = user.view.id.to_string();
            entry.user_name = user.name.clone();
            entry.user_email = user.email.clone();
            entry.user_role = user.view.roles.join(",");
        }
        None => entry.user_id = subject.to_owned(),
    }
    entry.method = attempt.method.clone();
    entry.reason_code = outcome.reason.as_str().to_owned();
    entry.reason = outcome.message.clone();
    if let Some(rule) = &outcome.rule {
        entry.rule_id = rule.id.to_string();
        entry.rule_version = rule.version;
    }
    entry.client_ip = attempt.client_ip.clone();
    entry.request_id = attempt.request_id.clone();
    entry.metadata =
        DecisionMetadata::new(if unlock { "UNLOCK" } else { "CHECK" }, decided).to_json();
    entry
}

/// Decides now, records the attempt, and answers only once the record is committed.
pub async fn check(
    state: &AppState,
    caller: &Caller,
    attempt: Attempt,
    unlock: bool,
) -> Result<(Decided, i64)> {
    let mut violations = FieldViolations::default();
    let door = check_attempt(&attempt, !unlock, &mut violations);
    if unlock && attempt.request_id.is_empty() {
        check_request_id(&attempt.request_id, &mut violations);
    }
    violations.check()?;
    let snapshot = state.snapshots.get(&caller.tenant_id).await?;
    let (subject, user) = subject(
        &snapshot,
        caller,
        &attempt.user_id,
        may_name_others(caller, if unlock { "UnlockDoor" } else { "CheckAccess" }),
    )?;
    let decided = decide(
        &snapshot,
        door,
        user,
        truncate_to_micros(state.clock.now()),
        false,
    );
    let entry = entry_for(&snapshot, caller, &attempt, &subject, &decided, unlock);
    let row = state.audit.append(entry).await?;
    Ok((decided, row.sequence))
}

/// The same evaluation at `at` with every step; nothing is recorded or actuated.
pub async fn explain(
    state: &AppState,
    caller: &Caller,
    attempt: Attempt,
    at: Option<DateTime<Utc>>,
) -> Result<Decided> {
    let mut violations = FieldViolations::default();
    let door = check_attempt(&attempt, false, &mut violations);
    violations.check()?;
    let snapshot = state.snapshots.get(&caller.tenant_id).await?;
    let (_, user) = subject(
        &snapshot,
        caller,
        &attempt.user_id,
        may_name_others(caller, "ExplainAccess"),
    )?;
    Ok(decide(
        &snapshot,
        door,
        user,
        at.unwrap_or_else(|| state.clock.now()),
        true,
    ))
}

/// A door the user may open now, the rule that lets them and until when.
#[derive(Debug)]
pub struct Accessible {
    pub door_id: Uuid,
    pub door: DoorEntry,
    pub outcome: Outcome,
}

pub async fn accessible_doors(
    state: &AppState,
    caller: &Caller,
    user_id: &str,
    page_size: i32,
    page_token: &str,
) -> Result<(Vec<Accessible>, String)> {
    let mut violations = FieldViolations::default();
    let size = usize::try_from(pagination::page_size(page_size, &mut violations)).unwrap_or(50);
    let after = pagination::decode_uuid_token(page_token, &mut violations);
    if user_id.len() > 128 {
        violations.add("user_id", "must be at most 128 characters");
    }
    violations.check()?;
    let snapshot = state.snapshots.get(&caller.tenant_id).await?;
    let (_, user) = subject(
        &snapshot,
        caller,
        user_id,
        may_name_others(caller, "ListAccessibleDoors"),
    )?;
    let now = Utc::now();
    let start = after.map_or(0, |after| {
        snapshot.door_order.partition_point(|id| *id <= after)
    });
    let mut found = Vec::new();
    let mut next = String::new();
    for id in &snapshot.door_order[start..] {
        if found.len() == size {
            // Another page exists only if some later door is open to the user; the
            // token resumes after the last door examined.
            next = found
                .last()
                .map(|a: &Accessible| pagination::encode_uuid_token(a.door_id))
                .unwrap_or_default();
            break;
        }
        let decided = decide(&snapshot, *id, user, now, false);
        if decided.outcome.granted
            && let Some(door) = decided.door
        {
            found.push(Accessible {
                door_id: *id,
                door,
                outcome: decided.outcome,
            });
        }
    }
    Ok((found, next))
}

pub async fn door_status(state: &AppState, caller: &Caller, door_id: &str) -> Result<DoorEntry> {
    let mut violations = FieldViolations::default();
    let id = crate::directory::parse_id("door_id", door_id, &mut violations);
    violations.check()?;
    let snapshot = state.snapshots.get(&caller.tenant_id).await?;
    snapshot
        .doors
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("door", door_id).into())
}

/// Whether `method` (its stored name) presents an access code.
pub fn uses_code(method: &str) -> bool {
    matches!(method, "PIN" | "PASSCODE")
}

/// CheckAccess as the API offers it: PIN and PASSCODE attempts are decided by the code
/// presented, every other method by the rules. A code is required with those methods
/// and refused with the others.
pub async fn check_access(
    state: &AppState,
    caller: &Caller,
    attempt: Attempt,
    code: SecretString,
) -> Result<(Decided, i64)> {
    let presented = code.expose_secret();
    if !uses_code(&attempt.method) {
        if !presented.is_empty() {
            let mut violations = FieldViolations::default();
            check_attempt(&attempt, true, &mut violations);
            violations.add("code", "only with PIN or PASSCODE");
            return Err(ApiError::InvalidArgument(violations).into());
        }
        return check(state, caller, attempt, false).await;
    }
    let mut violations = FieldViolations::default();
    let door = check_attempt(&attempt, true, &mut violations);
    if presented.is_empty() {
        violations.add("code", "is required with PIN or PASSCODE");
    } else if !(4..=9).contains(&presented.len()) || !presented.bytes().all(|b| b.is_ascii_digit())
    {
        violations.add("code", "must be 4 to 9 digits");
    }
    violations.check()?;
    let snapshot = state.snapshots.get(&caller.tenant_id).await?;
    let at = truncate_to_micros(state.clock.now());
    let (decided, matched) = decide_code(
        &snapshot,
        &state.code_keys,
        &caller.tenant_id,
        door,
        presented,
        at,
    );
    let entry = code_entry_for(&snapshot, caller, &attempt, &decided, matched.as_ref());
    let row = state.audit.append(entry).await?;
    Ok((decided, row.sequence))
}

fn decide_code(
    snapshot: &TenantSnapshot,
    keys: &CodeKeys,
    tenant_id: &str,
    door: Uuid,
    presented: &str,
    at: DateTime<Utc>,
) -> (Decided, Option<CodeView>) {
    let door_entry = snapshot.doors.get(&door);
    let decided = evaluate_code(
        &CodeInput {
            tenant_enabled: snapshot.tenant_enabled,
            door: door_entry.map(|d| &d.view),
            codes: snapshot.codes_of(&door),
            at,
            explain: false,
        },
        |stored| keys.matches(tenant_id, presented, stored),
    );
    let matched = decided.code;
    (
        Decided {
            outcome: decided.outcome,
            at,
            time_zone: door_entry.map(|d| d.time_zone.clone()).unwrap_or_default(),
            door: door_entry.cloned(),
            user_id: matched.as_ref().and_then(|c| c.user_id),
            access_code_id: matched.as_ref().map(|c| c.id),
        },
        matched,
    )
}

/// The audit entry of a code decision: the grantee as the user, the code by id and
/// masked, never the code itself.
fn code_entry_for(
    snapshot: &TenantSnapshot,
    caller: &Caller,
    attempt: &Attempt,
    decided: &Decided,
    matched: Option<&CodeView>,
) -> AuditEntry {
    let outcome = &decided.outcome;
    let mut entry = decision_entry(caller, attempt, decided);
    match matched {
        Some(code) => match code.user_id.and_then(|id| snapshot.users.get(&id)) {
            Some(user) => {
                entry.user_id = user.view.id.to_string();
                entry.user_name = user.name.clone();
                entry.user_email = user.email.clone();
                entry.user_role = user.view.roles.join(",");
            }
            None => {
                entry.user_id = code.user_id.map(|u| u.to_string()).unwrap_or_default();
                entry.user_name = code.grantee_name.clone();
            }
        },
        None => entry.user_id = attempt.user_id.clone(),
    }
    entry.method = attempt.method.clone();
    entry.reason_code = outcome.reason.as_str().to_owned();
    entry.reason = outcome.message.clone();
    entry.client_ip = attempt.client_ip.clone();
    entry.request_id = attempt.request_id.clone();
    entry.metadata = DecisionMetadata {
        access_code_id: Some(matched.map(|c| c.id.to_string())),
        masked_code: Some(matched.map(CodeView::masked)),
        ..DecisionMetadata::new("CHECK", decided)
    }
    .to_json();
    entry
}
