//! Access rules and the users they grant, always scoped by tenant.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{rule_users, rules};

/// Rows per insert of rule users, well below PostgreSQL's limit of bind parameters.
const USER_CHUNK: usize = 5000;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = rules)]
pub struct Rule {
    pub id: Uuid,
    pub tenant_id: String,
    pub door_id: Uuid,
    pub name: String,
    pub description: String,
    pub roles: Vec<String>,
    /// `[{"day_of_week": 5, "start": "22:00", "end": "06:00"}, ...]`, see `time_slot`.
    pub time_slots: serde_json::Value,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub active: bool,
    pub version: i64,
    pub request_id: Option<String>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// A rule and the ids of the users it grants, in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleView {
    pub rule: Rule,
    pub user_ids: Vec<Uuid>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = rule_users)]
struct RuleUser {
    rule_id: Uuid,
    user_id: Uuid,
    tenant_id: String,
}

/// List filters; `None` means any.
#[derive(Debug, Default, Clone)]
pub struct RuleFilter {
    pub door_id: Option<Uuid>,
    pub active: Option<bool>,
}

/// Inserts `rule`; when its request id was seen before, returns the first result and
/// `false`, and the caller must not add users again.
pub async fn create(conn: &mut AsyncPgConnection, rule: &Rule) -> QueryResult<(Rule, bool)> {
    let inserted = diesel::insert_into(rules::table)
        .values(rule)
        .on_conflict((rules::tenant_id, rules::request_id))
        .do_nothing()
        .returning(Rule::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    match (inserted, &rule.request_id) {
        (Some(row), _) => Ok((row, true)),
        (None, Some(request_id)) => {
            let row = rules::table
                .filter(rules::tenant_id.eq(&rule.tenant_id))
                .filter(rules::request_id.eq(request_id))
                .select(Rule::as_select())
                .first(conn)
                .await?;
            Ok((row, false))
        }
        (None, None) => Err(diesel::result::Error::NotFound),
    }
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
) -> QueryResult<Option<Rule>> {
    rules::table
        .filter(rules::tenant_id.eq(tenant_id))
        .filter(rules::id.eq(id))
        .select(Rule::as_select())
        .first(conn)
        .await
        .optional()
}

/// The rule, locked until the transaction ends, so a change can check its version and
/// merge against the stored fields.
pub async fn get_for_update(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
) -> QueryResult<Option<Rule>> {
    rules::table
        .filter(rules::tenant_id.eq(tenant_id))
        .filter(rules::id.eq(id))
        .select(Rule::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The rule with its users.
pub async fn view(conn: &mut AsyncPgConnection, rule: Rule) -> QueryResult<RuleView> {
    let mut views = with_users(conn, vec![rule]).await?;
    views.pop().ok_or(diesel::result::Error::NotFound)
}

/// Attaches each rule's users, read in one query.
pub async fn with_users(
    conn: &mut AsyncPgConnection,
    rules: Vec<Rule>,
) -> QueryResult<Vec<RuleView>> {
    let ids: Vec<Uuid> = rules.iter().map(|r| r.id).collect();
    let pairs: Vec<(Uuid, Uuid)> = if ids.is_empty() {
        Vec::new()
    } else {
        rule_users::table
            .filter(rule_users::rule_id.eq_any(&ids))
            .select((rule_users::rule_id, rule_users::user_id))
            .order((rule_users::rule_id, rule_users::user_id))
            .load(conn)
            .await?
    };
    let mut by_rule: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (rule_id, user_id) in pairs {
        by_rule.entry(rule_id).or_default().push(user_id);
    }
    Ok(rules
        .into_iter()
        .map(|rule| {
            let user_ids = by_rule.remove(&rule.id).unwrap_or_default();
            RuleView { rule, user_ids }
        })
        .collect())
}

/// One page after `after`, fetching one row more than `limit` to tell whether more exist.
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    after: Option<Uuid>,
    filter: &RuleFilter,
    limit: i64,
) -> QueryResult<Vec<Rule>> {
    let mut query = rules::table
        .filter(rules::tenant_id.eq(tenant_id))
        .select(Rule::as_select())
        .order(rules::id.asc())
        .limit(limit + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(rules::id.gt(after));
    }
    if let Some(door_id) = filter.door_id {
        query = query.filter(rules::door_id.eq(door_id));
    }
    if let Some(active) = filter.active {
        query = query.filter(rules::active.eq(active));
    }
    query.load(conn).await
}

/// Stores the merged `rule` with the next version.
pub async fn save(conn: &mut AsyncPgConnection, rule: &Rule) -> QueryResult<Rule> {
    diesel::update(rules::table)
        .filter(rules::tenant_id.eq(&rule.tenant_id))
        .filter(rules::id.eq(rule.id))
        .set((
            rules::name.eq(&rule.name),
            rules::description.eq(&rule.description),
            rules::roles.eq(&rule.roles),
            rules::time_slots.eq(&rule.time_slots),
            rules::valid_from.eq(rule.valid_from),
            rules::valid_until.eq(rule.valid_until),
            rules::active.eq(rule.active),
            rules::version.eq(rules::version + 1),
            rules::update_time.eq(Utc::now()),
        ))
        .returning(Rule::as_returning())
        .get_result(conn)
        .await
}

/// How many users the rule grants.
pub async fn count_users(conn: &mut AsyncPgConnection, rule_id: Uuid) -> QueryResult<i64> {
    rule_users::table
        .filter(rule_users::rule_id.eq(rule_id))
        .count()
        .get_result(conn)
        .await
}

/// Grants the rule to `user_ids` (already checked to be the tenant's); returns how many
/// were not granted before.
pub async fn add_users(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    rule_id: Uuid,
    user_ids: &[Uuid],
) -> QueryResult<usize> {
    let mut added = 0;
    for chunk in user_ids.chunks(USER_CHUNK) {
        let rows: Vec<RuleUser> = chunk
            .iter()
            .map(|user_id| RuleUser {
                rule_id,
                user_id: *user_id,
                tenant_id: tenant_id.to_owned(),
            })
            .collect();
        added += diesel::insert_into(rule_users::table)
            .values(&rows)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    Ok(added)
}

/// Revokes the rule from `user_ids`; returns how many had been granted.
pub async fn remove_users(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    rule_id: Uuid,
    user_ids: &[Uuid],
) -> QueryResult<usize> {
    if user_ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(rule_users::table)
        .filter(rule_users::tenant_id.eq(tenant_id))
        .filter(rule_users::rule_id.eq(rule_id))
        .filter(rule_users::user_id.eq_any(user_ids))
        .execute(conn)
        .await
}

/// Replaces the rule's users with `user_ids`.
pub async fn replace_users(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    rule_id: Uuid,
    user_ids: &[Uuid],
) -> QueryResult<()> {
    diesel::delete(rule_users::table)
        .filter(rule_users::tenant_id.eq(tenant_id))
        .filter(rule_users::rule_id.eq(rule_id))
        .execute(conn)
        .await?;
    add_users(conn, tenant_id, rule_id, user_ids).await?;
    Ok(())
}

/// Deletes the rule and its user grants; returns the door it was on, `None` when the
/// tenant has no such rule.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
) -> QueryResult<Option<Uuid>> {
    diesel::delete(rules::table)
        .filter(rules::tenant_id.eq(tenant_id))
        .filter(rules::id.eq(id))
        .returning(rules::door_id)
        .get_result(conn)
        .await
        .optional()
}
