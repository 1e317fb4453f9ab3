//! One device event, applied in one transaction: the audit row, the door's status, the
//! usage of the code a passcode unlock names, and the tenant's cursor move together, so
//! an event is applied exactly once however often it is delivered.

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use latchkey::pb::from_timestamp;
use latchkey::pb::gateway::v1::{DeviceEvent, DeviceEventKind as Kind, EventSource};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::audit::store::{self, BurstRule};
use crate::audit::{AuditAction, AuditEntry};
use crate::db::device_events::{self as db, CodeUse};
use crate::db::doors::Door;
use crate::passcode_names::code_id_of;
use crate::provisioning::intents;

/// The actor of every row the follower appends.
pub const ACTOR: &str = "device-events";

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Its cursor was applied before (a replayed stream, an overlapping replica).
    AlreadyApplied,
    /// No door of the tenant is bound to its lock: only the cursor moved.
    NoDoor,
    /// Recorded for a door; `exhausted` when it used up its code.
    Recorded { exhausted: bool },
}

/// The kind's name without its enum prefix, e.g. `LOW_BATTERY`.
pub fn kind_name(kind: Kind) -> &'static str {
    let name = kind.as_str_name();
    name.strip_prefix("DEVICE_EVENT_KIND_").unwrap_or(name)
}

fn source_name(source: i32) -> &'static str {
    let name = EventSource::try_from(source)
        .unwrap_or(EventSource::Unspecified)
        .as_str_name();
    name.strip_prefix("EVENT_SOURCE_").unwrap_or(name)
}

pub fn is_unlock(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::UnlockPasscode
            | Kind::UnlockApp
            | Kind::UnlockCard
            | Kind::UnlockFingerprint
            | Kind::UnlockRemote
            | Kind::UnlockKey
            | Kind::UnlockOther
    )
}

/// The access method of an unlock, among the ones the audit log already knows.
pub fn method_of(kind: Kind) -> &'static str {
    match kind {
        Kind::UnlockPasscode | Kind::WrongPasscode => "PASSCODE",
        Kind::UnlockApp => "MOBILE",
        Kind::UnlockCard => "CARD",
        Kind::UnlockRemote => "REMOTE",
        Kind::UnlockFingerprint | Kind::UnlockKey | Kind::UnlockOther => "MANUAL",
        _ => "",
    }
}

/// The row's action, success, reason code and reason.
fn classify(kind: Kind, success: bool) -> (AuditAction, bool, String, String) {
    match kind {
        k if is_unlock(k) && success => (
            AuditAction::Unlock,
            true,
            "DEVICE_UNLOCK".to_owned(),
            "unlocked at the lock".to_owned(),
        ),
        // The lock refused the credential (an expired card, a passcode outside its window).
        k if is_unlock(k) => (
            AuditAction::AccessDenied,
            false,
            "DEVICE_UNLOCK_REFUSED".to_owned(),
            "the lock refused the credential".to_owned(),
        ),
        Kind::Lock => (
            AuditAction::Lock,
            success,
            "DEVICE_LOCK".to_owned(),
            "locked at the lock".to_owned(),
        ),
        Kind::WrongPasscode => (
            AuditAction::AccessDenied,
            false,
            "CODE_INVALID".to_owned(),
            "wrong code on the keypad".to_owned(),
        ),
        other => (
            AuditAction::DeviceEvent,
            success,
            kind_name(other).to_owned(),
            String::new(),
        ),
    }
}

/// How an event moves the door's status: to a status, optionally only from another.
pub fn status_change(kind: Kind, success: bool) -> Option<(&'static str, Option<&'static str>)> {
    if !success {
        return None;
    }
    match kind {
        k if is_unlock(k) => Some(("UNLOCKED", None)),
        Kind::Lock => Some(("LOCKED", None)),
        Kind::LowBattery => Some(("LOW_BATTERY", None)),
        Kind::LockOffline | Kind::GatewayOffline => Some(("OFFLINE", None)),
        // Back online says nothing of the bolt; a lock that was offline is taken as locked.
        Kind::LockOnline | Kind::GatewayOnline => Some(("LOCKED", Some("OFFLINE"))),
        _ => None,
    }
}

/// Whether the event may name a latchkey code through its passcode name.
fn names_code(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::UnlockPasscode | Kind::PasscodeSet | Kind::PasscodeFailed | Kind::PasscodeRemoved
    )
}

fn occur_time(event: &DeviceEvent, now: DateTime<Utc>) -> DateTime<Utc> {
    event
        .occur_time
        .as_ref()
        .or(event.receive_time.as_ref())
        .and_then(from_timestamp)
        .unwrap_or(now)
}

/// The event's row for `door`, before any code is named.
fn entry(
    tenant: &str,
    door: &Door,
    event: &DeviceEvent,
    kind: Kind,
    at: DateTime<Utc>,
) -> AuditEntry {
    let (action, success, reason_code, reason) = classify(kind, event.success);
    let mut entry = AuditEntry::new(tenant, ACTOR, action, success);
    entry.door_id = door.id.to_string();
    entry.door_name.clone_from(&door.name);
    entry.door_type.clone_from(&door.door_type);
    entry.door_location.clone_from(&door.location);
    entry.method = method_of(kind).to_owned();
    entry.reason_code = reason_code;
    entry.reason = reason;
    entry.target_type = "lock".to_owned();
    entry.target_id = format!("{}/{}", event.account_id, event.lock_id);
    let mut metadata = json!({
        "cursor": event.cursor,
        "kind": kind_name(kind),
        "source": source_name(event.source),
        // Masked by lock-gateway to its last two digits.
        "credential": event.credential,
        "username": event.username,
        "record_type": event.record_type,
        "occur_time": at.to_rfc3339(),
    });
    if let Value::Object(fields) = &mut metadata {
        if event.battery_percent >= 0 {
            fields.insert("battery_percent".into(), event.battery_percent.into());
        }
        if event.passcode_id != 0 {
            fields.insert("passcode_id".into(), event.passcode_id.into());
        }
        if event.gateway_id != 0 {
            fields.insert("gateway_id".into(), event.gateway_id.into());
        }
        if !event.detail.is_empty() {
            fields.insert("detail".into(), event.detail.clone().into());
        }
    }
    entry.metadata = metadata.to_string();
    entry
}

fn add_metadata(entry: &mut AuditEntry, extra: Map<String, Value>) {
    let mut fields: Map<String, Value> = serde_json::from_str(&entry.metadata).unwrap_or_default();
    fields.extend(extra);
    entry.metadata = Value::Object(fields).to_string();
}

/// Puts the code's grantee in the row.
async fn name_grantee(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    code: &CodeUse,
    entry: &mut AuditEntry,
) -> QueryResult<()> {
    match (code.grantee_type.as_str(), code.user_id) {
        ("USER", Some(user_id)) => {
            entry.user_id = user_id.to_string();
            if let Some((name, email)) = db::user_contact(conn, tenant, user_id).await? {
                entry.user_name = name;
                entry.user_email = email;
            }
        }
        _ => entry.user_name.clone_from(&code.grantee_name),
    }
    let mut extra = Map::new();
    extra.insert("code_id".into(), code.id.to_string().into());
    extra.insert("grantee_type".into(), code.grantee_type.clone().into());
    add_metadata(entry, extra);
    Ok(())
}

/// The row saying the code was used up and leaves its locks.
fn exhausted_entry(tenant: &str, code: &CodeUse, used: i32, cursor: i64) -> AuditEntry {
    let mut entry = AuditEntry::new(tenant, ACTOR, AuditAction::AdminUpdate, true);
    entry.target_type = "access_code".to_owned();
    entry.target_id = code.id.to_string();
    entry.reason_code = "MAX_USAGES_REACHED".to_owned();
    entry.reason = "the code reached its max usages and is revoked".to_owned();
    entry.metadata = json!({
        "status": "EXHAUSTED",
        "usage_count": used,
        "max_usages": code.max_usages,
        "cursor": cursor,
    })
    .to_string();
    entry
}

/// The row saying the events after cursor `after` and before `next` were never applied:
/// lock-gateway deleted them first.
fn missed_entry(tenant: &str, after: i64, next: i64) -> AuditEntry {
    let mut entry = AuditEntry::new(tenant, ACTOR, AuditAction::DeviceEvent, false);
    entry.target_type = "device_events".to_owned();
    entry.target_id = format!("{}-{}", after + 1, next - 1);
    entry.reason_code = "EVENTS_MISSED".to_owned();
    entry.reason = format!(
        "device events {}..{} were deleted by lock-gateway after its retention period before they were applied",
        after + 1,
        next - 1
    );
    entry.metadata = json!({
        "after": after,
        "next": next,
        "missed": next - after - 1,
    })
    .to_string();
    entry
}

/// Applies `event` for `tenant`. Call inside a transaction: the cursor row stays locked
/// until it commits. Locks are taken door, code, code doors, audit head, the order the
/// directory and code changes take them, so neither waits on the other in a cycle.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    event: &DeviceEvent,
    burst: BurstRule,
    now: DateTime<Utc>,
) -> QueryResult<Applied> {
    let applied = db::lock_cursor(conn, tenant).await?;
    if event.cursor <= applied {
        return Ok(Applied::AlreadyApplied);
    }
    // Cursors increase by one: a jump means lock-gateway deleted the events between
    // after its retention period, before they were applied. The log says so.
    let missed = (event.cursor > applied + 1).then(|| {
        tracing::warn!(
            after = applied,
            cursor = event.cursor,
            "device event cursors skipped; lock-gateway no longer holds the ones between"
        );
        missed_entry(tenant, applied, event.cursor)
    });
    let account = Uuid::parse_str(&event.account_id).ok();
    let door = match account {
        Some(account) => db::door_on_lock(conn, tenant, account, event.lock_id).await?,
        None => None,
    };
    let Some(door) = door else {
        if let Some(missed) = missed {
            store::append(conn, vec![missed], burst).await?;
        }
        db::set_cursor(conn, tenant, event.cursor).await?;
        return Ok(Applied::NoDoor);
    };
    let kind = Kind::try_from(event.kind).unwrap_or(Kind::Other);
    let at = occur_time(event, now);
    if let Some((status, only_from)) = status_change(kind, event.success) {
        db::set_door_status(conn, door.id, status, only_from, at).await?;
    }
    let mut row = entry(tenant, &door, event, kind, at);
    let mut exhausted = None;
    let code_id = match (code_id_of(&event.username), account) {
        (Some(code_id), _) => Some(code_id),
        // Passcode writes name the passcode by its id on the lock, not by its name.
        (None, Some(account)) if names_code(kind) && event.passcode_id != 0 => {
            db::code_of_passcode(conn, tenant, account, event.lock_id, event.passcode_id).await?
        }
        (None, _) => None,
    };
    if names_code(kind)
        && let Some(code_id) = code_id
        && let Some(code) = db::code_for_update(conn, tenant, code_id).await?
    {
        name_grantee(conn, tenant, &code, &mut row).await?;
        if kind == Kind::UnlockPasscode && event.success && code.usage_count == 0 {
            // The code's first entry: for a guest's, the guest has arrived.
            let mut extra = Map::new();
            extra.insert("first_use".into(), true.into());
            add_metadata(&mut row, extra);
        }
        if kind == Kind::UnlockPasscode && event.success {
            let used = code.usage_count + 1;
            let used_up = code.status == "ACTIVE" && code.max_usages > 0 && used >= code.max_usages;
            db::count_usage(conn, code.id, used_up, now).await?;
            if used_up {
                intents::on_revoke(conn, tenant, code.id, now).await?;
                exhausted = Some(exhausted_entry(tenant, &code, used, event.cursor));
            }
        }
    }
    let used_up = exhausted.is_some();
    let mut entries: Vec<AuditEntry> = missed.into_iter().collect();
    entries.push(row);
    entries.extend(exhausted);
    store::append(conn, entries, burst).await?;
    db::set_cursor(conn, tenant, event.cursor).await?;
    Ok(Applied::Recorded { exhausted: used_up })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlocks_keep_to_the_known_methods() {
        assert_eq!(method_of(Kind::UnlockPasscode), "PASSCODE");
        assert_eq!(method_of(Kind::UnlockApp), "MOBILE");
        assert_eq!(method_of(Kind::UnlockCard), "CARD");
        assert_eq!(method_of(Kind::UnlockRemote), "REMOTE");
        for kind in [Kind::UnlockFingerprint, Kind::UnlockKey, Kind::UnlockOther] {
            assert_eq!(method_of(kind), "MANUAL");
        }
        assert_eq!(method_of(Kind::LowBattery), "");
    }

    #[test]
    fn kinds_become_actions_with_their_reasons() {
        let (action, success, code, _) = classify(Kind::UnlockCard, true);
        assert_eq!(
            (action, success, code.as_str()),
            (AuditAction::Unlock, true, "DEVICE_UNLOCK")
        );
        let (action, success, code, reason) = classify(Kind::WrongPasscode, false);
        assert_eq!(
            (action, success, code.as_str(), reason.as_str()),
            (
                AuditAction::AccessDenied,
                false,
                "CODE_INVALID",
                "wrong code on the keypad"
            )
        );
        assert_eq!(classify(Kind::Lock, true).0, AuditAction::Lock);
        let (action, success, code, _) = classify(Kind::LowBattery, true);
        assert_eq!(
            (action, success, code.as_str()),
            (AuditAction::DeviceEvent, true, "LOW_BATTERY")
        );
        let (action, success, code, _) = classify(Kind::PasscodeFailed, false);
        assert_eq!(
            (action, success, code.as_str()),
            (AuditAction::DeviceEvent, false, "PASSCODE_FAILED")
        );
        assert_eq!(
            classify(Kind::UnlockCard, false).0,
            AuditAction::AccessDenied
        );
    }

    #[test]
    fn door_status_follows_what_the_lock_reports() {
        assert_eq!(
            status_change(Kind::UnlockPasscode, true),
            Some(("UNLOCKED", None))
        );
        assert_eq!(status_change(Kind::UnlockPasscode, false), None);
        assert_eq!(status_change(Kind::Lock, true), Some(("LOCKED", None)));
        assert_eq!(
            status_change(Kind::LowBattery, true),
            Some(("LOW_BATTERY", None))
        );
        assert_eq!(
            status_change(Kind::GatewayOffline, true),
            Some(("OFFLINE", None))
        );
        assert_eq!(
            status_change(Kind::LockOnline, true),
            Some(("LOCKED", Some("OFFLINE")))
        );
        assert_eq!(status_change(Kind::WrongPasscode, false), None);
        assert_eq!(status_change(Kind::PasscodeSet, true), None);
    }
}
