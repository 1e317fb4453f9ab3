//! Memberships of users, always scoped by tenant.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::memberships;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = memberships)]
pub struct Membership {
    pub id: Uuid,
    pub tenant_id: String,
    pub user_id: Uuid,
    pub status: String,
    pub start_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub plan: String,
    pub version: i64,
    pub request_id: Option<String>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// List filters; `None` means any.
#[derive(Debug, Default, Clone)]
pub struct MembershipFilter {
    pub user_id: Option<Uuid>,
    pub status: Option<String>,
}

/// Inserts `membership`; when its request id was seen before, returns the first result.
pub async fn create(
    conn: &mut AsyncPgConnection,
    membership: &Membership,
) -> QueryResult<Membership> {
    let inserted = diesel::insert_into(memberships::table)
        .values(membership)
        .on_conflict((memberships::tenant_id, memberships::request_id))
        .do_nothing()
        .returning(Membership::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    match (inserted, &membership.request_id) {
        (Some(row), _) => Ok(row),
        (None, Some(request_id)) => {
            memberships::table
                .filter(memberships::tenant_id.eq(&membership.tenant_id))
                .filter(memberships::request_id.eq(request_id))
                .select(Membership::as_select())
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
) -> QueryResult<Option<Membership>> {
    memberships::table
        .filter(memberships::tenant_id.eq(tenant_id))
        .filter(memberships::id.eq(id))
        .select(Membership::as_select())
        .first(conn)
        .await
        .optional()
}

/// The membership, locked until the transaction ends, so an update can merge and check
/// it against the stored fields.
pub async fn get_for_update(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
) -> QueryResult<Option<Membership>> {
    memberships::table
        .filter(memberships::tenant_id.eq(tenant_id))
        .filter(memberships::id.eq(id))
        .select(Membership::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// One page after `after`, fetching one row more than `limit` to tell whether more exist.
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    after: Option<Uuid>,
    filter: &MembershipFilter,
    limit: i64,
) -> QueryResult<Vec<Membership>> {
    let mut query = memberships::table
        .filter(memberships::tenant_id.eq(tenant_id))
        .select(Membership::as_select())
        .order(memberships::id.asc())
        .limit(limit + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(memberships::id.gt(after));
    }
    if let Some(user_id) = filter.user_id {
        query = query.filter(memberships::user_id.eq(user_id));
    }
    if let Some(status) = &filter.status {
        query = query.filter(memberships::status.eq(status.clone()));
    }
    query.load(conn).await
}

/// Stores the merged `membership` with the next version.
pub async fn save(
    conn: &mut AsyncPgConnection,
    membership: &Membership,
) -> QueryResult<Membership> {
    diesel::update(memberships::table)
        .filter(memberships::tenant_id.eq(&membership.tenant_id))
        .filter(memberships::id.eq(membership.id))
        .set((
            memberships::status.eq(&membership.status),
            memberships::start_time.eq(membership.start_time),
            memberships::end_time.eq(membership.end_time),
            memberships::plan.eq(&membership.plan),
            memberships::version.eq(memberships::version + 1),
            memberships::update_time.eq(Utc::now()),
        ))
        .returning(Membership::as_returning())
        .get_result(conn)
        .await
}

/// Deletes the membership; `false` when the tenant has no such membership.
pub async fn delete(conn: &mut AsyncPgConnection, tenant_id: &str, id: Uuid) -> QueryResult<bool> {
    let deleted = diesel::delete(memberships::table)
        .filter(memberships::tenant_id.eq(tenant_id))
        .filter(memberships::id.eq(id))
        .execute(conn)
        .await?;
    Ok(deleted > 0)
}
