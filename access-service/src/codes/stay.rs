//! `IssueStayCodes`: a booking's guest code from check-in on the arrival day to
//! check-out on the departure day in the property's time zone, on every active door of
//! the property, and a cleaning code for the window after check-out when the property
//! asks for one. A booking is issued once; the same booking again keeps its codes and
//! moves their windows when the dates changed, so no stale code is left on a lock.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pagination;
use latchkey::pb::access::v1 as pb;
use serde_json::json;

use super::issue::{Issued, NewCode, insert_code, take_code};
use super::{StoredCode, record, with_doors};
use crate::audit::AuditAction;
use crate::audit::chain::truncate_to_micros;
use crate::db::codes::{self, AccessCode};
use crate::db::properties::{self, Property};
use crate::directory::{check_max_len, check_name, parse_id};
use crate::error::{Error, Result};
use crate::provisioning::intents;
use crate::state::AppState;
use crate::time_slot::parse_hhmm;

const MAX_BOOKING_LEN: usize = 128;
const MAX_CONTACT_LEN: usize = 200;

/// A booking's codes.
#[derive(Debug)]
pub struct StayCodes {
    pub guest: Issued,
    pub cleaning: Option<Issued>,
    /// The booking was known before this call.
    pub existing: bool,
}

fn check_date(
    field: &str,
    date: Option<&pb::Date>,
    violations: &mut FieldViolations,
) -> Option<NaiveDate> {
    let Some(date) = date else {
        violations.add(field, "is required");
        return None;
    };
    let parsed = u32::try_from(date.month)
        .ok()
        .zip(u32::try_from(date.day).ok())
        .and_then(|(month, day)| NaiveDate::from_ymd_opt(date.year, month, day));
    if parsed.is_none() {
        violations.add(field, "is not a calendar date");
    }
    parsed
}

/// The instant the property's clock first shows `time` on `date`, or when that wall time
/// is skipped by a daylight-saving change, the first instant after the gap.
pub fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    let mut wall = date.and_time(time);
    // Gaps last at most a few hours; a day of minutes covers every zone.
    for _ in 0..=24 * 60 {
        if let Some(at) = tz.from_local_datetime(&wall).earliest() {
            return Some(at.with_timezone(&Utc));
        }
        wall = wall.checked_add_signed(Duration::minutes(1))?;
    }
    None
}

fn hhmm(value: &str, default: &str) -> NaiveTime {
    let minutes = parse_hhmm(value, false)
        .or_else(|| parse_hhmm(default, false))
        .unwrap_or(0);
    NaiveTime::from_hms_opt(u32::from(minutes / 60), u32::from(minutes % 60), 0)
        .unwrap_or(NaiveTime::MIN)
}

/// `[start, end)`.
pub type Window = (DateTime<Utc>, DateTime<Utc>);

/// The guest window and the cleaning window of a stay at `property`.
pub fn stay_windows(
    property: &Property,
    arrival: NaiveDate,
    departure: NaiveDate,
) -> Option<(Window, Window)> {
    let tz = Tz::from_str(&property.time_zone).unwrap_or(Tz::UTC);
    let check_in = hhmm(&property.check_in_time, crate::directory::DEFAULT_CHECK_IN);
    let check_out = hhmm(
        &property.check_out_time,
        crate::directory::DEFAULT_CHECK_OUT,
    );
    let start = local_instant(tz, arrival, check_in)?;
    let end = local_instant(tz, departure, check_out)?;
    let cleaning_end = end + Duration::minutes(i64::from(property.cleaning_minutes.max(1)));
    Some(((start, end), (end, cleaning_end)))
}

pub async fn issue_stay_codes(
    state: &AppState,
    caller: &Caller,
    mut request: pb::IssueStayCodesRequest,
) -> Result<StayCodes> {
    let now = truncate_to_micros(state.clock.now());
    let mut violations = FieldViolations::default();
    let booking = request.booking_reference.trim().to_owned();
    if booking.is_empty() || booking.chars().count() > MAX_BOOKING_LEN {
        violations.add(
            "booking_reference",
            format!("must be 1 to {MAX_BOOKING_LEN} characters"),
        );
    } else if booking.contains('\0') {
        violations.add("booking_reference", "must not contain NUL characters");
    }
    let property_id = parse_id("property_id", &request.property_id, &mut violations);
    let (guest_name, guest_contact) = match &request.guest {
        None => {
            violations.add("guest", "is required");
            (String::new(), String::new())
        }
        Some(guest) => {
            check_name("guest.name", &guest.name, &mut violations);
            check_max_len(
                "guest.contact",
                &guest.contact,
                MAX_CONTACT_LEN,
                &mut violations,
            );
            (
                guest.name.trim().to_owned(),
                guest.contact.trim().to_owned(),
            )
        }
    };
    let arrival = check_date(
        "arrival_date",
        request.arrival_date.as_ref(),
        &mut violations,
    );
    let departure = check_date(
        "departure_date",
        request.departure_date.as_ref(),
        &mut violations,
    );
    if let (Some(arrival), Some(departure)) = (arrival, departure)
        && departure <= arrival
    {
        violations.add("departure_date", "must be after arrival_date");
    }
    let code = take_code(&mut request.code, &mut violations);
    let request_id = pagination::request_id(&request.request_id, &mut violations);
    violations.check()?;
    let (Some(arrival), Some(departure)) = (arrival, departure) else {
        return Err(FieldViolations::single("arrival_date", "is required").into());
    };

    let tenant = caller.tenant_id.as_str();
    let mut conn = state.pool.get().await?;
    let stay = conn
        .transaction(async |conn| {
            // Locked: one issuance at a time per property, so a booking issued twice at
            // once is still issued once.
            let property = properties::get_for_update(conn, tenant, property_id)
                .await?
                .ok_or_else(|| ApiError::not_found("property", property_id.to_string()))?;
            let ((start, end), (clean_start, clean_end)) =
                stay_windows(&property, arrival, departure)
                    .ok_or_else(|| FieldViolations::single("departure_date", "is out of range"))?;
            if end <= now {
                return Err(
                    FieldViolations::single("departure_date", "the stay is already over").into(),
                );
            }
            let existing_guest = codes::booking_for_update(conn, tenant, &booking, "STAY").await?;
            let existing_cleaning =
                codes::booking_for_update(conn, tenant, &booking, "CLEANING").await?;
            let cleaning_code = |code| NewCode {
                grantee_type: "PROVIDER",
                user_id: None,
                grantee_name: format!("Cleaning {booking}"),
                grantee_contact: String::new(),
                purpose: "CLEANING",
                code_type: "TEMPORARY",
                start: Some(clean_start),
                end: Some(clean_end),
                time_slots: json!([]),
                max_usages: 0,
                code,
                code_length: None,
                booking_reference: Some(booking.clone()),
                request_id: None,
            };

            if let Some(guest) = existing_guest {
                if guest.property_id.is_some_and(|p| p != property.id) {
                    return Err(ApiError::failed_precondition(
                        "BOOKING_ON_OTHER_PROPERTY",
                        "this booking reference was issued for another property",
                    )
                    .into());
                }
                let guest = move_window(
                    conn,
                    state,
                    caller,
                    guest,
                    start,
                    end,
                    now,
                    request_id.as_deref(),
                )
                .await?;
                let cleaning = match existing_cleaning {
                    Some(cleaning) => Some(Issued::known(
                        move_window(
                            conn,
                            state,
                            caller,
                            cleaning,
                            clean_start,
                            clean_end,
                            now,
                            request_id.as_deref(),
                        )
                        .await?,
                    )),
                    None if property.cleaning_code => {
                        let doors =
                            codes::active_doors_of_property(conn, tenant, property.id).await?;
                        Some(
                            insert_code(conn, state, caller, cleaning_code(None), &doors, now)
                                .await?,
                        )
                    }
                    None => None,
                };
                return Ok(StayCodes {
                    guest: Issued::known(guest),
                    cleaning,
                    existing: true,
                });
            }

            let doors = codes::active_doors_of_property(conn, tenant, property.id).await?;
            if doors.is_empty() {
                return Err(ApiError::failed_precondition(
                    "NO_DOORS",
                    "the property has no active doors to issue codes for",
                )
                .into());
            }
            let guest = NewCode {
                grantee_type: "GUEST",
                user_id: None,
                grantee_name: guest_name,
                grantee_contact: guest_contact,
                purpose: "STAY",
                code_type: "TEMPORARY",
                start: Some(start),
                end: Some(end),
                time_slots: json!([]),
                max_usages: 0,
                code,
                code_length: None,
                booking_reference: Some(booking.clone()),
                request_id: None,
            };
            let guest = insert_code(conn, state, caller, guest, &doors, now).await?;
            let cleaning = if property.cleaning_code {
                Some(insert_code(conn, state, caller, cleaning_code(None), &doors, now).await?)
            } else {
                None
            };
            Ok::<_, Error>(StayCodes {
                guest,
                cleaning,
                existing: false,
            })
        })
        .await?;
    super::committed(state, tenant).await;
    Ok(stay)
}

/// Moves an active booking code to a new window, with the intents that move it on its
/// locks; a code already at that window, or no longer active, is left as it is.
#[allow(clippy::too_many_arguments)]
async fn move_window(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    caller: &Caller,
    code: AccessCode,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
    request_id: Option<&str>,
) -> Result<StoredCode> {
    let tenant = caller.tenant_id.as_str();
    let unchanged = code.start_time == Some(start) && code.end_time == Some(end);
    if unchanged || code.status != "ACTIVE" {
        return one(conn, tenant, code).await;
    }
    let (was_start, was_end) = (code.start_time, code.end_time);
    let moved = codes::move_window(conn, code.id, start, end, now).await?;
    intents::on_window_change(
        conn,
        tenant,
        moved.id,
        moved.start_time,
        now,
        state.lead_hours,
    )
    .await?;
    let fields = json!({
        "booking_reference": moved.booking_reference,
        "purpose": moved.purpose,
        "start_time": moved.start_time,
        "end_time": moved.end_time,
        "previous_start_time": was_start,
        "previous_end_time": was_end,
        "version": moved.version,
    });
    record(
        conn,
        caller,
        AuditAction::AdminUpdate,
        moved.id,
        fields,
        request_id,
    )
    .await?;
    one(conn, tenant, moved).await
}

async fn one(conn: &mut AsyncPgConnection, tenant: &str, code: AccessCode) -> Result<StoredCode> {
    with_doors(conn, tenant, vec![code])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("a stored code vanished").into())
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn wall_times_become_instants_in_the_zone_and_gaps_move_forward() {
        let madrid = chrono_tz::Europe::Madrid;
        let at = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        // Winter (+01:00) and summer (+02:00).
        assert_eq!(
            local_instant(madrid, date(2027, 1, 10), at(15, 0)),
            Some(utc(2027, 1, 10, 14, 0))
        );
        assert_eq!(
            local_instant(madrid, date(2027, 7, 10), at(15, 0)),
            Some(utc(2027, 7, 10, 13, 0))
        );
        // 2027-03-28 02:30 does not exist in Madrid: the clock jumps from 02:00 to 03:00.
        assert_eq!(
            local_instant(madrid, date(2027, 3, 28), at(2, 30)),
            Some(utc(2027, 3, 28, 1, 0))
        );
        // 2027-10-31 02:30 happens twice: the first.
        assert_eq!(
            local_instant(madrid, date(2027, 10, 31), at(2, 30)),
            Some(utc(2027, 10, 31, 0, 30))
        );
    }

    #[test]
    fn hhmm_falls_back_to_the_default() {
        assert_eq!(
            hhmm("09:45", "15:00"),
            NaiveTime::from_hms_opt(9, 45, 0).unwrap()
        );
        assert_eq!(
            hhmm("bad", "15:00"),
            NaiveTime::from_hms_opt(15, 0, 0).unwrap()
        );
    }
}
