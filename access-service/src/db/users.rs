//! Users, always scoped by tenant.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::contains_pattern;
use super::schema::{memberships, rule_users, rules, users};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: String,
    pub external_id: Option<String>,
    pub name: String,
    pub email: String,
    pub roles: Vec<String>,
    pub active: bool,
    pub version: i64,
    pub request_id: Option<String>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// The fields an update may change; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Default, Clone, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChanges {
    pub external_id: Option<Option<String>>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub roles: Option<Vec<String>>,
    pub active: Option<bool>,
}

/// List filters; `None` means any.
#[derive(Debug, Default, Clone)]
pub struct UserFilter {
    pub role: Option<String>,
    pub active: Option<bool>,
    /// Case-insensitive substring of the name or the email.
    pub query: Option<String>,
}

/// What went with a deleted user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub memberships: i64,
    pub rule_grants: i64,
    /// The doors whose rules granted the user.
    pub rule_doors: Vec<Uuid>,
}

/// Inserts `user`; when its request id was seen before, returns the first result.
pub async fn create(conn: &mut AsyncPgConnection, user: &User) -> QueryResult<User> {
    let inserted = diesel::insert_into(users::table)
        .values(user)
        .on_conflict((users::tenant_id, users::request_id))
        .do_nothing()
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    match (inserted, &user.request_id) {
        (Some(row), _) => Ok(row),
        (None, Some(request_id)) => {
            users::table
                .filter(users::tenant_id.eq(&user.tenant_id))
                .filter(users::request_id.eq(request_id))
                .select(User::as_select())
                .first(conn)
                .await
        }
        (None, None) => Err(diesel::result::Error::NotFound),
    }
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
) -> QueryResult<Option<User>> {
    users::table
        .filter(users::tenant_id.eq(tenant_id))
        .filter(users::id.eq(id))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Which of `ids` are users of the tenant.
pub async fn existing(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    ids: &[Uuid],
) -> QueryResult<HashSet<Uuid>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let found: Vec<Uuid> = users::table
        .filter(users::tenant_id.eq(tenant_id))
        .filter(users::id.eq_any(ids))
        .select(users::id)
        .load(conn)
        .await?;
    Ok(found.into_iter().collect())
}

/// One page after `after`, fetching one row more than `limit` to tell whether more exist.
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    after: Option<Uuid>,
    filter: &UserFilter,
    limit: i64,
) -> QueryResult<Vec<User>> {
    let mut query = users::table
        .filter(users::tenant_id.eq(tenant_id))
        .select(User::as_select())
        .order(users::id.asc())
        .limit(limit + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(users::id.gt(after));
    }
    if let Some(role) = &filter.role {
        query = query.filter(users::roles.contains(vec![role.clone()]));
    }
    if let Some(active) = filter.active {
        query = query.filter(users::active.eq(active));
    }
    if let Some(needle) = &filter.query {
        let pattern = contains_pattern(needle);
        query = query.filter(
            users::name
                .ilike(pattern.clone())
                .or(users::email.ilike(pattern)),
        );
    }
    query.load(conn).await
}

/// Applies `changes` and increases the version; `None` when the tenant has no such user.
pub async fn update(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
    changes: &UserChanges,
) -> QueryResult<Option<User>> {
    diesel::update(users::table)
        .filter(users::tenant_id.eq(tenant_id))
        .filter(users::id.eq(id))
        .set((
            changes,
            users::version.eq(users::version + 1),
            users::update_time.eq(Utc::now()),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes the user; memberships and rule grants go with it through the foreign keys.
/// `None` when the tenant has no such user.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
) -> QueryResult<Option<Deleted>> {
    let memberships: i64 = memberships::table
        .filter(memberships::tenant_id.eq(tenant_id))
        .filter(memberships::user_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    let grants: Vec<Uuid> = rule_users::table
        .inner_join(rules::table)
        .filter(rule_users::tenant_id.eq(tenant_id))
        .filter(rule_users::user_id.eq(id))
        .select(rules::door_id)
        .load(conn)
        .await?;
    let rule_grants = i64::try_from(grants.len()).unwrap_or(i64::MAX);
    let mut rule_doors = grants;
    rule_doors.sort_unstable();
    rule_doors.dedup();
    let deleted = diesel::delete(users::table)
        .filter(users::tenant_id.eq(tenant_id))
        .filter(users::id.eq(id))
        .execute(conn)
        .await?;
    Ok((deleted > 0).then_some(Deleted {
        memberships,
        rule_grants,
        rule_doors,
    }))
}
