//! Device events: what happened at the locks, from callbacks, from the locks' records,
//! from sync differences and from this gateway's own operations, appended once each and
//! streamed to consumers by cursor.

pub mod callback;
pub mod effects;
pub mod inbox;
pub mod watch;

use chrono::{DateTime, Utc};
use latchkey::pb::gateway::v1 as pb;
use latchkey::pb::timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto::Sealer;
use crate::db::events::EventRow;
use crate::records;
use crate::ttlock::types::LockRecord;

pub use pb::{DeviceEventKind as Kind, EventSource as Source};

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct Event {
    pub account_id: Option<Uuid>,
    pub lock_id: i64,
    pub kind: Kind,
    pub source: Source,
    pub success: bool,
    pub credential: String,
    pub username: String,
    pub battery_percent: i32,
    pub record_type: i32,
    pub passcode_id: i64,
    pub gateway_id: i64,
    pub occur_time: DateTime<Utc>,
    pub detail: String,
    pub dedupe_key: Option<Vec<u8>>,
}

impl Event {
    /// An event with nothing but its subject and kind.
    pub fn new(account_id: Uuid, lock_id: i64, kind: Kind, source: Source) -> Self {
        Self {
            account_id: Some(account_id),
            lock_id,
            kind,
            source,
            success: true,
            credential: String::new(),
            username: String::new(),
            battery_percent: -1,
            record_type: 0,
            passcode_id: 0,
            gateway_id: 0,
            occur_time: Utc::now(),
            detail: String::new(),
            dedupe_key: None,
        }
    }

    pub fn row(self) -> EventRow {
        EventRow {
            tenant_id: String::new(),
            cursor: 0,
            account_id: self.account_id,
            lock_id: self.lock_id,
            kind: self.kind.as_str_name().to_owned(),
            source: self.source.as_str_name().to_owned(),
            success: self.success,
            credential: self.credential,
            username: self.username,
            battery_percent: self.battery_percent,
            record_type: self.record_type,
            passcode_id: self.passcode_id,
            gateway_id: self.gateway_id,
            occur_time: self.occur_time,
            receive_time: Utc::now(),
            detail: self.detail,
            dedupe_key: self.dedupe_key,
        }
    }
}

pub fn message(row: EventRow) -> pb::DeviceEvent {
    pb::DeviceEvent {
        cursor: row.cursor,
        account_id: row.account_id.map(|a| a.to_string()).unwrap_or_default(),
        lock_id: row.lock_id,
        kind: Kind::from_str_name(&row.kind).unwrap_or(Kind::Other) as i32,
        source: Source::from_str_name(&row.source).unwrap_or(Source::Unspecified) as i32,
        success: row.success,
        credential: row.credential,
        username: row.username,
        battery_percent: row.battery_percent,
        record_type: row.record_type,
        passcode_id: row.passcode_id,
        gateway_id: row.gateway_id,
        occur_time: Some(timestamp(row.occur_time)),
        receive_time: Some(timestamp(row.receive_time)),
        detail: row.detail,
    }
}

/// A lock record with its credential masked and replaced by a keyed digest: the only
/// form in which records are stored or passed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MaskedRecord {
    pub lock_id: i64,
    pub record_id: Option<i64>,
    pub record_type: Option<i32>,
    pub record_type_from_lock: Option<i32>,
    pub success: bool,
    pub username: Option<String>,
    pub credential: String,
    pub lock_date: Option<i64>,
    pub server_date: Option<i64>,
    pub battery: Option<i32>,
    /// Hex of the digest of what identifies the record, credential included.
    pub dedupe: String,
}

impl MaskedRecord {
    /// Masks a record as it arrives. `lock_id` stands in when the record lacks its own.
    pub fn of(sealer: &Sealer, lock_id: i64, record: &LockRecord) -> Self {
        let lock_id = record.lock_id.unwrap_or(lock_id);
        let credential = record
            .keyboard_pwd
            .as_ref()
            .map(|c| c.expose().to_owned())
            .unwrap_or_default();
        let success = record.success.unwrap_or(false);
        // The record's identity without recordTypeFromLock, recordId or the username:
        // callbacks and the record list do not both carry them.
        let dedupe = sealer.digest(&[
            b"record",
            &lock_id.to_be_bytes(),
            &record.record_type.unwrap_or(0).to_be_bytes(),
            &[u8::from(success)],
            &record.lock_date.unwrap_or(0).to_be_bytes(),
            credential.as_bytes(),
        ]);
        Self {
            lock_id,
            record_id: record.record_id,
            record_type: record.record_type,
            record_type_from_lock: record.record_type_from_lock,
            success,
            username: record.username.clone(),
            credential: records::mask(&credential),
            lock_date: record.lock_date,
            server_date: record.server_date,
            battery: record.electric_quantity,
            dedupe: hex::encode(dedupe),
        }
    }

    pub fn kind(&self) -> Kind {
        records::kind(self.record_type, self.record_type_from_lock, self.success)
    }

    /// When it happened: the lock's clock, else when the cloud received it.
    pub fn occur_time(&self) -> DateTime<Utc> {
        self.lock_date
            .or(self.server_date)
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or_else(Utc::now)
    }

    pub fn event(&self, account_id: Uuid, source: Source) -> Event {
        Event {
            account_id: Some(account_id),
            lock_id: self.lock_id,
            kind: self.kind(),
            source,
            success: self.success,
            credential: self.credential.clone(),
            username: self.username.clone().unwrap_or_default(),
            battery_percent: self.battery.unwrap_or(-1),
            record_type: self.record_type.or(self.record_type_from_lock).unwrap_or(0),
            passcode_id: 0,
            gateway_id: 0,
            occur_time: self.occur_time(),
            detail: String::new(),
            dedupe_key: hex::decode(&self.dedupe).ok(),
        }
    }
}
