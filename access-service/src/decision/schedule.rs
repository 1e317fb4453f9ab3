//! Weekly time slots and the door's wall clock.
//!
//! A rule's slots are folded once into sorted, merged spans of "minutes since Sunday
//! 00:00" (0..10080), so a check is a short scan and the end of the covering stretch is
//! known without walking slot by slot. Spans are wall-clock: turning a boundary back into
//! an instant is [`next_change`]'s job, which follows the door's UTC offset across
//! daylight-saving transitions.

use std::fmt;

use chrono::{
    DateTime, Datelike, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

const MINUTES_PER_DAY: u16 = 24 * 60;
const MINUTES_PER_WEEK: u16 = 7 * MINUTES_PER_DAY;
/// Weekday names indexed from Sunday, as slots number them.
const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
/// Offset changes one boundary search may step over; real zones change at most a few
/// times in the 8 days a search covers.
const MAX_SEGMENTS: usize = 8;

/// One weekly window of a rule, in the door's wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    /// 0 = Sunday ... 6 = Saturday.
    pub day: u8,
    /// Minute of the day the slot opens, 0..=1439.
    pub start: u16,
    /// Minute of the day the slot closes, 1..=1440 (1440 is "24:00"). Below `start` the
    /// slot runs across midnight and closes at `end` on the next day.
    pub end: u16,
}

/// Why a time slot was refused; [`SlotError::field`] names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("must be 0 (Sunday) to 6 (Saturday), got {0}")]
    Day(i32),
    #[error("must be \"HH:MM\" from 00:00 to 23:59")]
    Start,
    #[error("must be \"HH:MM\" from 00:00 to 24:00")]
    End,
    #[error("must differ from start")]
    Empty,
}

impl SlotError {
    /// The `TimeSlot` field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            SlotError::Day(_) => "day_of_week",
            SlotError::Start => "start",
            SlotError::End | SlotError::Empty => "end",
        }
    }
}

impl Slot {
    /// Parses a slot as the API carries it: a day 0..=6 and "HH:MM" times.
    pub fn parse(day: i32, start: &str, end: &str) -> Result<Slot, SlotError> {
        let day = u8::try_from(day)
            .ok()
            .filter(|d| *d < 7)
            .ok_or(SlotError::Day(day))?;
        let start = parse_hhmm(start)
            .filter(|m| *m < MINUTES_PER_DAY)
            .ok_or(SlotError::Start)?;
        let end = parse_hhmm(end)
            .filter(|m| *m <= MINUTES_PER_DAY)
            .ok_or(SlotError::End)?;
        if start == end {
            return Err(SlotError::Empty);
        }
        Ok(Slot { day, start, end })
    }

    /// Whether the fields are in range; [`Slot::parse`] only makes valid slots, but the
    /// fields are public and an invalid slot must never match.
    pub fn is_valid(&self) -> bool {
        self.day < 7
            && self.start < MINUTES_PER_DAY
            && self.end <= MINUTES_PER_DAY
            && self.start != self.end
    }

    /// Whether the slot runs across midnight into the next day.
    pub fn is_overnight(&self) -> bool {
        self.end < self.start
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let day = DAY_NAMES.get(usize::from(self.day)).copied().unwrap_or("?");
        write!(
            f,
            "{day} {:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// "HH:MM" with two digits each; the caller bounds the hour.
fn parse_hhmm(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    let digit = |i: usize| b[i].is_ascii_digit().then(|| u16::from(b[i] - b'0'));
    let hours = digit(0)? * 10 + digit(1)?;
    let minutes = digit(3)? * 10 + digit(4)?;
    (hours <= 24 && minutes < 60).then_some(hours * 60 + minutes)
}

/// Where a week minute stands against a rule's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    Covers,
    /// Not covered; the next start, in minutes from the start of the week (past 10080
    /// when it is next week).
    Opens(u32),
    /// No valid slot at all.
    Never,
}

/// When a rule applies within the week.
#[derive(Debug, Clone)]
pub(crate) enum Times {
    /// No slots: at any time.
    Always,
    /// Sorted, disjoint, non-adjacent `[start, end)` spans of minutes since Sunday
    /// 00:00. Empty when every slot was invalid: such a rule never matches.
    Weekly(Vec<(u16, u16)>),
}

impl Times {
    pub(crate) fn from_slots(slots: &[Slot]) -> Times {
        if slots.is_empty() {
            return Times::Always;
        }
        let mut raw = Vec::with_capacity(slots.len() + 1);
        for slot in slots.iter().filter(|s| s.is_valid()) {
            let base = u16::from(slot.day) * MINUTES_PER_DAY;
            let start = base + slot.start;
            let end = if slot.is_overnight() {
                base + MINUTES_PER_DAY + slot.end
            } else {
                base + slot.end
            };
            if end <= MINUTES_PER_WEEK {
                raw.push((start, end));
            } else {
                // Saturday night spills into Sunday morning of the same weekly pattern.
                raw.push((start, MINUTES_PER_WEEK));
                raw.push((0, end - MINUTES_PER_WEEK));
            }
        }
        raw.sort_unstable();
        let mut spans: Vec<(u16, u16)> = Vec::with_capacity(raw.len());
        for (start, end) in raw {
            match spans.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => spans.push((start, end)),
            }
        }
        Times::Weekly(spans)
    }

    /// Whether the rule applies at `pos` and, if not, when it next starts.
    pub(crate) fn probe(&self, pos: u16) -> Probe {
        let Times::Weekly(spans) = self else {
            return Probe::Covers;
        };
        for &(start, end) in spans {
            if start > pos {
                return Probe::Opens(u32::from(start));
            }
            if pos < end {
                return Probe::Covers;
            }
        }
        spans.first().map_or(Probe::Never, |&(start, _)| {
            Probe::Opens(u32::from(MINUTES_PER_WEEK) + u32::from(start))
        })
    }

    pub(crate) fn covers(&self, pos: u16) -> bool {
        match self {
            Times::Always => true,
            Times::Weekly(spans) => spans
                .iter()
                .take_while(|(start, _)| *start <= pos)
                .any(|(_, end)| pos < *end),
        }
    }

    /// Where the covered stretch holding `pos` ends, in minutes from the start of
    /// `pos`'s week (past 10080 when it runs into next week); `None` when it never ends.
    fn cover_end(&self, pos: u16) -> Option<u32> {
        let Times::Weekly(spans) = self else {
            return None;
        };
        let &(start, end) = spans
            .iter()
            .find(|(start, end)| *start <= pos && pos < *end)?;
        if start == 0 && end == MINUTES_PER_WEEK {
            return None;
        }
        if end == MINUTES_PER_WEEK
            && let Some(&(0, next)) = spans.first()
        {
            return Some(u32::from(MINUTES_PER_WEEK) + u32::from(next));
        }
        Some(u32::from(end))
    }

    /// The first wall-clock time from `wall` on at which the rule stops applying.
    pub(crate) fn end_from(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
        let pos = week_minute(wall);
        if !self.covers(pos) {
            return Some(wall);
        }
        week_start(wall)?.checked_add_signed(TimeDelta::minutes(i64::from(self.cover_end(pos)?)))
    }

    /// The first wall-clock time from `wall` on at which the rule applies.
    pub(crate) fn start_from(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
        first_start(std::iter::once(self), wall)
    }

    /// The slot-shaped description of the stretch covering `pos`, for explanations.
    pub(crate) fn describe_at(&self, pos: u16) -> String {
        match self {
            Times::Always => "any time".to_owned(),
            Times::Weekly(spans) => spans
                .iter()
                .find(|(start, end)| *start <= pos && pos < *end)
                .map(|&(start, end)| format!("{}-{}", format_pos(start), format_pos(end)))
                .unwrap_or_else(|| "no slot".to_owned()),
        }
    }
}

/// The first wall-clock time from `wall` on at which any of `times` applies.
pub(crate) fn first_start<'a>(
    times: impl Iterator<Item = &'a Times>,
    wall: NaiveDateTime,
) -> Option<NaiveDateTime> {
    let pos = week_minute(wall);
    let mut first: Option<u32> = None;
    for times in times {
        match times.probe(pos) {
            Probe::Covers => return Some(wall),
            Probe::Opens(start) => first = Some(first.map_or(start, |f| f.min(start))),
            Probe::Never => {}
        }
    }
    at_week_minute(wall, first?)
}

/// The wall-clock time `minutes` after Sunday 00:00 of `wall`'s week.
pub(crate) fn at_week_minute(wall: NaiveDateTime, minutes: u32) -> Option<NaiveDateTime> {
    week_start(wall)?.checked_add_signed(TimeDelta::minutes(i64::from(minutes)))
}

/// Minutes since Sunday 00:00 of a wall-clock time.
pub(crate) fn week_minute(wall: NaiveDateTime) -> u16 {
    // Both factors are bounded (weekday < 7, hour < 24, minute < 60), so this fits u16.
    let day = wall.weekday().num_days_from_sunday() as u16;
    day * MINUTES_PER_DAY + wall.hour() as u16 * 60 + wall.minute() as u16
}

/// "Sat 03:00" for a week minute; 10080 reads as "Sun 00:00" of the next week.
pub(crate) fn format_pos(pos: u16) -> String {
    let pos = pos % MINUTES_PER_WEEK;
    let day = DAY_NAMES
        .get(usize::from(pos / MINUTES_PER_DAY))
        .copied()
        .unwrap_or("?");
    let minute = pos % MINUTES_PER_DAY;
    format!("{day} {:02}:{:02}", minute / 60, minute % 60)
}

/// Sunday 00:00 of the week holding `wall`.
fn week_start(wall: NaiveDateTime) -> Option<NaiveDateTime> {
    let back = chrono::Days::new(u64::from(wall.weekday().num_days_from_sunday()));
    Some(wall.date().checked_sub_days(back)?.and_time(NaiveTime::MIN))
}

/// The door's UTC offset at `at`.
pub(crate) fn utc_offset(tz: Tz, at: DateTime<Utc>) -> TimeDelta {
    let seconds = tz
        .offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .local_minus_utc();
    TimeDelta::seconds(i64::from(seconds))
}

/// The first instant from `from` on, and before `limit`, at which the door's wall clock
/// reaches the time `next` names.
///
/// `next(wall)` returns `wall` itself when the state being tracked has already changed
/// at that wall-clock time, else the next wall-clock boundary. Between offset changes the
/// wall clock runs in step with UTC; at a change it jumps, so the search restarts there
/// and asks `next` again. This yields, for each boundary, the first instant still ahead
/// at which the door's clock shows it:
/// - a time skipped by spring-forward maps to the first instant after the gap (the
///   transition), where `next` decides whether the state changed;
/// - a time repeated by fall-back maps to its earlier instant when that is still ahead,
///   and to the later one otherwise. A slot start in the repeated hour counts from its
///   first showing; a slot end counts from the first showing after the slot was entered,
///   which is when evaluation starts to deny.
pub(crate) fn next_change(
    tz: Tz,
    from: DateTime<Utc>,
    limit: DateTime<Utc>,
    next: impl Fn(NaiveDateTime) -> Option<NaiveDateTime>,
) -> Option<DateTime<Utc>> {
    let mut from = from;
    for _ in 0..MAX_SEGMENTS {
        if from >= limit {
            return None;
        }
        let offset = utc_offset(tz, from);
        let wall = from.naive_utc().checked_add_signed(offset)?;
        let boundary = next(wall)?;
        let candidate = boundary.checked_sub_signed(offset)?.and_utc();
        match first_transition(tz, from, offset, candidate.min(limit)) {
            Some(transition) => from = transition,
            None => return (candidate < limit).then_some(candidate),
        }
    }
    None
}

/// The first instant in `(from, to]` whose offset differs from `offset` (the offset at
/// `from`), to the second. Probes a day at a time, so two changes within one day (which
/// no current zone has) could be seen as none.
fn first_transition(
    tz: Tz,
    from: DateTime<Utc>,
    offset: TimeDelta,
    to: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let differs =
        |secs: i64| DateTime::from_timestamp(secs, 0).is_some_and(|t| utc_offset(tz, t) != offset);
    // Offsets change on whole seconds, so `from`'s second has `from`'s offset.
    let mut lo = from.timestamp();
    let to = to.timestamp();
    const DAY: i64 = 86_400;
    while lo < to {
        let probe = lo.saturating_add(DAY).min(to);
        if differs(probe) {
            let mut hi = probe;
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if differs(mid) {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            return DateTime::from_timestamp(hi, 0);
        }
        lo = probe;
    }
    None
}
