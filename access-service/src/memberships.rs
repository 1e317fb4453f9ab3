//! Memberships: a user's standing (active, frozen, ...) over a window of time.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pagination;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::from_timestamp;
use serde_json::json;
use uuid::Uuid;

use crate::audit::AuditAction;
use crate::db::memberships::{self, Membership, MembershipFilter};
use crate::db::users;
use crate::directory::{check_max_len, mask_fields, parse_id, parse_id_filter, record};
use crate::error::{Error, Result};
use crate::state::AppState;

const MAX_PLAN_LEN: usize = 200;
/// The paths an update mask may name.
const UPDATE_PATHS: &[&str] = &["status", "start_time", "end_time", "plan"];

/// The stored name of a status (`ACTIVE`, ...); `None` for unspecified or unknown.
pub fn status_name(value: i32) -> Option<&'static str> {
    match pb::MembershipStatus::try_from(value) {
        Ok(pb::MembershipStatus::Unspecified) | Err(_) => None,
        Ok(status) => status.as_str_name().strip_prefix("MEMBERSHIP_STATUS_"),
    }
}

fn check_status(field: &str, value: i32, violations: &mut FieldViolations) -> String {
    match status_name(value) {
        Some(name) => name.to_owned(),
        None => {
            violations.add(field, "must be a membership status other than UNSPECIFIED");
            String::new()
        }
    }
}

/// An instant of the request; `required` makes absence a violation.
pub(crate) fn check_instant(
    field: &str,
    value: Option<&prost_types::Timestamp>,
    required: bool,
    violations: &mut FieldViolations,
) -> Option<DateTime<Utc>> {
    match value {
        None => {
            if required {
                violations.add(field, "is required");
            }
            None
        }
        Some(ts) => {
            let instant = from_timestamp(ts);
            if instant.is_none() {
                violations.add(field, "is not a valid timestamp");
            }
            instant
        }
    }
}

fn check_window(membership: &Membership, violations: &mut FieldViolations) {
    if let Some(end) = membership.end_time
        && end <= membership.start_time
    {
        violations.add("membership.end_time", "must be after start_time");
    }
}

fn audit_fields(membership: &Membership) -> serde_json::Value {
    json!({
        "user_id": membership.user_id,
        "status": membership.status,
        "start_time": membership.start_time,
        "end_time": membership.end_time,
        "plan": membership.plan,
        "version": membership.version,
    })
}

pub async fn create_membership(
    state: &AppState,
    caller: &Caller,
    membership: Option<pb::Membership>,
    request_id: &str,
) -> Result<Membership> {
    let Some(membership) = membership else {
        return Err(FieldViolations::single("membership", "is required").into());
    };
    let mut violations = FieldViolations::default();
    let user_id = parse_id("membership.user_id", &membership.user_id, &mut violations);
    let status = check_status("membership.status", membership.status, &mut violations);
    let start = check_instant(
        "membership.start_time",
        membership.start_time.as_ref(),
        true,
        &mut violations,
    );
    let end = check_instant(
        "membership.end_time",
        membership.end_time.as_ref(),
        false,
        &mut violations,
    );
    check_max_len(
        "membership.plan",
        &membership.plan,
        MAX_PLAN_LEN,
        &mut violations,
    );
    let request_id = pagination::request_id(request_id, &mut violations);
    let now = Utc::now();
    let new = Membership {
        id: Uuid::now_v7(),
        tenant_id: caller.tenant_id.clone(),
        user_id,
        status,
        start_time: start.unwrap_or(now),
        end_time: end,
        plan: membership.plan,
        version: 1,
        request_id,
        create_time: now,
        update_time: now,
    };
    if start.is_some() {
        check_window(&new, &mut violations);
    }
    violations.check()?;

    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        if users::get(conn, &caller.tenant_id, user_id)
            .await?
            .is_none()
        {
            return Err(FieldViolations::single(
                "membership.user_id",
                "names no user of this tenant",
            )
            .into());
        }
        let stored = memberships::create(conn, &new).await?;
        // A retried request returns the first result and records nothing new.
        if stored.id == new.id {
            let id = stored.id.to_string();
            let fields = audit_fields(&stored);
            record(
                conn,
                caller,
                AuditAction::AdminCreate,
                "membership",
                &id,
                fields,
            )
            .await?;
        }
        Ok::<_, Error>(stored)
    })
    .await
}

pub async fn get_membership(state: &AppState, caller: &Caller, id: &str) -> Result<Membership> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    violations.check()?;
    let mut conn = state.pool.get().await?;
    memberships::get(&mut conn, &caller.tenant_id, uuid)
        .await?
        .ok_or_else(|| ApiError::not_found("membership", id).into())
}

pub async fn list_memberships(
    state: &AppState,
    caller: &Caller,
    request: &pb::ListMembershipsRequest,
) -> Result<(Vec<Membership>, String)> {
    let mut violations = FieldViolations::default();
    let size = pagination::page_size(request.page_size, &mut violations);
    let after = pagination::decode_uuid_token(&request.page_token, &mut violations);
    let filter = MembershipFilter {
        user_id: parse_id_filter("user_id", &request.user_id, &mut violations),
        status: (request.status != 0)
            .then(|| check_status("status", request.status, &mut violations)),
    };
    violations.check()?;
    let mut conn = state.pool.get().await?;
    let rows = memberships::list(&mut conn, &caller.tenant_id, after, &filter, size).await?;
    Ok(pagination::finish_page(rows, size, |m| m.id))
}

pub async fn update_membership(
    state: &AppState,
    caller: &Caller,
    membership: Option<pb::Membership>,
    mask: Option<&prost_types::FieldMask>,
) -> Result<Membership> {
    let Some(membership) = membership else {
        return Err(FieldViolations::single("membership", "is required").into());
    };
    let mut violations = FieldViolations::default();
    let fields = mask_fields(mask, UPDATE_PATHS, &mut violations);
    let uuid = parse_id("membership.id", &membership.id, &mut violations);
    let status = fields
        .contains(&"status")
        .then(|| check_status("membership.status", membership.status, &mut violations));
    let start = fields.contains(&"start_time").then(|| {
        check_instant(
            "membership.start_time",
            membership.start_time.as_ref(),
            true,
            &mut violations,
        )
    });
    let end = fields.contains(&"end_time").then(|| {
        check_instant(
            "membership.end_time",
            membership.end_time.as_ref(),
            false,
            &mut violations,
        )
    });
    if fields.contains(&"plan") {
        check_max_len(
            "membership.plan",
            &membership.plan,
            MAX_PLAN_LEN,
            &mut violations,
        );
    }
    violations.check()?;

    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        let Some(mut stored) = memberships::get_for_update(conn, &caller.tenant_id, uuid).await?
        else {
            return Err(ApiError::not_found("membership", &membership.id).into());
        };
        if let Some(status) = status {
            stored.status = status;
        }
        if let Some(Some(start)) = start {
            stored.start_time = start;
        }
        if let Some(end) = end {
            stored.end_time = end;
        }
        if fields.contains(&"plan") {
            stored.plan = membership.plan.clone();
        }
        // The window is checked as merged with what is stored.
        let mut violations = FieldViolations::default();
        check_window(&stored, &mut violations);
        violations.check()?;
        let updated = memberships::save(conn, &stored).await?;
        let id = updated.id.to_string();
        let fields = audit_fields(&updated);
        record(
            conn,
            caller,
            AuditAction::AdminUpdate,
            "membership",
            &id,
            fields,
        )
        .await?;
        Ok::<_, Error>(updated)
    })
    .await
}

pub async fn delete_membership(state: &AppState, caller: &Caller, id: &str) -> Result<()> {
    let mut violations = FieldViolations::default();
    let uuid = parse_id("id", id, &mut violations);
    violations.check()?;
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        if !memberships::delete(conn, &caller.tenant_id, uuid).await? {
            return Err(ApiError::not_found("membership", id).into());
        }
        record(
            conn,
            caller,
            AuditAction::AdminDelete,
            "membership",
            &uuid.to_string(),
            json!({}),
        )
        .await?;
        Ok::<_, Error>(())
    })
    .await
}
