//! The tenant's directory: settings and properties. Validation happens here, before
//! anything is stored; the gRPC layer only converts.

use std::str::FromStr;

use chrono::Utc;
use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pagination;
use latchkey::pb::access::v1 as pb;
use uuid::Uuid;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;

use crate::audit::store::BurstRule;
use crate::audit::{AuditAction, AuditEntry};
use crate::db::properties::{self, Property, PropertyChanges};
use crate::db::tenants::{self, Tenant};
use crate::error::Result;
use crate::state::AppState;

const MAX_NAME_LEN: usize = 200;
const MAX_ADDRESS_LEN: usize = 500;

/// Checks an IANA time zone name.
pub fn check_time_zone(field: &str, value: &str, violations: &mut FieldViolations) {
    if chrono_tz::Tz::from_str(value).is_err() {
        violations.add(field, "must be an IANA time zone such as Europe/Madrid");
    }
}

pub(crate) fn check_name(field: &str, value: &str, violations: &mut FieldViolations) {
    if value.contains('\0') {
        // PostgreSQL text cannot hold NUL; refuse it here rather than fail in storage.
        violations.add(field, "must not contain NUL characters");
    } else if value.trim().is_empty() {
        violations.add(field, "must not be empty");
    } else if value.chars().count() > MAX_NAME_LEN {
        violations.add(field, format!("must be at most {MAX_NAME_LEN} characters"));
    }
}

fn check_address(field: &str, value: &str, violations: &mut FieldViolations) {
    if value.contains('\0') {
        violations.add(field, "must not contain NUL characters");
    } else if value.chars().count() > MAX_ADDRESS_LEN {
        violations.add(
            field,
            format!("must be at most {MAX_ADDRESS_LEN} characters"),
        );
    }
}

/// Parses a resource id, recording a violation when it is not a UUID.
pub fn parse_id(field: &str, value: &str, violations: &mut FieldViolations) -> Uuid {
    match Uuid::try_parse(value) {
        Ok(id) => id,
        Err(_) => {
            violations.add(field, "must be a UUID");
            Uuid::nil()
        }
    }
}

/// Checks a free-text field against a length limit in characters.
pub(crate) fn check_max_len(
    field: &str,
    value: &str,
    max: usize,
    violations: &mut FieldViolations,
) {
    if value.contains('\0') {
        violations.add(field, "must not contain NUL characters");
    } else if value.chars().count() > max {
        violations.add(field, format!("must be at most {max} characters"));
    }
}

/// Reads a `"true"`/`"false"` list filter; empty means any.
pub fn parse_bool_filter(
    field: &str,
    value: &str,
    violations: &mut FieldViolations,
) -> Option<bool> {
    match value {
        "" => None,
        "true" => Some(true),
        "false" => Some(false),
        _ => {
            violations.add(field, "must be \"true\", \"false\" or empty");
            None
        }
    }
}

/// Parses an optional id filter of a list request; empty means any.
pub fn parse_id_filter(field: &str, value: &str, violations: &mut FieldViolations) -> Option<Uuid> {
    (!value.is_empty()).then(|| parse_id(field, value, violations))
}

/// Which fields an update touches: the mask's paths, or every field when it is empty.
pub fn mask_fields<'a>(
    mask: Option<&'a prost_types::FieldMask>,
    allowed: &[&'a str],
    violations: &mut FieldViolations,
) -> Vec<&'a str> {
    let paths: Vec<&str> = mask
        .map(|m| m.paths.iter().map(String::as_str).collect())
        .unwrap_or_default();
    if paths.is_empty() {
        return allowed.to_vec();
    }
    for path in &paths {
        if !allowed.contains(path) {
            violations.add(
                "update_mask",
                format!("unknown path {path:?}; allowed: {}", allowed.join(", ")),
            );
        }
    }
    paths
}

pub async fn tenant_settings(state: &AppState, caller: &Caller) -> Result<Tenant> {
    let mut conn = state.pool.get().await?;
    Ok(tenants::find(&mut conn, &caller.tenant_id)
        .await?
        .unwrap_or_else(|| Tenant::defaults(&caller.tenant_id)))
}

/// The requested settings change, already checked.
#[derive(Debug, Default)]
pub struct SettingsUpdate {
    pub door_access_enabled: Option<bool>,
    pub default_time_zone: Option<String>,
}

pub async fn update_tenant_settings(
    state: &AppState,
    caller: &Caller,
    update: SettingsUpdate,
) -> Result<Tenant> {
    let mut violations = FieldViolations::default();
    if let Some(zone) = &update.default_time_zone {
        check_time_zone("settings.default_time_zone", zone, &mut violations);
    }
    violations.check()?;
    let mut conn = state.pool.get().await?;
    let mut settings = tenants::find(&mut conn, &caller.tenant_id)
        .await?
        .unwrap_or_else(|| Tenant::defaults(&caller.tenant_id));
    if let Some(enabled) = update.door_access_enabled {
        settings.door_access_enabled = enabled;
    }
    if let Some(zone) = update.default_time_zone {
        settings.default_time_zone = zone;
    }
    let stored = conn
        .transaction(async |conn| {
            let stored = tenants::upsert(conn, &settings).await?;
            let fields = json!({
                "door_access_enabled": stored.door_access_enabled,
                "default_time_zone": stored.default_time_zone,
                "version": stored.version,
            });
            record(
                conn,
                caller,
                AuditAction::AdminUpdate,
                "tenant",
                &stored.tenant_id,
                fields,
            )
            .await?;
            Ok::<_, diesel::result::Error>(stored)
        })
        .await?;
    Ok(stored)
}

/// Appends the audit row of an administrative change inside the change's transaction,
/// so a change is never stored without its record.
pub async fn record(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    action: AuditAction,
    target_type: &str,
    target_id: &str,
    fields: serde_json::Value,
) -> diesel::QueryResult<()> {
    let entry = AuditEntry::admin_change(caller, action, target_type, target_id, fields, None);
    crate::audit::store::append(conn, vec![entry], BurstRule::default()).await?;
    Ok(())
}

fn property_fields(property: &Property) -> serde_json::Value {
    json!({
        "name": property.name,
        "time_zone": property.time_zone,
        "address": property.address,
        "version": property.version,
        "code_settings": {
            "auto_generate": property.auto_generate_codes,
            "max_active_codes": property.max_active_codes,
            "default_code_length": property.code_length,
            "check_in_time": property.check_in_time,
            "check_out_time": property.check_out_time,
            "cleaning_code": property.cleaning_code,
            "cleaning_minutes": property.cleaning_minutes,
        },
    })
}

/// Length of generated codes when neither the request nor the property names one.
pub const DEFAULT_CODE_LENGTH: i32 = 6;
pub const DEFAULT_CHECK_IN: &str = "15:00";
pub const DEFAULT_CHECK_OUT: &str = "11:00";
pub const DEFAULT_CLEANING_MINUTES: i32 = 180;
/// Codes are 4 to 9 digits: what TTLock keypads accept.
pub const CODE_LENGTHS: std::ops::RangeInclusive<i32> = 4..=9;

/// How a property issues access codes, checked and with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSettings {
    pub auto_generate: bool,
    pub max_active_codes: i32,
    pub code_length: i32,
    pub check_in_time: String,
    pub check_out_time: String,
    pub cleaning_code: bool,
    pub cleaning_minutes: i32,
}

impl Default for CodeSettings {
    fn default() -> Self {
        Self {
            auto_generate: true,
            max_active_codes: 0,
            code_length: DEFAULT_CODE_LENGTH,
            check_in_time: DEFAULT_CHECK_IN.to_owned(),
            check_out_time: DEFAULT_CHECK_OUT.to_owned(),
            cleaning_code: false,
            cleaning_minutes: DEFAULT_CLEANING_MINUTES,
        }
    }
}

/// The settings a message asks for (absent: the defaults); zero and empty values take
/// their defaults, anything out of range is a violation under `field`.
pub fn check_code_settings(
    field: &str,
    settings: Option<&pb::CodeSettings>,
    violations: &mut FieldViolations,
) -> CodeSettings {
    let Some(settings) = settings else {
        return CodeSettings::default();
    };
    let mut checked = CodeSettings {
        auto_generate: settings.auto_generate,
        max_active_codes: settings.max_active_codes,
        code_length: settings.default_code_length,
        check_in_time: settings.check_in_time.clone(),
        check_out_time: settings.check_out_time.clone(),
        cleaning_code: settings.cleaning_code,
        cleaning_minutes: settings.cleaning_minutes,
    };
    if checked.max_active_codes < 0 {
        violations.add(
            format!("{field}.max_active_codes"),
            "must not be negative (0: no limit)",
        );
    }
    if checked.code_length == 0 {
        checked.code_length = DEFAULT_CODE_LENGTH;
    } else if !CODE_LENGTHS.contains(&checked.code_length) {
        violations.add(
            format!("{field}.default_code_length"),
            "must be 4 to 9 (0: 6)",
        );
    }
    for (name, value, default) in [
        (
            "check_in_time",
            &mut checked.check_in_time,
            DEFAULT_CHECK_IN,
        ),
        (
            "check_out_time",
            &mut checked.check_out_time,
            DEFAULT_CHECK_OUT,
        ),
    ] {
        if value.is_empty() {
            default.clone_into(value);
        } else if crate::time_slot::parse_hhmm(value, false).is_none() {
            violations.add(
                format!("{field}.{name}"),
                "must be \"HH:MM\" from 00:00 to 23:59",
            );
        }
    }
    if checked.cleaning_minutes == 0 {
        checked.cleaning_minutes = DEFAULT_CLEANING_MINUTES;
    } else if !(1..=1440).contains(&checked.cleaning_minutes) {
        violations.add(
            format!("{field}.cleaning_minutes"),
            "must be 1 to 1440 (0: 180)",
        );
    }
    checked
}

/// The property's code settings as stored.
pub fn code_settings_of(property: &Property) -> CodeSettings {
    CodeSettings {
        auto_generate: property.auto_generate_codes,
        max_active_codes: property.max_active_codes,
        code_length: property.code_length,
        check_in_time: property.check_in_time.clone(),
        check_out_time: property.check_out_time.clone(),
        cleaning_code: property.cleaning_code,
        cleaning_minutes: property.cleaning_minutes,
    }
}

/// A new property as the caller describes it.
#[derive(Debug, Default)]
pub struct NewProperty {
    pub name: String,
    pub time_zone: String,
    pub address: String,
    pub request_id: String,
    /// Absent: the defaults.
    pub code_settings: Option<pb::CodeSettings>,
}

pub async fn create_property(
    state: &AppState,
    caller: &Caller,
    new: NewProperty,
) -> Result<Property> {
    let mut violations = FieldViolations::default();
    check_name("property.name", &new.name, &mut violations);
    check_time_zone("property.time_zone", &new.time_zone, &mut violations);
    check_address("property.address", &new.address, &mut violations);
    let settings = check_code_settings(
        "property.code_settings",
        new.code_settings.as_ref(),
        &mut violations,
    );
    let request_id = pagination::request_id(&new.request_id, &mut violations);
    violations.check()?;
    let now = Utc::now();
    let property = Property {
        id: Uuid::now_v7(),
        tenant_id: caller.tenant_id.clone(),
        name: new.name.trim().to_owned(),
        time_zone: new.time_zone,
        address: new.address,
        version: 1,
        request_id,
        create_time: now,
        update_time: now,
        auto_generate_codes: settings.auto_generate,
        max_active_codes: settings.max_active_codes,
        code_length: settings.code_length,
        check_in_time: settings.check_in_time,
        check_out_time: settings.check_out_time,
        cleaning_code: settings.cleaning_code,
        cleaning_minutes: settings.cleaning_minutes,
    };
    let mut conn = state.pool.get().await?;
    let created = conn
        .transaction(async |conn| {
            let stored = properties::create(conn, &property).await?;
            // A retried request returns the first result and records nothing new.
            if stored.id == property.id {
                let id = stored.id.to_string();
                record(
                    conn,
                    caller,
                    AuditAction::AdminCreate,
                    "property",
                    &id,
                    property_fields(&stored),
                )
                .await?;
            }
            Ok::<_, diesel::result::Error>(stored)
        })
        .await?;
    Ok(created)
}

pub async fn get_property(state: &AppState, caller: &Caller, id: &str) -> Result<Property> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    violations.check()?;
    let mut conn = state.pool.get().await?;
    properties::get(&mut conn, &caller.tenant_id, uuid)
        .await?
        .ok_or_else(|| ApiError::not_found("property", id).into())
}

pub async fn list_properties(
    state: &AppState,
    caller: &Caller,
    page_size: i32,
    page_token: &str,
    name_contains: &str,
) -> Result<(Vec<Property>, String)> {
    let mut violations = FieldViolations::default();
    let size = pagination::page_size(page_size, &mut violations);
    let after = pagination::decode_uuid_token(page_token, &mut violations);
    if name_contains.chars().count() > MAX_NAME_LEN {
        violations.add(
            "name_contains",
            format!("must be at most {MAX_NAME_LEN} characters"),
        );
    }
    violations.check()?;
    let filter = (!name_contains.is_empty()).then_some(name_contains);
    let mut conn = state.pool.get().await?;
    let rows = properties::list(&mut conn, &caller.tenant_id, after, filter, size).await?;
    Ok(pagination::finish_page(rows, size, |p| p.id))
}

pub async fn update_property(
    state: &AppState,
    caller: &Caller,
    id: &str,
    changes: PropertyChanges,
    code_settings: Option<pb::CodeSettings>,
) -> Result<Property> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("property.id", id, &mut violations);
    if let Some(name) = &changes.name {
        check_name("property.name", name, &mut violations);
    }
    if let Some(zone) = &changes.time_zone {
        check_time_zone("property.time_zone", zone, &mut violations);
    }
    if let Some(address) = &changes.address {
        check_address("property.address", address, &mut violations);
    }
    let settings = code_settings.map(|settings| {
        check_code_settings("property.code_settings", Some(&settings), &mut violations)
    });
    violations.check()?;
    let mut changes = PropertyChanges {
        name: changes.name.map(|n| n.trim().to_owned()),
        ..changes
    };
    // The settings are replaced as a whole.
    if let Some(settings) = settings {
        changes.auto_generate_codes = Some(settings.auto_generate);
        changes.max_active_codes = Some(settings.max_active_codes);
        changes.code_length = Some(settings.code_length);
        changes.check_in_time = Some(settings.check_in_time);
        changes.check_out_time = Some(settings.check_out_time);
        changes.cleaning_code = Some(settings.cleaning_code);
        changes.cleaning_minutes = Some(settings.cleaning_minutes);
    }
    let mut conn = state.pool.get().await?;
    let updated = conn
        .transaction(async |conn| {
            let updated = properties::update(conn, &caller.tenant_id, uuid, &changes).await?;
            if let Some(stored) = &updated {
                let id = stored.id.to_string();
                record(
                    conn,
                    caller,
                    AuditAction::AdminUpdate,
                    "property",
                    &id,
                    property_fields(stored),
                )
                .await?;
            }
            Ok::<_, diesel::result::Error>(updated)
        })
        .await?;
    updated.ok_or_else(|| ApiError::not_found("property", id).into())
}

pub async fn delete_property(state: &AppState, caller: &Caller, id: &str) -> Result<()> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    violations.check()?;
    let mut conn = state.pool.get().await?;
    let deleted = conn
        .transaction(async |conn| {
            let deleted = properties::delete(conn, &caller.tenant_id, uuid).await?;
            if deleted {
                record(
                    conn,
                    caller,
                    AuditAction::AdminDelete,
                    "property",
                    &uuid.to_string(),
                    json!({}),
                )
                .await?;
            }
            Ok::<_, diesel::result::Error>(deleted)
        })
        .await?;
    if deleted {
        Ok(())
    } else {
        Err(ApiError::not_found("property", id).into())
    }
}
