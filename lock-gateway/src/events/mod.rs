//! Device events: what happened at the locks, from callbacks, from the locks' records,
//! from sync differences and from this gateway's own operations, appended once each and
//! streamed to consumers by cursor.

pub mod callback;
pub mod effects;
pub mod inbox;
pub mod watch;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use latchkey::pb::gateway::v1 as pb;
use latchkey::pb::timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto::Sealer;
use crate::db::events::{self, EventRow};
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
    /// A callback record's delivery; see [`MaskedRecord`].
    pub delivery_key: Option<Vec<u8>>,
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
            delivery_key: None,
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
            delivery_key: self.delivery_key,
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

/// A lock record with its credential masked and replaced by keyed digests: the only
/// form in which records are stored or passed on.
///
/// Which record it is. Callbacks carry no recordId, so a record is known by what it says
/// (`dedupe`: lock, cloud type, success, lock time in whole seconds, credential), and
/// records alike (one code typed twice in a second, two remote locks) are counted: the
/// n-th is the event keyed `occurrence_key(dedupe, n)` (`db::events`).
/// - The records read lists records alike together (they share a lock second, so its
///   window holds all or none of them): their order among themselves counts them.
/// - A callback carries serverDate, the cloud's stamp of the upload to the millisecond.
///   `delivery` digests it with the record and its place among records alike in that
///   callback, so TTLock's redelivery, in any body, is the delivery already stored,
///   while another upload alike is a new delivery. That takes the first occurrence no
///   delivery holds; one the records read stored is this very record, not a new one.
///
/// The two sources are not matched on serverDate: whether the record list gives it to
/// the millisecond is unconfirmed (the reference's sample of it has whole seconds).
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
    /// Hex of the digest of what the record says, credential included; the key of the
    /// first record alike.
    pub dedupe: String,
    /// From a callback: hex of the digest naming this delivery of the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// From the records read: how many records alike came before it in that read.
    #[serde(default)]
    pub alike_before: u32,
}

impl MaskedRecord {
    /// Masks the records of one callback, each named by its delivery.
    pub fn delivered(sealer: &Sealer, lock_id: i64, records: &[LockRecord]) -> Vec<Self> {
        let mut places: HashMap<(String, i64), u32> = HashMap::new();
        records
            .iter()
            .map(|record| {
                let mut masked = Self::of(sealer, lock_id, record);
                let server_date = masked.server_date.unwrap_or(0);
                let place = places
                    .entry((masked.dedupe.clone(), server_date))
                    .or_default();
                let delivery = sealer.digest(&[
                    b"record-delivery",
                    masked.dedupe.as_bytes(),
                    &server_date.to_be_bytes(),
                    &place.to_be_bytes(),
                ]);
                *place += 1;
                masked.delivery = Some(hex::encode(delivery));
                masked
            })
            .collect()
    }

    /// Masks the records of one records read, each counted among the records alike.
    pub fn listed(sealer: &Sealer, lock_id: i64, records: &[LockRecord]) -> Vec<Self> {
        let mut alike: HashMap<String, u32> = HashMap::new();
        records
            .iter()
            .map(|record| {
                let mut masked = Self::of(sealer, lock_id, record);
                let before = alike.entry(masked.dedupe.clone()).or_default();
                masked.alike_before = *before;
                *before += 1;
                masked
            })
            .collect()
    }

    /// Masks a record as it arrives. `lock_id` stands in when the record lacks its own.
    fn of(sealer: &Sealer, lock_id: i64, record: &LockRecord) -> Self {
        let lock_id = record.lock_id.unwrap_or(lock_id);
        let credential = record
            .keyboard_pwd
            .as_ref()
            .map(|c| c.expose().to_owned())
            .unwrap_or_default();
        let success = record.success.unwrap_or(false);
        // Without recordTypeFromLock, recordId, the username or serverDate: callbacks and
        // the record list do not both carry them alike.
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
            delivery: None,
            alike_before: 0,
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
            // A delivery's occurrence is settled when it is appended.
            dedupe_key: hex::decode(&self.dedupe)
                .ok()
                .map(|record| match self.delivery {
                    Some(_) => record,
                    None => events::occurrence_key(&record, self.alike_before),
                }),
            delivery_key: self.delivery.as_deref().and_then(|d| hex::decode(d).ok()),
        }
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn records(json: &str) -> Vec<LockRecord> {
        serde_json::from_str(json).unwrap()
    }

    /// The same entry, its lock second and serverDate given.
    fn entry(lock_date: i64, server_date: i64) -> String {
        format!(
            r#"{{"lockId":7,"recordType":4,"success":1,"keyboardPwd":"480263","lockDate":{lock_date},"serverDate":{server_date}}}"#
        )
    }

    #[test]
    fn deliveries_tell_uploads_apart_and_know_a_redelivery() {
        let sealer = Sealer::new("k", &SecretString::from(KEY.to_owned()), None).unwrap();
        let a = entry(1_000, 1_029);
        let b = entry(1_000, 1_517);
        let one = MaskedRecord::delivered(&sealer, 7, &records(&format!("[{a},{b},{b}]")));
        assert!(
            one.iter().all(|r| r.dedupe == one[0].dedupe),
            "records alike"
        );
        let deliveries: Vec<_> = one.iter().map(|r| r.delivery.clone().unwrap()).collect();
        assert_ne!(deliveries[0], deliveries[1], "another upload");
        assert_ne!(deliveries[1], deliveries[2], "a batch holding two alike");
        let again = MaskedRecord::delivered(&sealer, 7, &records(&format!("[{b},{b}]")));
        assert_eq!(again[0].delivery.as_ref(), Some(&deliveries[1]));
        assert_eq!(again[1].delivery.as_ref(), Some(&deliveries[2]));
        // Until it is appended, a delivery's event carries the record's own digest.
        let event = one[0].event(Uuid::nil(), Source::Callback);
        assert_eq!(event.dedupe_key, hex::decode(&one[0].dedupe).ok());
    }

    #[test]
    fn a_records_read_counts_records_alike() {
        let sealer = Sealer::new("k", &SecretString::from(KEY.to_owned()), None).unwrap();
        let read = MaskedRecord::listed(
            &sealer,
            7,
            &records(&format!(
                "[{},{},{}]",
                entry(1_000, 1_000),
                entry(2_000, 2_000),
                entry(1_000, 1_000)
            )),
        );
        let counted: Vec<u32> = read.iter().map(|r| r.alike_before).collect();
        assert_eq!(counted, [0, 0, 1]);
        let keys: Vec<_> = read
            .iter()
            .map(|r| r.event(Uuid::nil(), Source::Records).dedupe_key.unwrap())
            .collect();
        assert_eq!(keys[0], hex::decode(&read[0].dedupe).unwrap());
        assert_ne!(keys[0], keys[2]);
        assert_eq!(keys[2], events::occurrence_key(&keys[0], 1));
        assert!(read.iter().all(|r| r.delivery.is_none()));
    }
}
