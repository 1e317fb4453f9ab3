//! `IssueAccessCode`, and the issuance every new code goes through.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pagination;
use latchkey::pb::access::v1 as pb;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use uuid::Uuid;

use super::generate::{self, check_shape};
use super::{StoredCode, code_type_name, grantee_type_name, purpose_name, record, with_doors};
use crate::audit::AuditAction;
use crate::audit::chain::truncate_to_micros;
use crate::db::codes::{self, AccessCode, DoorTarget};
use crate::db::{outbox, properties, users};
use crate::directory::{CODE_LENGTHS, DEFAULT_CODE_LENGTH, check_max_len, parse_id};
use crate::error::Result;
use crate::memberships::check_instant;
use crate::provisioning::intents::{self, Target};
use crate::state::AppState;
use crate::time_slot::{StoredSlot, validate_slot};

/// Doors one code may open.
pub const MAX_DOORS: usize = 50;
/// Weekly slots a RECURRING code may have: four a day.
pub const MAX_SLOTS: usize = 28;
const MAX_GRANTEE_LEN: usize = 200;

/// A code as issued: the plaintext only when this call created it.
#[derive(Debug)]
pub struct Issued {
    pub code: StoredCode,
    /// The plaintext, for this response only; `None` on a replay or a known booking.
    pub plaintext: Option<SecretString>,
    pub replayed: bool,
}

impl Issued {
    pub(super) fn known(code: StoredCode) -> Self {
        Self {
            code,
            plaintext: None,
            replayed: true,
        }
    }
}

/// A code about to be issued, already validated.
pub(super) struct NewCode {
    pub grantee_type: &'static str,
    pub user_id: Option<Uuid>,
    pub grantee_name: String,
    pub grantee_contact: String,
    pub purpose: &'static str,
    pub code_type: &'static str,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub time_slots: serde_json::Value,
    pub max_usages: i32,
    /// Chosen by the caller; `None`: generated.
    pub code: Option<SecretString>,
    /// The request's length for a generated code; `None`: the property's.
    pub code_length: Option<i32>,
    pub booking_reference: Option<String>,
    pub request_id: Option<String>,
}

/// Parses the door ids: 1 to [`MAX_DOORS`] UUIDs, none repeated.
fn check_door_ids(ids: &[String], violations: &mut FieldViolations) -> Vec<Uuid> {
    if ids.is_empty() || ids.len() > MAX_DOORS {
        violations.add("door_ids", format!("must name 1 to {MAX_DOORS} doors"));
        return Vec::new();
    }
    let mut seen = HashSet::with_capacity(ids.len());
    let mut parsed = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let field = format!("door_ids[{index}]");
        let uuid = parse_id(&field, id, violations);
        if !uuid.is_nil() && !seen.insert(uuid) {
            violations.add(field, "repeats a door named before");
        }
        parsed.push(uuid);
    }
    parsed
}

/// The grantee as stored: type, user, name and contact.
pub(super) struct CheckedGrantee {
    pub grantee_type: &'static str,
    pub user_id: Option<Uuid>,
    pub name: String,
    pub contact: String,
}

fn check_grantee(
    grantee: Option<&pb::Grantee>,
    violations: &mut FieldViolations,
) -> CheckedGrantee {
    let mut checked = CheckedGrantee {
        grantee_type: "",
        user_id: None,
        name: String::new(),
        contact: String::new(),
    };
    let Some(grantee) = grantee else {
        violations.add("grantee", "is required");
        return checked;
    };
    checked.name = grantee.name.trim().to_owned();
    checked.contact = grantee.contact.trim().to_owned();
    check_max_len("grantee.name", &grantee.name, MAX_GRANTEE_LEN, violations);
    check_max_len(
        "grantee.contact",
        &grantee.contact,
        MAX_GRANTEE_LEN,
        violations,
    );
    let Some(kind) = grantee_type_name(grantee.r#type) else {
        violations.add(
            "grantee.type",
            "is required: USER, PROVIDER, TENANT or GUEST",
        );
        return checked;
    };
    checked.grantee_type = kind;
    let user = (!grantee.user_id.is_empty())
        .then(|| parse_id("grantee.user_id", &grantee.user_id, violations));
    match kind {
        "USER" if user.is_none() => violations.add("grantee.user_id", "is required for USER"),
        "TENANT" if user.is_none() && checked.name.is_empty() => {
            violations.add("grantee.name", "is required for a TENANT without a user");
        }
        "GUEST" | "PROVIDER" if user.is_some() => {
            violations.add("grantee.user_id", "only for USER or TENANT grantees");
        }
        "GUEST" | "PROVIDER" if checked.name.is_empty() => {
            violations.add("grantee.name", format!("is required for {kind}"));
        }
        _ => {}
    }
    checked.user_id = user;
    checked
}

fn check_slots(slots: &[pb::TimeSlot], violations: &mut FieldViolations) -> serde_json::Value {
    let stored: Vec<StoredSlot> = slots
        .iter()
        .enumerate()
        .map(|(index, slot)| {
            let field = format!("time_slots[{index}]");
            validate_slot(slot.day_of_week, &slot.start, &slot.end, &field, violations);
            StoredSlot {
                day_of_week: slot.day_of_week,
                start: slot.start.clone(),
                end: slot.end.clone(),
            }
        })
        .collect();
    serde_json::to_value(stored).unwrap_or_else(|_| json!([]))
}

/// The code text of a request, taken out of it so it travels only as a secret.
pub(super) fn take_code(
    code: &mut String,
    violations: &mut FieldViolations,
) -> Option<SecretString> {
    let code = SecretString::from(std::mem::take(code));
    if code.expose_secret().is_empty() {
        return None;
    }
    if let Some(why) = check_shape(code.expose_secret()) {
        violations.add("code", why);
    }
    Some(code)
}

/// Checks a request and returns the code it describes.
fn check_request(
    request: &mut pb::IssueAccessCodeRequest,
    now: DateTime<Utc>,
    violations: &mut FieldViolations,
) -> (Vec<Uuid>, NewCode) {
    let doors = check_door_ids(&request.door_ids, violations);
    let grantee = check_grantee(request.grantee.as_ref(), violations);
    let purpose = purpose_name(request.purpose).unwrap_or_else(|| {
        violations.add(
            "purpose",
            "is required: STAY, CLEANING, MAINTENANCE, EMERGENCY or OTHER",
        );
        ""
    });
    let code_type = code_type_name(request.r#type).unwrap_or_else(|| {
        violations.add("type", "is required: PERMANENT, TEMPORARY or RECURRING");
        ""
    });
    let windowed = matches!(code_type, "TEMPORARY" | "RECURRING");
    let start = check_instant(
        "start_time",
        request.start_time.as_ref(),
        windowed,
        violations,
    );
    let end = check_instant("end_time", request.end_time.as_ref(), windowed, violations);
    if code_type == "PERMANENT" {
        if request.start_time.is_some() {
            violations.add("start_time", "only for TEMPORARY or RECURRING codes");
        }
        if request.end_time.is_some() {
            violations.add("end_time", "only for TEMPORARY or RECURRING codes");
        }
    }
    if let (Some(start), Some(end)) = (start, end)
        && end <= start
    {
        violations.add("end_time", "must be after start_time");
    } else if let Some(end) = end
        && end <= now
    {
        violations.add("end_time", "is already past");
    }
    if code_type == "RECURRING" {
        if request.time_slots.is_empty() || request.time_slots.len() > MAX_SLOTS {
            violations.add(
                "time_slots",
                format!("RECURRING needs 1 to {MAX_SLOTS} slots"),
            );
        }
    } else if !request.time_slots.is_empty() {
        violations.add("time_slots", "only for RECURRING codes");
    }
    let time_slots = check_slots(&request.time_slots, violations);
    if request.max_usages < 0 {
        violations.add("max_usages", "must not be negative (0: unlimited)");
    }
    let code = take_code(&mut request.code, violations);
    if request.code_length != 0 && !CODE_LENGTHS.contains(&request.code_length) {
        violations.add("code_length", "must be 4 to 9 (0: the property's default)");
    }
    let request_id = pagination::request_id(&request.request_id, violations);
    if request.request_id.is_empty() {
        violations.add(
            "request_id",
            "is required, so a retried call returns the first call's code",
        );
    }
    let new = NewCode {
        grantee_type: grantee.grantee_type,
        user_id: grantee.user_id,
        grantee_name: grantee.name,
        grantee_contact: grantee.contact,
        purpose,
        code_type,
        start,
        end,
        time_slots,
        max_usages: request.max_usages,
        code,
        code_length: (request.code_length != 0).then_some(request.code_length),
        booking_reference: None,
        request_id,
    };
    (doors, new)
}

pub async fn issue_access_code(
    state: &AppState,
    caller: &Caller,
    mut request: pb::IssueAccessCodeRequest,
) -> Result<Issued> {
    let now = truncate_to_micros(state.clock.now());
    let mut violations = FieldViolations::default();
    let (door_ids, mut new) = check_request(&mut request, now, &mut violations);
    violations.check()?;
    let tenant = caller.tenant_id.as_str();
    let mut conn = state.pool.get().await?;
    let issued = conn
        .transaction(async |conn| {
            if let Some(request_id) = &new.request_id
                && let Some(found) = codes::by_request_id(conn, tenant, request_id).await?
            {
                return Ok(Issued::known(one(conn, tenant, found).await?));
            }
            let found = codes::doors_by_id(conn, tenant, &door_ids).await?;
            let mut violations = FieldViolations::default();
            let mut targets = Vec::with_capacity(door_ids.len());
            for (index, id) in door_ids.iter().enumerate() {
                match found.iter().find(|d| d.id == *id) {
                    Some(door) => targets.push(*door),
                    None => {
                        violations.add(format!("door_ids[{index}]"), "names no door of this tenant")
                    }
                }
            }
            if let Some(user) = new.user_id {
                match users::get(conn, tenant, user).await? {
                    // A user's code shows the user's name unless the caller gave one.
                    Some(found) if new.grantee_name.is_empty() => new.grantee_name = found.name,
                    Some(_) => {}
                    None => violations.add("grantee.user_id", "names no user of this tenant"),
                }
            }
            violations.check()?;
            insert_code(conn, state, caller, new, &targets, now).await
        })
        .await?;
    if !issued.replayed {
        super::committed(state, tenant).await;
    }
    Ok(issued)
}

async fn one(conn: &mut AsyncPgConnection, tenant: &str, code: AccessCode) -> Result<StoredCode> {
    with_doors(conn, tenant, vec![code])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("a stored code vanished").into())
}

/// Issues `new` on `targets` inside the caller's transaction: the properties are locked
/// (so issuance on their doors runs one at a time), their limits checked, the code chosen
/// or generated unlike every other active code on those doors, then stored with its
/// intents and its audit row.
pub(super) async fn insert_code(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    caller: &Caller,
    new: NewCode,
    targets: &[DoorTarget],
    now: DateTime<Utc>,
) -> Result<Issued> {
    let tenant = caller.tenant_id.as_str();
    let Some(first) = targets.first() else {
        return Err(ApiError::failed_precondition("NO_DOORS", "the code has no doors").into());
    };
    let mut property_ids: Vec<Uuid> = targets.iter().map(|t| t.property_id).collect();
    property_ids.sort_unstable();
    property_ids.dedup();
    let mut settings = Vec::with_capacity(property_ids.len());
    for id in &property_ids {
        let property = properties::get_for_update(conn, tenant, *id)
            .await?
            .ok_or_else(|| ApiError::not_found("property", id.to_string()))?;
        settings.push(property);
    }
    for property in &settings {
        let limit = property.max_active_codes;
        if limit > 0
            && codes::count_active_on_property(conn, tenant, property.id, now).await?
                >= i64::from(limit)
        {
            return Err(ApiError::failed_precondition(
                "MAX_ACTIVE_CODES",
                format!(
                    "property {} allows at most {limit} active codes at once",
                    property.id
                ),
            )
            .into());
        }
    }
    let home = settings
        .iter()
        .find(|p| p.id == first.property_id)
        .ok_or_else(|| ApiError::internal("a door's property was not loaded"))?;

    let door_ids: Vec<Uuid> = targets.iter().map(|t| t.id).collect();
    let taken: HashSet<Vec<u8>> = codes::active_hashes_on_doors(conn, tenant, &door_ids)
        .await?
        .into_iter()
        .collect();
    let generated = new.code.is_none();
    let code = match new.code {
        Some(code) => {
            if taken.contains(&state.code_keys.hash(tenant, code.expose_secret())) {
                return Err(ApiError::AlreadyExists {
                    reason: "CODE_IN_USE",
                    message:
                        "another active code on one of these doors is the same; choose another"
                            .to_owned(),
                }
                .into());
            }
            code
        }
        None => {
            if !home.auto_generate_codes {
                return Err(ApiError::failed_precondition(
                    "CODE_GENERATION_DISABLED",
                    "the property does not generate codes; give one",
                )
                .into());
            }
            let length = new.code_length.unwrap_or(home.code_length);
            let length = if CODE_LENGTHS.contains(&length) {
                length
            } else {
                DEFAULT_CODE_LENGTH
            };
            generate::generate(usize::try_from(length).unwrap_or(6), |candidate| {
                taken.contains(&state.code_keys.hash(tenant, candidate))
            })
            .ok_or_else(|| {
                ApiError::failed_precondition(
                    "NO_FREE_CODE",
                    format!("no free {length}-digit code was found for these doors; ask for a longer one"),
                )
            })?
        }
    };
    let digits = code.expose_secret();
    let row = AccessCode {
        id: Uuid::now_v7(),
        tenant_id: tenant.to_owned(),
        property_id: (property_ids.len() == 1).then_some(first.property_id),
        grantee_type: new.grantee_type.to_owned(),
        user_id: new.user_id,
        grantee_name: new.grantee_name,
        grantee_contact: new.grantee_contact,
        purpose: new.purpose.to_owned(),
        code_type: new.code_type.to_owned(),
        start_time: new.start,
        end_time: new.end,
        time_slots: new.time_slots,
        max_usages: new.max_usages,
        usage_count: 0,
        code_hmac: state.code_keys.hash(tenant, digits),
        code_last_digits: digits[digits.len().saturating_sub(2)..].to_owned(),
        status: "ACTIVE".to_owned(),
        booking_reference: new.booking_reference,
        request_id: new.request_id.clone(),
        version: 1,
        create_time: now,
        update_time: now,
        revoke_time: None,
    };
    let Some(stored) = codes::insert(conn, &row).await? else {
        // A concurrent call with the same request id committed first.
        let request_id = new.request_id.unwrap_or_default();
        let found = codes::by_request_id(conn, tenant, &request_id)
            .await?
            .ok_or_else(|| ApiError::internal("a request id conflicted with no code"))?;
        return Ok(Issued::known(one(conn, tenant, found).await?));
    };
    let intent_targets: Vec<Target> = targets
        .iter()
        .map(|t| Target {
            door_id: t.id,
            lock: t.lock(),
        })
        .collect();
    intents::on_issue(
        conn,
        &state.code_keys,
        tenant,
        stored.id,
        digits,
        &intent_targets,
        stored.start_time,
        now,
        state.lead_hours,
    )
    .await?;
    let fields = json!({
        "door_ids": door_ids,
        "grantee_type": stored.grantee_type,
        "user_id": stored.user_id,
        "grantee_name": stored.grantee_name,
        "purpose": stored.purpose,
        "type": stored.code_type,
        "start_time": stored.start_time,
        "end_time": stored.end_time,
        "time_slots": stored.time_slots,
        "max_usages": stored.max_usages,
        "masked_code": format!("****{}", stored.code_last_digits),
        "generated": generated,
        "booking_reference": stored.booking_reference,
        "version": stored.version,
    });
    record(
        conn,
        caller,
        AuditAction::AdminCreate,
        stored.id,
        fields,
        new.request_id.as_deref(),
    )
    .await?;
    let doors = outbox::doors_of_codes(conn, tenant, &[stored.id]).await?;
    Ok(Issued {
        code: StoredCode {
            code: stored,
            doors,
        },
        plaintext: Some(code),
        replayed: false,
    })
}
