//! Which audit rows are events, and their typed form. A row projects to at most one
//! event of its own kind, plus a SUSPICIOUS_ACTIVITY event when it completed a burst of
//! failures and a GUEST_ARRIVED event when it is a guest code's first entry; those share
//! the row's cursor and have ids of their own.

use chrono::{DateTime, Utc};
use latchkey::pb::access::v1 as pb;
use latchkey::pb::timestamp;
use pb::EventKind as Kind;
use serde_json::Value;

use super::cursor::{self, Position};
use crate::code_keys::CodeKeys;
pub use crate::db::events::Row;
use crate::device_events::apply::ACTOR as DEVICE;

fn method_from_name(name: &str) -> pb::AccessMethod {
    pb::AccessMethod::from_str_name(&format!("ACCESS_METHOD_{name}"))
        .unwrap_or(pb::AccessMethod::Unspecified)
}

/// The row's own kind, if it is an event at all, and how a bolt moved.
fn kind_of(row: &Row, device_kind: &str, code_status: &str) -> Option<(Kind, &'static str)> {
    let device = row.actor == DEVICE;
    Some(match row.action.as_str() {
        "ACCESS_GRANTED" => (Kind::AccessGranted, ""),
        // The lock itself refused a credential.
        "ACCESS_DENIED" if device => (Kind::EntryRefused, ""),
        "ACCESS_DENIED" => (Kind::AccessDenied, ""),
        "UNLOCK" if row.success && device => (Kind::DoorUnlocked, via(device_kind)),
        "UNLOCK" if row.success => (Kind::DoorUnlocked, "REMOTE"),
        "EMERGENCY_UNLOCK" if row.success => (Kind::DoorUnlocked, "EMERGENCY"),
        "UNLOCK" | "EMERGENCY_UNLOCK" | "UNLOCK_FAILED" => (Kind::UnlockFailed, ""),
        "LOCK" if device => (Kind::DoorLocked, via(device_kind)),
        "LOCK" => (Kind::DoorLocked, "REMOTE"),
        "ADMIN_UPDATE" if row.target_type == "access_code" => match code_status {
            "EXPIRED" => (Kind::CodeExpired, ""),
            "REVOKED" | "EXHAUSTED" => (Kind::CodeRevoked, ""),
            _ => return None,
        },
        "DEVICE_EVENT" => match row.reason_code.as_str() {
            "PASSCODE_SET" => (Kind::CodeSetOnLock, ""),
            "PASSCODE_FAILED" => (Kind::CodeSetFailed, ""),
            "PASSCODE_REMOVED" => (Kind::CodeRemoved, ""),
            "LOW_BATTERY" => (Kind::LockBatteryLow, ""),
            "LOCK_OFFLINE" | "GATEWAY_OFFLINE" => (Kind::LockOffline, ""),
            "LOCK_ONLINE" | "GATEWAY_ONLINE" => (Kind::LockOnline, ""),
            _ => return None,
        },
        _ => return None,
    })
}

/// How a lock reported it was opened.
fn via(device_kind: &str) -> &'static str {
    match device_kind {
        "UNLOCK_PASSCODE" => "KEYPAD",
        "UNLOCK_APP" => "APP",
        "UNLOCK_CARD" => "CARD",
        "UNLOCK_REMOTE" => "REMOTE",
        "UNLOCK_FINGERPRINT" => "FINGERPRINT",
        "UNLOCK_KEY" => "KEY",
        _ => "OTHER",
    }
}

fn text<'a>(metadata: &'a Value, key: &str) -> &'a str {
    metadata
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The events of `row`, each with its own cursor.
pub fn project(row: &Row, tenant_id: &str, keys: &CodeKeys) -> Vec<pb::Event> {
    let metadata: Value = if row.metadata.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&row.metadata).unwrap_or(Value::Null)
    };
    let device_kind = text(&metadata, "kind");
    let own = kind_of(row, device_kind, text(&metadata, "status"));
    let suspicious = row.flagged;
    // A code's own row names it as its target; a lock's report, in its metadata.
    let code_id = if row.target_type == "access_code" {
        row.target_id.as_str()
    } else {
        text(&metadata, "code_id")
    };
    let arrived = row.action == "UNLOCK"
        && row.success
        && !code_id.is_empty()
        && text(&metadata, "grantee_type") == "GUEST"
        && metadata.get("first_use").and_then(Value::as_bool) == Some(true);
    if own.is_none() && !suspicious {
        return Vec::new();
    }
    let occurred = DateTime::parse_from_rfc3339(text(&metadata, "occur_time"))
        .map_or(row.time, |at| at.with_timezone(&Utc));
    let code = (!code_id.is_empty()).then(|| pb::EventCode {
        code_id: code_id.to_owned(),
        grantee_type: text(&metadata, "grantee_type").to_owned(),
        grantee_name: row.user_name.clone(),
    });
    let battery = metadata
        .get("battery_percent")
        .and_then(Value::as_i64)
        .and_then(|percent| i32::try_from(percent).ok())
        .unwrap_or(-1);
    let event = |id: String, kind: Kind, via: &str| pb::Event {
        id,
        cursor: String::new(),
        tenant_id: tenant_id.to_owned(),
        kind: kind as i32,
        occurred_time: Some(timestamp(occurred)),
        record_time: Some(timestamp(row.time)),
        property_id: row.property_id.clone(),
        door_id: row.door_id.clone(),
        door_name: row.door_name.clone(),
        user_id: row.user_id.clone(),
        user_name: row.user_name.clone(),
        code: code.clone(),
        method: method_from_name(&row.method) as i32,
        success: row.success,
        reason_code: row.reason_code.clone(),
        reason: row.reason.clone(),
        battery_percent: if kind == Kind::LockBatteryLow {
            battery
        } else {
            -1
        },
        via: via.to_owned(),
        sequence: row.sequence,
    };
    let mut events = Vec::with_capacity(1);
    if let Some((kind, via)) = own {
        events.push(event(row.sequence.to_string(), kind, via));
    }
    if arrived {
        events.push(event(
            format!("{}-arrival", row.sequence),
            Kind::GuestArrived,
            "",
        ));
    }
    if suspicious {
        events.push(event(
            format!("{}-suspicious", row.sequence),
            Kind::SuspiciousActivity,
            "",
        ));
    }
    for (index, event) in events.iter_mut().enumerate() {
        let index = u8::try_from(index).unwrap_or(Position::WHOLE_ROW - 1);
        event.cursor = cursor::encode(
            keys,
            tenant_id,
            Position {
                sequence: row.sequence,
                index,
            },
        );
    }
    events
}

/// Whether the decision kinds are what makes `row` an event: the tail can leave their
/// metadata out.
pub fn is_decision(kind: i32) -> bool {
    kind == Kind::AccessGranted as i32 || kind == Kind::AccessDenied as i32
}
