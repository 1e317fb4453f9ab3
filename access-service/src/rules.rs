//! Access rules: who may open a door and when. Everything is validated before storage;
//! every change raises the version by one and is audited in its transaction.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pagination;
use latchkey::pb::access::v1 as pb;
use serde_json::json;
use uuid::Uuid;

use crate::audit::AuditAction;
use crate::db::rules::{self, Rule, RuleFilter, RuleView};
use crate::db::{doors, users};
use crate::directory::{
    check_max_len, check_name, mask_fields, parse_bool_filter, parse_id, parse_id_filter, record,
};
use crate::error::{Error, Result};
use crate::memberships::check_instant;
use crate::state::AppState;
use crate::time_slot::{StoredSlot, validate_slot};
use crate::users::check_roles;

const MAX_DESCRIPTION_LEN: usize = 2000;
const MAX_SLOTS: usize = 64;
/// Users one rule may grant, in a request and in total.
pub const MAX_RULE_USERS: usize = 10_000;
const MAX_RULE_ROLES: usize = 100;
/// The paths an update mask may name.
const UPDATE_PATHS: &[&str] = &[
    "name",
    "description",
    "user_ids",
    "roles",
    "time_slots",
    "valid_from",
    "valid_until",
    "active",
];

/// Parsed user ids with the index each had in the request, without repeats.
type IndexedIds = Vec<(usize, Uuid)>;

fn check_user_ids(field: &str, ids: &[String], violations: &mut FieldViolations) -> IndexedIds {
    if ids.len() > MAX_RULE_USERS {
        violations.add(field, format!("must name at most {MAX_RULE_USERS} users"));
        return Vec::new();
    }
    let mut parsed: IndexedIds = Vec::with_capacity(ids.len());
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let uuid = parse_id(&format!("{field}[{index}]"), id, violations);
        if seen.insert(uuid) {
            parsed.push((index, uuid));
        }
    }
    parsed
}

/// Names each id that is not a user of the caller's tenant.
async fn check_users_exist(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    field: &str,
    ids: &IndexedIds,
) -> Result<()> {
    let wanted: Vec<Uuid> = ids.iter().map(|(_, id)| *id).collect();
    let found = users::existing(conn, tenant_id, &wanted).await?;
    let mut violations = FieldViolations::default();
    for (index, id) in ids {
        if !found.contains(id) {
            violations.add(format!("{field}[{index}]"), "names no user of this tenant");
        }
    }
    Ok(violations.check()?)
}

fn check_slots(slots: &[pb::TimeSlot], violations: &mut FieldViolations) -> serde_json::Value {
    if slots.len() > MAX_SLOTS {
        violations.add(
            "rule.time_slots",
            format!("must hold at most {MAX_SLOTS} slots"),
        );
    }
    let stored: Vec<StoredSlot> = slots
        .iter()
        .enumerate()
        .map(|(index, slot)| {
            let field = format!("rule.time_slots[{index}]");
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

fn check_validity(
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    violations: &mut FieldViolations,
) {
    if let (Some(from), Some(until)) = (from, until)
        && until <= from
    {
        violations.add("rule.valid_until", "must be after valid_from");
    }
}

fn audit_fields(view: &RuleView) -> serde_json::Value {
    let rule = &view.rule;
    json!({
        "door_id": rule.door_id,
        "name": rule.name,
        "roles": rule.roles,
        "user_count": view.user_ids.len(),
        "time_slots": rule.time_slots,
        "valid_from": rule.valid_from,
        "valid_until": rule.valid_until,
        "active": rule.active,
        "version": rule.version,
    })
}

pub async fn create_rule(
    state: &AppState,
    caller: &Caller,
    rule: Option<pb::Rule>,
    request_id: &str,
) -> Result<RuleView> {
    let Some(rule) = rule else {
        return Err(FieldViolations::single("rule", "is required").into());
    };
    let mut violations = FieldViolations::default();
    let door_id = parse_id("rule.door_id", &rule.door_id, &mut violations);
    check_name("rule.name", &rule.name, &mut violations);
    check_max_len(
        "rule.description",
        &rule.description,
        MAX_DESCRIPTION_LEN,
        &mut violations,
    );
    let user_ids = check_user_ids("rule.user_ids", &rule.user_ids, &mut violations);
    let roles = check_roles("rule.roles", &rule.roles, MAX_RULE_ROLES, &mut violations);
    let time_slots = check_slots(&rule.time_slots, &mut violations);
    let valid_from = check_instant(
        "rule.valid_from",
        rule.valid_from.as_ref(),
        false,
        &mut violations,
    );
    let valid_until = check_instant(
        "rule.valid_until",
        rule.valid_until.as_ref(),
        false,
        &mut violations,
    );
    check_validity(valid_from, valid_until, &mut violations);
    let request_id = pagination::request_id(request_id, &mut violations);
    violations.check()?;

    let now = Utc::now();
    let new = Rule {
        id: Uuid::now_v7(),
        tenant_id: caller.tenant_id.clone(),
        door_id,
        name: rule.name.trim().to_owned(),
        description: rule.description,
        roles,
        time_slots,
        valid_from,
        valid_until,
        active: rule.active,
        version: 1,
        request_id,
        create_time: now,
        update_time: now,
    };
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        if !doors::exists(conn, &caller.tenant_id, door_id).await? {
            return Err(
                FieldViolations::single("rule.door_id", "names no door of this tenant").into(),
            );
        }
        check_users_exist(conn, &caller.tenant_id, "rule.user_ids", &user_ids).await?;
        let (stored, created) = rules::create(conn, &new).await?;
        // A retried request returns the first result and records nothing new.
        if created {
            let ids: Vec<Uuid> = user_ids.iter().map(|(_, id)| *id).collect();
            rules::add_users(conn, &caller.tenant_id, stored.id, &ids).await?;
        }
        let view = rules::view(conn, stored).await?;
        if created {
            let id = view.rule.id.to_string();
            let fields = audit_fields(&view);
            record(conn, caller, AuditAction::AdminCreate, "rule", &id, fields).await?;
        }
        Ok::<_, Error>(view)
    })
    .await
}

pub async fn get_rule(state: &AppState, caller: &Caller, id: &str) -> Result<RuleView> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    violations.check()?;
    let mut conn = state.pool.get().await?;
    let Some(rule) = rules::get(&mut conn, &caller.tenant_id, uuid).await? else {
        return Err(ApiError::not_found("rule", id).into());
    };
    Ok(rules::view(&mut conn, rule).await?)
}

pub async fn list_rules(
    state: &AppState,
    caller: &Caller,
    request: &pb::ListRulesRequest,
) -> Result<(Vec<RuleView>, String)> {
    let mut violations = FieldViolations::default();
    let size = pagination::page_size(request.page_size, &mut violations);
    let after = pagination::decode_uuid_token(&request.page_token, &mut violations);
    let filter = RuleFilter {
        door_id: parse_id_filter("door_id", &request.door_id, &mut violations),
        active: parse_bool_filter("active", &request.active, &mut violations),
    };
    violations.check()?;
    let mut conn = state.pool.get().await?;
    let rows = rules::list(&mut conn, &caller.tenant_id, after, &filter, size).await?;
    let (page, token) = pagination::finish_page(rows, size, |r| r.id);
    Ok((rules::with_users(&mut conn, page).await?, token))
}

/// Fails unless the rule is at `expected` (zero: any version).
fn check_version(rule: &Rule, expected: i64) -> Result<()> {
    if expected != 0 && expected != rule.version {
        return Err(ApiError::failed_precondition(
            "VERSION_MISMATCH",
            format!(
                "the rule is at version {}, not {expected}; read it again",
                rule.version
            ),
        )
        .into());
    }
    Ok(())
}

pub async fn update_rule(
    state: &AppState,
    caller: &Caller,
    request: pb::UpdateRuleRequest,
) -> Result<RuleView> {
    let Some(rule) = request.rule else {
        return Err(FieldViolations::single("rule", "is required").into());
    };
    let mut violations = FieldViolations::default();
    let fields = mask_fields(request.update_mask.as_ref(), UPDATE_PATHS, &mut violations);
    let uuid = parse_id("rule.id", &rule.id, &mut violations);
    if request.expected_version < 0 {
        violations.add("expected_version", "must not be negative");
    }
    let has = |path: &str| fields.contains(&path);
    if has("name") {
        check_name("rule.name", &rule.name, &mut violations);
    }
    if has("description") {
        check_max_len(
            "rule.description",
            &rule.description,
            MAX_DESCRIPTION_LEN,
            &mut violations,
        );
    }
    let user_ids =
        has("user_ids").then(|| check_user_ids("rule.user_ids", &rule.user_ids, &mut violations));
    let roles = has("roles")
        .then(|| check_roles("rule.roles", &rule.roles, MAX_RULE_ROLES, &mut violations));
    let time_slots = has("time_slots").then(|| check_slots(&rule.time_slots, &mut violations));
    let valid_from = has("valid_from").then(|| {
        check_instant(
            "rule.valid_from",
            rule.valid_from.as_ref(),
            false,
            &mut violations,
        )
    });
    let valid_until = has("valid_until").then(|| {
        check_instant(
            "rule.valid_until",
            rule.valid_until.as_ref(),
            false,
            &mut violations,
        )
    });
    violations.check()?;

    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        let Some(mut stored) = rules::get_for_update(conn, &caller.tenant_id, uuid).await? else {
            return Err(ApiError::not_found("rule", &rule.id).into());
        };
        check_version(&stored, request.expected_version)?;
        if has("name") {
            stored.name = rule.name.trim().to_owned();
        }
        if has("description") {
            stored.description = rule.description.clone();
        }
        if let Some(roles) = roles {
            stored.roles = roles;
        }
        if let Some(slots) = time_slots {
            stored.time_slots = slots;
        }
        if let Some(from) = valid_from {
            stored.valid_from = from;
        }
        if let Some(until) = valid_until {
            stored.valid_until = until;
        }
        if has("active") {
            stored.active = rule.active;
        }
        // The window is checked as merged with what is stored.
        let mut violations = FieldViolations::default();
        check_validity(stored.valid_from, stored.valid_until, &mut violations);
        violations.check()?;
        if let Some(user_ids) = &user_ids {
            check_users_exist(conn, &caller.tenant_id, "rule.user_ids", user_ids).await?;
            let ids: Vec<Uuid> = user_ids.iter().map(|(_, id)| *id).collect();
            rules::replace_users(conn, &caller.tenant_id, uuid, &ids).await?;
        }
        let saved = rules::save(conn, &stored).await?;
        let view = rules::view(conn, saved).await?;
        let id = view.rule.id.to_string();
        let fields = audit_fields(&view);
        record(conn, caller, AuditAction::AdminUpdate, "rule", &id, fields).await?;
        Ok::<_, Error>(view)
    })
    .await
}

/// Deletes the rule; returns the door it was on and its id.
pub async fn delete_rule(state: &AppState, caller: &Caller, id: &str) -> Result<(Uuid, Uuid)> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    violations.check()?;
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        let Some(door) = rules::delete(conn, &caller.tenant_id, uuid).await? else {
            return Err(ApiError::not_found("rule", id).into());
        };
        let target = uuid.to_string();
        record(
            conn,
            caller,
            AuditAction::AdminDelete,
            "rule",
            &target,
            json!({}),
        )
        .await?;
        Ok::<_, Error>((door, uuid))
    })
    .await
}

pub async fn toggle_rule(
    state: &AppState,
    caller: &Caller,
    id: &str,
    active: bool,
) -> Result<RuleView> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    violations.check()?;
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        let Some(mut stored) = rules::get_for_update(conn, &caller.tenant_id, uuid).await? else {
            return Err(ApiError::not_found("rule", id).into());
        };
        stored.active = active;
        let saved = rules::save(conn, &stored).await?;
        let view = rules::view(conn, saved).await?;
        let fields = json!({ "active": active, "version": view.rule.version });
        let target = uuid.to_string();
        record(
            conn,
            caller,
            AuditAction::AdminUpdate,
            "rule",
            &target,
            fields,
        )
        .await?;
        Ok::<_, Error>(view)
    })
    .await
}

/// Whether [`change_rule_users`] grants or revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsersChange {
    Add,
    Remove,
}

pub async fn change_rule_users(
    state: &AppState,
    caller: &Caller,
    id: &str,
    user_ids: &[String],
    change: UsersChange,
) -> Result<RuleView> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    if user_ids.is_empty() {
        violations.add("user_ids", "must name at least one user");
    }
    let indexed = check_user_ids("user_ids", user_ids, &mut violations);
    violations.check()?;
    let ids: Vec<Uuid> = indexed.iter().map(|(_, id)| *id).collect();
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        let Some(stored) = rules::get_for_update(conn, &caller.tenant_id, uuid).await? else {
            return Err(ApiError::not_found("rule", id).into());
        };
        let changed = match change {
            UsersChange::Add => {
                check_users_exist(conn, &caller.tenant_id, "user_ids", &indexed).await?;
                let added = rules::add_users(conn, &caller.tenant_id, uuid, &ids).await?;
                let total = rules::count_users(conn, uuid).await?;
                if usize::try_from(total).unwrap_or(usize::MAX) > MAX_RULE_USERS {
                    return Err(FieldViolations::single(
                        "user_ids",
                        format!("the rule would grant more than {MAX_RULE_USERS} users"),
                    )
                    .into());
                }
                added
            }
            UsersChange::Remove => rules::remove_users(conn, &caller.tenant_id, uuid, &ids).await?,
        };
        let saved = rules::save(conn, &stored).await?;
        let view = rules::view(conn, saved).await?;
        let key = match change {
            UsersChange::Add => "users_added",
            UsersChange::Remove => "users_removed",
        };
        let fields = json!({
            key: ids,
            "changed": changed,
            "user_count": view.user_ids.len(),
            "version": view.rule.version,
        });
        let target = uuid.to_string();
        record(
            conn,
            caller,
            AuditAction::AdminUpdate,
            "rule",
            &target,
            fields,
        )
        .await?;
        Ok::<_, Error>(view)
    })
    .await
}
