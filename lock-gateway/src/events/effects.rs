//! What events do to the cached lock (battery, bolt, reachability), and the events those
//! changes imply in turn.

use chrono::{DateTime, Utc};

use super::{Event, Kind, MaskedRecord, Source};
use crate::crypto::Sealer;
use crate::db::locks::LockRow;
use crate::records;

/// A battery reading that crosses to or below the threshold (or is the first reading and
/// already low) is news; staying low is not.
pub fn battery_fell(previous: i32, current: i32, threshold: i32) -> bool {
    current >= 0 && current <= threshold && (previous < 0 || previous > threshold)
}

/// Applies a record to the cached lock; returns the low-battery event it implies, if any.
pub fn apply_record(
    row: &mut LockRow,
    record: &MaskedRecord,
    source: Source,
    threshold: i32,
    sealer: &Sealer,
) -> Option<Event> {
    let mut implied = None;
    if let Some(battery) = record.battery.filter(|b| (0..=100).contains(b)) {
        let reading_time = record
            .server_date
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or_else(Utc::now);
        if row.battery_time.is_none_or(|t| t <= reading_time) {
            if battery_fell(row.battery_percent, battery, threshold) {
                let mut event = Event::new(row.account_id, row.lock_id, Kind::LowBattery, source);
                event.battery_percent = battery;
                event.occur_time = reading_time;
                event.detail = format!("battery at {battery}%, threshold {threshold}%");
                event.dedupe_key = Some(sealer.digest(&[b"low-battery", record.dedupe.as_bytes()]));
                implied = Some(event);
            }
            row.battery_percent = battery;
            row.battery_time = Some(reading_time);
        }
    }
    let kind = record.kind();
    let bolt = if record.success && records::is_unlock(kind) {
        Some("UNLOCKED")
    } else if record.success && kind == Kind::Lock {
        Some("LOCKED")
    } else {
        None
    };
    if let Some(bolt) = bolt {
        let at = record.occur_time();
        if row.bolt_time.is_none_or(|t| t <= at) {
            row.bolt = bolt.to_owned();
            row.bolt_time = Some(at);
        }
    }
    implied
}

/// Sets whether the lock is reachable; returns the online or offline event when that
/// changed.
pub fn apply_online(
    row: &mut LockRow,
    online: bool,
    source: Source,
    gateway_id: i64,
    at: DateTime<Utc>,
) -> Option<Event> {
    if row.online == online {
        return None;
    }
    row.online = online;
    let kind = if online {
        Kind::LockOnline
    } else {
        Kind::LockOffline
    };
    let mut event = Event::new(row.account_id, row.lock_id, kind, source);
    event.gateway_id = gateway_id;
    event.occur_time = at;
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_fall_to_the_threshold_is_news() {
        assert!(battery_fell(90, 20, 20));
        assert!(battery_fell(-1, 10, 20));
        assert!(!battery_fell(15, 10, 20));
        assert!(!battery_fell(90, 21, 20));
        assert!(!battery_fell(90, -1, 20));
    }
}
