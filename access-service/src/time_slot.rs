//! Weekly time slots of access rules: validation and the stored JSON shape, shared by
//! rule management and evaluation.

use latchkey::error::FieldViolations;
use serde::{Deserialize, Serialize};

/// Minutes in a day; `"24:00"` is the end of the day.
pub const MINUTES_PER_DAY: u16 = 24 * 60;

/// One slot as stored in `rules.time_slots`:
/// `{"day_of_week": 5, "start": "22:00", "end": "06:00"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSlot {
    /// 0 = Sunday ... 6 = Saturday.
    pub day_of_week: i32,
    /// "HH:MM", 00:00 to 23:59.
    pub start: String,
    /// "HH:MM", 00:00 to 24:00; before `start` runs across midnight.
    pub end: String,
}

/// Parses "HH:MM" into minutes since midnight. `allow_end_of_day` admits "24:00".
pub fn parse_hhmm(value: &str, allow_end_of_day: bool) -> Option<u16> {
    let bytes = value.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return None;
    }
    let digits = |pair: &[u8]| -> Option<u16> {
        pair.iter().try_fold(0u16, |acc, b| {
            b.is_ascii_digit().then(|| acc * 10 + u16::from(b - b'0'))
        })
    };
    let hours = digits(&bytes[..2])?;
    let minutes = digits(&bytes[3..])?;
    match (hours, minutes) {
        (0..=23, 0..=59) => Some(hours * 60 + minutes),
        (24, 0) if allow_end_of_day => Some(MINUTES_PER_DAY),
        _ => None,
    }
}

/// Checks one slot; violations name `{field}.day_of_week`, `{field}.start` and
/// `{field}.end`. An end before the start is valid: the slot runs across midnight.
pub fn validate_slot(
    day: i32,
    start: &str,
    end: &str,
    field: &str,
    violations: &mut FieldViolations,
) {
    if !(0..=6).contains(&day) {
        violations.add(
            format!("{field}.day_of_week"),
            "must be 0 (Sunday) to 6 (Saturday)",
        );
    }
    let start_minutes = parse_hhmm(start, false);
    if start_minutes.is_none() {
        violations.add(
            format!("{field}.start"),
            "must be \"HH:MM\" from 00:00 to 23:59",
        );
    }
    match parse_hhmm(end, true) {
        None => violations.add(
            format!("{field}.end"),
            "must be \"HH:MM\" from 00:00 to 24:00",
        ),
        Some(end) if Some(end) == start_minutes => {
            violations.add(format!("{field}.end"), "must differ from start");
        }
        Some(_) => {}
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    fn fields(day: i32, start: &str, end: &str) -> Vec<String> {
        let mut v = FieldViolations::default();
        validate_slot(day, start, end, "s", &mut v);
        v.fields().into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn accepts_day_slots_overnight_slots_and_the_end_of_the_day() {
        assert!(fields(0, "09:00", "17:30").is_empty());
        assert!(fields(5, "22:00", "06:00").is_empty(), "across midnight");
        assert!(fields(6, "00:00", "24:00").is_empty());
        assert!(fields(3, "23:59", "00:00").is_empty());
    }

    #[test]
    fn names_each_bad_part() {
        assert_eq!(fields(7, "09:00", "10:00"), ["s.day_of_week"]);
        assert_eq!(fields(-1, "09:00", "10:00"), ["s.day_of_week"]);
        assert_eq!(fields(1, "24:00", "10:00"), ["s.start"]);
        assert_eq!(fields(1, "9:00", "10:00"), ["s.start"]);
        assert_eq!(fields(1, "09:60", "10:00"), ["s.start"]);
        assert_eq!(fields(1, "09:00", "24:01"), ["s.end"]);
        assert_eq!(fields(1, "09:00", "+1:00"), ["s.end"]);
        assert_eq!(fields(1, "09:00", "09:00"), ["s.end"], "empty slot");
        assert_eq!(fields(1, "", ""), ["s.start", "s.end"]);
    }

    #[test]
    fn parses_minutes() {
        assert_eq!(parse_hhmm("00:00", false), Some(0));
        assert_eq!(parse_hhmm("23:59", false), Some(1439));
        assert_eq!(parse_hhmm("24:00", false), None);
        assert_eq!(parse_hhmm("24:00", true), Some(MINUTES_PER_DAY));
        assert_eq!(parse_hhmm("１2:00", true), None);
    }

    #[test]
    fn stored_shape_is_the_one_evaluation_reads() {
        let slot = StoredSlot {
            day_of_week: 5,
            start: "22:00".into(),
            end: "06:00".into(),
        };
        assert_eq!(
            serde_json::to_string(&[slot]).unwrap(),
            r#"[{"day_of_week":5,"start":"22:00","end":"06:00"}]"#
        );
    }
}
