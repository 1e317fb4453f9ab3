//! Doors: validation before storage, and each change audited in its transaction.

use chrono::Utc;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncConnection;
use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pagination;
use latchkey::pb::access::v1 as pb;
use serde_json::json;
use uuid::Uuid;

use crate::audit::AuditAction;
use crate::db::doors::{self, Door, DoorChanges, DoorFilter, DoorView};
use crate::db::properties;
use crate::directory::{
    check_max_len, check_name, check_time_zone, mask_fields, parse_bool_filter, parse_id,
    parse_id_filter, record,
};
use crate::error::{Error, Result};
use crate::state::AppState;

const MAX_LOCATION_LEN: usize = 500;
/// The paths an update mask may name.
const UPDATE_PATHS: &[&str] = &["name", "type", "location", "time_zone", "active", "lock"];

/// The stored name of a door type (`ENTRANCE`, ...); `None` for unspecified or unknown.
pub fn door_type_name(value: i32) -> Option<&'static str> {
    match pb::DoorType::try_from(value) {
        Ok(pb::DoorType::Unspecified) | Err(_) => None,
        Ok(door_type) => door_type.as_str_name().strip_prefix("DOOR_TYPE_"),
    }
}

fn check_type(field: &str, value: i32, violations: &mut FieldViolations) -> String {
    match door_type_name(value) {
        Some(name) => name.to_owned(),
        None => {
            violations.add(field, "must be a door type other than UNSPECIFIED");
            String::new()
        }
    }
}

/// A lock binding as stored: the account and the lock, or neither.
fn check_lock(
    lock: Option<&pb::LockBinding>,
    violations: &mut FieldViolations,
) -> (Option<Uuid>, Option<i64>) {
    let Some(lock) = lock else {
        return (None, None);
    };
    let account = parse_id("door.lock.account_id", &lock.account_id, violations);
    if lock.lock_id <= 0 {
        violations.add("door.lock.lock_id", "must be a positive TTLock lock id");
    }
    (Some(account), Some(lock.lock_id))
}

fn check_zone(value: &str, violations: &mut FieldViolations) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    check_time_zone("door.time_zone", value, violations);
    Some(value.to_owned())
}

/// One door per lock: a second binding of the same lock is the caller's conflict.
fn lock_conflict(error: DieselError) -> Error {
    if let DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = &error
        && info.constraint_name() == Some("doors_lock_key")
    {
        return ApiError::AlreadyExists {
            reason: "LOCK_ALREADY_BOUND",
            message: "this lock is already bound to another door".to_owned(),
        }
        .into();
    }
    error.into()
}

fn audit_fields(door: &Door) -> serde_json::Value {
    json!({
        "property_id": door.property_id,
        "name": door.name,
        "type": door.door_type,
        "location": door.location,
        "time_zone": door.time_zone,
        "active": door.active,
        "lock_account_id": door.lock_account_id,
        "lock_id": door.lock_id,
        "version": door.version,
    })
}

pub async fn create_door(
    state: &AppState,
    caller: &Caller,
    door: Option<pb::Door>,
    request_id: &str,
) -> Result<DoorView> {
    let Some(door) = door else {
        return Err(FieldViolations::single("door", "is required").into());
    };
    let mut violations = FieldViolations::default();
    let property_id = parse_id("door.property_id", &door.property_id, &mut violations);
    check_name("door.name", &door.name, &mut violations);
    let door_type = check_type("door.type", door.r#type, &mut violations);
    check_max_len(
        "door.location",
        &door.location,
        MAX_LOCATION_LEN,
        &mut violations,
    );
    let time_zone = check_zone(&door.time_zone, &mut violations);
    let (lock_account_id, lock_id) = check_lock(door.lock.as_ref(), &mut violations);
    let request_id = pagination::request_id(request_id, &mut violations);
    violations.check()?;

    let now = Utc::now();
    let new = Door {
        id: Uuid::now_v7(),
        tenant_id: caller.tenant_id.clone(),
        property_id,
        name: door.name.trim().to_owned(),
        door_type,
        location: door.location,
        time_zone,
        active: door.active,
        lock_account_id,
        lock_id,
        status: "UNKNOWN".to_owned(),
        status_time: None,
        version: 1,
        request_id,
        create_time: now,
        update_time: now,
    };
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        let Some(property) = properties::get(conn, &caller.tenant_id, property_id).await? else {
            return Err(FieldViolations::single(
                "door.property_id",
                "names no property of this tenant",
            )
            .into());
        };
        let stored = doors::create(conn, &new).await.map_err(lock_conflict)?;
        // A retried request returns the first result and records nothing new.
        if stored.id == new.id {
            let id = stored.id.to_string();
            let fields = audit_fields(&stored);
            record(conn, caller, AuditAction::AdminCreate, "door", &id, fields).await?;
        }
        Ok::<_, Error>(DoorView {
            door: stored,
            property_time_zone: property.time_zone,
        })
    })
    .await
}

pub async fn get_door(state: &AppState, caller: &Caller, id: &str) -> Result<DoorView> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    violations.check()?;
    let mut conn = state.pool.get().await?;
    doors::get(&mut conn, &caller.tenant_id, uuid)
        .await?
        .ok_or_else(|| ApiError::not_found("door", id).into())
}

pub async fn list_doors(
    state: &AppState,
    caller: &Caller,
    request: &pb::ListDoorsRequest,
) -> Result<(Vec<DoorView>, String)> {
    let mut violations = FieldViolations::default();
    let size = pagination::page_size(request.page_size, &mut violations);
    let after = pagination::decode_uuid_token(&request.page_token, &mut violations);
    let filter = DoorFilter {
        property_id: parse_id_filter("property_id", &request.property_id, &mut violations),
        door_type: (request.r#type != 0)
            .then(|| check_type("type", request.r#type, &mut violations)),
        active: parse_bool_filter("active", &request.active, &mut violations),
    };
    violations.check()?;
    let mut conn = state.pool.get().await?;
    let rows = doors::list(&mut conn, &caller.tenant_id, after, &filter, size).await?;
    Ok(pagination::finish_page(rows, size, |d| d.door.id))
}

pub async fn update_door(
    state: &AppState,
    caller: &Caller,
    door: Option<pb::Door>,
    mask: Option<&prost_types::FieldMask>,
) -> Result<DoorView> {
    let Some(door) = door else {
        return Err(FieldViolations::single("door", "is required").into());
    };
    let mut violations = FieldViolations::default();
    let fields = mask_fields(mask, UPDATE_PATHS, &mut violations);
    let uuid = parse_id("door.id", &door.id, &mut violations);
    let mut changes = DoorChanges::default();
    for field in fields {
        match field {
            "name" => {
                check_name("door.name", &door.name, &mut violations);
                changes.name = Some(door.name.trim().to_owned());
            }
            "type" => {
                changes.door_type = Some(check_type("door.type", door.r#type, &mut violations))
            }
            "location" => {
                check_max_len(
                    "door.location",
                    &door.location,
                    MAX_LOCATION_LEN,
                    &mut violations,
                );
                changes.location = Some(door.location.clone());
            }
            "time_zone" => changes.time_zone = Some(check_zone(&door.time_zone, &mut violations)),
            "active" => changes.active = Some(door.active),
            "lock" => {
                let (account, lock) = check_lock(door.lock.as_ref(), &mut violations);
                changes.lock_account_id = Some(account);
                changes.lock_id = Some(lock);
            }
            // mask_fields has already named any other path.
            _ => {}
        }
    }
    violations.check()?;
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        let updated = doors::update(conn, &caller.tenant_id, uuid, &changes)
            .await
            .map_err(lock_conflict)?;
        let Some(updated) = updated else {
            return Err(ApiError::not_found("door", &door.id).into());
        };
        let id = updated.id.to_string();
        let fields = audit_fields(&updated);
        record(conn, caller, AuditAction::AdminUpdate, "door", &id, fields).await?;
        doors::get(conn, &caller.tenant_id, uuid)
            .await?
            .ok_or_else(|| ApiError::not_found("door", &door.id).into())
    })
    .await
}

/// Deletes the door with its rules; returns its id.
pub async fn delete_door(state: &AppState, caller: &Caller, id: &str) -> Result<Uuid> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    violations.check()?;
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        let Some(rules_deleted) = doors::delete(conn, &caller.tenant_id, uuid).await? else {
            return Err(ApiError::not_found("door", id).into());
        };
        let fields = json!({ "rules_deleted": rules_deleted });
        record(
            conn,
            caller,
            AuditAction::AdminDelete,
            "door",
            &uuid.to_string(),
            fields,
        )
        .await?;
        Ok::<_, Error>(uuid)
    })
    .await
}
