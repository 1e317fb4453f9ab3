//! Field checks shared by the passcode and record calls. Descriptions never echo the
//! value: a rejected code is still a code.

use latchkey::error::FieldViolations;
use prost_types::Timestamp;
use uuid::Uuid;

use crate::ttlock::PasscodeText;

/// Longest passcode name accepted (TTLock documents no limit; this keeps lists legible).
pub const MAX_NAME_CHARS: usize = 100;

pub fn account(value: &str, violations: &mut FieldViolations) -> Uuid {
    Uuid::try_parse(value).unwrap_or_else(|_| {
        violations.add("account_id", "must be an account id (UUID)");
        Uuid::nil()
    })
}

pub fn lock_id(value: i64, violations: &mut FieldViolations) {
    if value <= 0 {
        violations.add("lock_id", "must be a TTLock lock id");
    }
}

pub fn passcode_id(value: i64, violations: &mut FieldViolations) {
    if value <= 0 {
        violations.add("passcode_id", "must be a TTLock passcode id");
    }
}

/// 4 to 9 ASCII digits, kept as text for their leading zeros (TTLock's custom range).
pub fn code(field: &str, code: &PasscodeText, violations: &mut FieldViolations) {
    let digits = code.expose();
    if !(4..=9).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        violations.add(field, "must be 4 to 9 digits");
    }
}

pub fn name(value: &str, violations: &mut FieldViolations) {
    if value.chars().count() > MAX_NAME_CHARS || value.contains('\0') {
        violations.add(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters, without NUL"),
        );
    }
}

/// A write's request id: required, so a retried call never writes twice.
pub fn request_id(value: &str, violations: &mut FieldViolations) {
    if value.is_empty() {
        violations.add(
            "request_id",
            "is required, so a retried call never writes the lock twice",
        );
    }
    latchkey::pagination::request_id(value, violations);
}

/// An instant as epoch milliseconds, from 1970 on. Nanos past a second are refused
/// (protobuf's rule), though chrono would read them as a leap second.
pub fn epoch_ms(field: &str, at: &Timestamp, violations: &mut FieldViolations) -> Option<i64> {
    let instant = (0..1_000_000_000)
        .contains(&at.nanos)
        .then(|| latchkey::pb::from_timestamp(at))
        .flatten();
    match instant {
        Some(at) if at.timestamp() >= 0 => Some(at.timestamp_millis()),
        _ => {
            violations.add(field, "must be a valid instant from 1970 on");
            None
        }
    }
}

/// A validity window: both ends or neither, the end after the start.
pub fn window(
    start: Option<&Timestamp>,
    end: Option<&Timestamp>,
    violations: &mut FieldViolations,
) -> Option<(i64, i64)> {
    match (start, end) {
        (None, None) => None,
        (Some(_), None) => {
            violations.add("end_time", "is required with start_time");
            None
        }
        (None, Some(_)) => {
            violations.add("start_time", "is required with end_time");
            None
        }
        (Some(start), Some(end)) => {
            let start = epoch_ms("start_time", start, violations);
            let end = epoch_ms("end_time", end, violations);
            let (start, end) = (start?, end?);
            if end <= start {
                violations.add("end_time", "must be after start_time");
                return None;
            }
            Some((start, end))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    fn fields_of(check: impl FnOnce(&mut FieldViolations)) -> Vec<String> {
        let mut violations = FieldViolations::default();
        check(&mut violations);
        violations.fields().into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn codes_are_four_to_nine_digits() {
        for ok in ["0506", "482913", "123456789"] {
            assert!(
                fields_of(|v| code("code", &ok.into(), v)).is_empty(),
                "{ok}"
            );
        }
        for bad in ["", "123", "1234567890", "12a4", "١٢٣٤", " 1234"] {
            assert_eq!(
                fields_of(|v| code("code", &bad.into(), v)),
                ["code"],
                "{bad}"
            );
        }
    }

    #[test]
    fn names_are_bounded_and_have_no_nul() {
        assert!(fields_of(|v| name(&"é".repeat(100), v)).is_empty());
        assert_eq!(fields_of(|v| name(&"a".repeat(101), v)), ["name"]);
        assert_eq!(fields_of(|v| name("a\0b", v)), ["name"]);
    }

    #[test]
    fn windows_need_both_ends_in_order() {
        let mut v = FieldViolations::default();
        assert_eq!(window(None, None, &mut v), None);
        assert_eq!(
            window(Some(&ts(10)), Some(&ts(20)), &mut v),
            Some((10_000, 20_000))
        );
        assert!(v.is_empty());
        assert_eq!(
            fields_of(|v| {
                let _ = window(Some(&ts(10)), None, v);
            }),
            ["end_time"]
        );
        assert_eq!(
            fields_of(|v| {
                let _ = window(None, Some(&ts(10)), v);
            }),
            ["start_time"]
        );
        assert_eq!(
            fields_of(|v| {
                let _ = window(Some(&ts(20)), Some(&ts(20)), v);
            }),
            ["end_time"]
        );
        assert_eq!(
            fields_of(|v| {
                let _ = window(Some(&ts(-5)), Some(&ts(20)), v);
            }),
            ["start_time"]
        );
        let bad_nanos = Timestamp {
            seconds: 10,
            nanos: -1,
        };
        assert_eq!(
            fields_of(|v| {
                let _ = window(Some(&ts(5)), Some(&bad_nanos), v);
            }),
            ["end_time"]
        );
        let leap = Timestamp {
            seconds: 59,
            nanos: 1_500_000_000,
        };
        assert_eq!(
            fields_of(|v| {
                let _ = window(Some(&ts(5)), Some(&leap), v);
            }),
            ["end_time"]
        );
    }

    #[test]
    fn write_request_ids_are_required() {
        assert_eq!(fields_of(|v| request_id("", v)), ["request_id"]);
        assert_eq!(fields_of(|v| request_id("has space", v)), ["request_id"]);
        assert!(fields_of(|v| request_id("req-1", v)).is_empty());
    }
}
