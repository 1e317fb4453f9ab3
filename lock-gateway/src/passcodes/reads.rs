//! What TTLock says is on a lock (its passcodes) and what the lock recorded. Codes and
//! credentials are masked here, before anything leaves the gateway.

use chrono::{DateTime, Duration, Utc};
use latchkey::auth::Caller;
use latchkey::error::FieldViolations;
use latchkey::pb::gateway::v1 as pb;
use prost_types::Timestamp;

use super::input;
use super::outcome::read_error;
use crate::error::Result;
use crate::records;
use crate::state::AppState;
use crate::ttlock::types::{LockRecord, PasscodeEntry};

/// How far back `ListLockRecords` reads when no `since` is given.
pub const DEFAULT_RECORDS_WINDOW: Duration = Duration::hours(24);

/// An epoch-millisecond time as a timestamp; TTLock's 0 (e.g. a permanent passcode's
/// end) and absent values are no time at all.
fn time(ms: Option<i64>) -> Option<Timestamp> {
    ms.filter(|ms| *ms > 0)
        .and_then(DateTime::from_timestamp_millis)
        .map(latchkey::pb::timestamp)
}

fn passcode(entry: PasscodeEntry) -> pb::Passcode {
    pb::Passcode {
        passcode_id: entry.keyboard_pwd_id,
        name: entry
            .keyboard_pwd_name
            .or(entry.nick_name)
            .unwrap_or_default(),
        masked_code: entry
            .keyboard_pwd
            .as_ref()
            .map_or_else(String::new, |code| records::mask(code.expose())),
        r#type: entry.keyboard_pwd_type.unwrap_or(0),
        start_time: time(entry.start_date),
        end_time: time(entry.end_date),
        custom: entry.is_custom.unwrap_or(false),
        status: entry.status.unwrap_or(0),
        send_time: time(entry.send_date),
    }
}

fn record(record: LockRecord) -> pb::LockRecord {
    let success = record.success.unwrap_or(false);
    pb::LockRecord {
        record_id: record.record_id.unwrap_or(0),
        kind: records::kind(record.record_type, record.record_type_from_lock, success) as i32,
        record_type: record.record_type.unwrap_or(0),
        record_type_from_lock: record.record_type_from_lock.unwrap_or(0),
        success,
        credential: record
            .keyboard_pwd
            .as_ref()
            .map_or_else(String::new, |credential| records::mask(credential.expose())),
        username: record.username.unwrap_or_default(),
        lock_time: time(record.lock_date),
        server_time: time(record.server_date),
        battery_percent: record.electric_quantity.unwrap_or(-1),
    }
}

/// Every passcode TTLock lists for the lock, all pages, codes masked.
pub async fn list_passcodes(
    state: &AppState,
    caller: &Caller,
    account_id: &str,
    lock_id: i64,
) -> Result<Vec<pb::Passcode>> {
    let mut violations = FieldViolations::default();
    let account = input::account(account_id, &mut violations);
    input::lock_id(lock_id, &mut violations);
    violations.check()?;
    let client = state
        .accounts
        .client(&state.pool, &caller.tenant_id, account)
        .await?;
    let entries = client
        .passcodes(lock_id)
        .await
        .map_err(|e| read_error(&e, lock_id))?;
    Ok(entries.into_iter().map(passcode).collect())
}

/// The lock's records since `since` (by its clock; the last day when absent), typed,
/// credentials masked, as TTLock orders them (newest first).
pub async fn list_records(
    state: &AppState,
    caller: &Caller,
    account_id: &str,
    lock_id: i64,
    since: Option<&Timestamp>,
) -> Result<Vec<pb::LockRecord>> {
    let mut violations = FieldViolations::default();
    let account = input::account(account_id, &mut violations);
    input::lock_id(lock_id, &mut violations);
    let now = Utc::now();
    let since_ms = match since {
        None => Some((now - DEFAULT_RECORDS_WINDOW).timestamp_millis()),
        Some(since) => input::epoch_ms("since", since, &mut violations).and_then(|ms| {
            if ms > now.timestamp_millis() {
                violations.add("since", "must not be in the future");
                None
            } else {
                Some(ms)
            }
        }),
    };
    violations.check()?;
    let client = state
        .accounts
        .client(&state.pool, &caller.tenant_id, account)
        .await?;
    let records = client
        .records_since(lock_id, since_ms.unwrap_or(0))
        .await
        .map_err(|e| read_error(&e, lock_id))?;
    Ok(records.into_iter().map(record).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey::pb::gateway::v1::DeviceEventKind as Kind;

    fn entry(json: serde_json::Value) -> PasscodeEntry {
        serde_json::from_value(json).expect("passcode entry")
    }

    #[test]
    fn passcodes_are_masked_and_permanent_ones_have_no_end() {
        let listed = passcode(entry(serde_json::json!({
            "keyboardPwdId": 311183185, "keyboardPwd": "0506", "keyboardPwdName": "Guest",
            "keyboardPwdType": 2, "startDate": 1700000000000_i64, "endDate": 0,
            "isCustom": 1, "status": 1, "sendDate": 1700000000000_i64,
        })));
        assert_eq!(listed.masked_code, "****06");
        assert_eq!(listed.end_time, None);
        assert_eq!(listed.start_time.map(|t| t.seconds), Some(1_700_000_000));
        assert!(listed.custom);
        assert_eq!((listed.r#type, listed.status), (2, 1));
        assert!(!format!("{listed:?}").contains("0506"));
    }

    #[test]
    fn records_keep_their_kind_and_hide_the_credential() {
        let raw: LockRecord = serde_json::from_value(serde_json::json!({
            "recordId": 9, "recordType": 4, "recordTypeFromLock": 7, "success": 0,
            "username": null, "keyboardPwd": "482913", "lockDate": 1700000006000_i64,
            "serverDate": 1700000000000_i64,
        }))
        .expect("record");
        let shown = record(raw);
        assert_eq!(shown.kind, Kind::WrongPasscode as i32);
        assert_eq!(shown.credential, "****13");
        assert_eq!(shown.battery_percent, -1);
        assert_eq!(shown.username, "");
        assert_eq!(shown.lock_time.map(|t| t.seconds), Some(1_700_000_006));
    }
}
