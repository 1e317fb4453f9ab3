//! Users: validation before storage, and each change audited in its transaction.

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
use crate::db::users::{self, User, UserChanges, UserFilter};
use crate::directory::{
    check_max_len, check_name, mask_fields, parse_bool_filter, parse_id, record,
};
use crate::error::{Error, Result};
use crate::state::AppState;

const MAX_EXTERNAL_ID_LEN: usize = 128;
const MAX_EMAIL_LEN: usize = 254;
const MAX_USER_ROLES: usize = 50;
const MAX_ROLE_LEN: usize = 64;
const MAX_QUERY_LEN: usize = 200;
/// The paths an update mask may name.
const UPDATE_PATHS: &[&str] = &["external_id", "name", "email", "roles", "active"];

/// Checks role names (`{field}[i]`: 1 to 64 of `[A-Za-z0-9_.-]`) and their count;
/// returns them without repeats, in the order given.
pub fn check_roles(
    field: &str,
    roles: &[String],
    max: usize,
    violations: &mut FieldViolations,
) -> Vec<String> {
    if roles.len() > max {
        violations.add(field, format!("must hold at most {max} roles"));
    }
    let mut unique: Vec<String> = Vec::with_capacity(roles.len());
    for (index, role) in roles.iter().enumerate() {
        let valid = (1..=MAX_ROLE_LEN).contains(&role.len())
            && role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            violations.add(
                format!("{field}[{index}]"),
                format!("must be 1 to {MAX_ROLE_LEN} of the characters A-Z a-z 0-9 _ . -"),
            );
        } else if !unique.contains(role) {
            unique.push(role.clone());
        }
    }
    unique
}

/// A sanity check, not full RFC 5322: one `@` between a local part and a dotted domain,
/// and no spaces. Empty means no email.
fn check_email(field: &str, email: &str, violations: &mut FieldViolations) {
    if email.is_empty() {
        return;
    }
    let plausible = email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if !plausible {
        violations.add(field, "must be an email address such as ana@example.com");
    }
}

fn check_external_id(value: &str, violations: &mut FieldViolations) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.len() > MAX_EXTERNAL_ID_LEN || value.chars().any(char::is_control) {
        violations.add(
            "user.external_id",
            format!("must be at most {MAX_EXTERNAL_ID_LEN} bytes without control characters"),
        );
    }
    Some(value.to_owned())
}

/// External ids are unique within a tenant.
fn external_id_conflict(error: DieselError) -> Error {
    if let DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = &error
        && info.constraint_name() == Some("users_external_id_key")
    {
        return ApiError::AlreadyExists {
            reason: "EXTERNAL_ID_TAKEN",
            message: "another user of this tenant has this external_id".to_owned(),
        }
        .into();
    }
    error.into()
}

fn audit_fields(user: &User) -> serde_json::Value {
    json!({
        "external_id": user.external_id,
        "name": user.name,
        "email": user.email,
        "roles": user.roles,
        "active": user.active,
        "version": user.version,
    })
}

pub async fn create_user(
    state: &AppState,
    caller: &Caller,
    user: Option<pb::User>,
    request_id: &str,
) -> Result<User> {
    let Some(user) = user else {
        return Err(FieldViolations::single("user", "is required").into());
    };
    let mut violations = FieldViolations::default();
    let external_id = check_external_id(&user.external_id, &mut violations);
    check_name("user.name", &user.name, &mut violations);
    check_email("user.email", &user.email, &mut violations);
    let roles = check_roles("user.roles", &user.roles, MAX_USER_ROLES, &mut violations);
    let request_id = pagination::request_id(request_id, &mut violations);
    violations.check()?;

    let now = Utc::now();
    let new = User {
        id: Uuid::now_v7(),
        tenant_id: caller.tenant_id.clone(),
        external_id,
        name: user.name.trim().to_owned(),
        email: user.email,
        roles,
        active: user.active,
        version: 1,
        request_id,
        create_time: now,
        update_time: now,
    };
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        let stored = users::create(conn, &new)
            .await
            .map_err(external_id_conflict)?;
        // A retried request returns the first result and records nothing new.
        if stored.id == new.id {
            let id = stored.id.to_string();
            let fields = audit_fields(&stored);
            record(conn, caller, AuditAction::AdminCreate, "user", &id, fields).await?;
        }
        Ok::<_, Error>(stored)
    })
    .await
}

pub async fn get_user(state: &AppState, caller: &Caller, id: &str) -> Result<User> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    violations.check()?;
    let mut conn = state.pool.get().await?;
    users::get(&mut conn, &caller.tenant_id, uuid)
        .await?
        .ok_or_else(|| ApiError::not_found("user", id).into())
}

pub async fn list_users(
    state: &AppState,
    caller: &Caller,
    request: &pb::ListUsersRequest,
) -> Result<(Vec<User>, String)> {
    let mut violations = FieldViolations::default();
    let size = pagination::page_size(request.page_size, &mut violations);
    let after = pagination::decode_uuid_token(&request.page_token, &mut violations);
    let role = (!request.role.is_empty()).then(|| request.role.clone());
    check_max_len("role", &request.role, MAX_ROLE_LEN, &mut violations);
    check_max_len("query", &request.query, MAX_QUERY_LEN, &mut violations);
    let filter = UserFilter {
        role,
        active: parse_bool_filter("active", &request.active, &mut violations),
        query: (!request.query.is_empty()).then(|| request.query.clone()),
    };
    violations.check()?;
    let mut conn = state.pool.get().await?;
    let rows = users::list(&mut conn, &caller.tenant_id, after, &filter, size).await?;
    Ok(pagination::finish_page(rows, size, |u| u.id))
}

pub async fn update_user(
    state: &AppState,
    caller: &Caller,
    user: Option<pb::User>,
    mask: Option<&prost_types::FieldMask>,
) -> Result<User> {
    let Some(user) = user else {
        return Err(FieldViolations::single("user", "is required").into());
    };
    let mut violations = FieldViolations::default();
    let fields = mask_fields(mask, UPDATE_PATHS, &mut violations);
    let uuid = parse_id("user.id", &user.id, &mut violations);
    let mut changes = UserChanges::default();
    for field in fields {
        match field {
            "external_id" => {
                changes.external_id = Some(check_external_id(&user.external_id, &mut violations));
            }
            "name" => {
                check_name("user.name", &user.name, &mut violations);
                changes.name = Some(user.name.trim().to_owned());
            }
            "email" => {
                check_email("user.email", &user.email, &mut violations);
                changes.email = Some(user.email.clone());
            }
            "roles" => {
                let roles = check_roles("user.roles", &user.roles, MAX_USER_ROLES, &mut violations);
                changes.roles = Some(roles);
            }
            "active" => changes.active = Some(user.active),
            // mask_fields has already named any other path.
            _ => {}
        }
    }
    violations.check()?;
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        let updated = users::update(conn, &caller.tenant_id, uuid, &changes)
            .await
            .map_err(external_id_conflict)?;
        let Some(updated) = updated else {
            return Err(ApiError::not_found("user", &user.id).into());
        };
        let id = updated.id.to_string();
        let fields = audit_fields(&updated);
        record(conn, caller, AuditAction::AdminUpdate, "user", &id, fields).await?;
        Ok::<_, Error>(updated)
    })
    .await
}

/// Deletes the user with its memberships and grants; returns the doors whose rules
/// granted it.
pub async fn delete_user(state: &AppState, caller: &Caller, id: &str) -> Result<Vec<Uuid>> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    violations.check()?;
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        let Some(gone) = users::delete(conn, &caller.tenant_id, uuid).await? else {
            return Err(ApiError::not_found("user", id).into());
        };
        let fields = json!({
            "memberships_deleted": gone.memberships,
            "rule_grants_deleted": gone.rule_grants,
        });
        record(
            conn,
            caller,
            AuditAction::AdminDelete,
            "user",
            &uuid.to_string(),
            fields,
        )
        .await?;
        Ok::<_, Error>(gone.rule_doors)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_get_a_sanity_check() {
        for good in ["", "ana@example.com", "a.b+c@mail.example.org"] {
            let mut v = FieldViolations::default();
            check_email("e", good, &mut v);
            assert!(v.is_empty(), "{good}");
        }
        for bad in [
            "ana",
            "@example.com",
            "ana@",
            "ana@example",
            "a b@x.com",
            "a@b@c.com",
            "a@.com",
            "a@x..com",
        ] {
            let mut v = FieldViolations::default();
            check_email("e", bad, &mut v);
            assert_eq!(v.fields(), ["e"], "{bad}");
        }
    }

    #[test]
    fn roles_are_checked_one_by_one_and_deduplicated() {
        let mut v = FieldViolations::default();
        let roles: Vec<String> = [
            "staff",
            "bad role",
            "staff",
            "",
            "x".repeat(65).as_str(),
            "a.b-c_D9",
        ]
        .iter()
        .map(|r| (*r).to_owned())
        .collect();
        let kept = check_roles("user.roles", &roles, 50, &mut v);
        assert_eq!(kept, ["staff", "a.b-c_D9"]);
        assert_eq!(
            v.fields(),
            ["user.roles[1]", "user.roles[3]", "user.roles[4]"]
        );
        let mut v = FieldViolations::default();
        let many: Vec<String> = (0..51).map(|i| format!("r{i}")).collect();
        check_roles("user.roles", &many, 50, &mut v);
        assert_eq!(v.fields(), ["user.roles"]);
    }
}
