//! Properties, always scoped by tenant.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::escape_like;
use super::schema::properties;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = properties)]
pub struct Property {
    pub id: Uuid,
    pub tenant_id: String,
    pub name: String,
    pub time_zone: String,
    pub address: String,
    pub version: i64,
    pub request_id: Option<String>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub auto_generate_codes: bool,
    /// 0: no limit.
    pub max_active_codes: i32,
    pub code_length: i32,
    /// "HH:MM" in the property's zone.
    pub check_in_time: String,
    pub check_out_time: String,
    pub cleaning_code: bool,
    pub cleaning_minutes: i32,
}

/// The fields an update may change; `None` leaves a field as it is.
#[derive(Debug, Default, Clone, AsChangeset)]
#[diesel(table_name = properties)]
pub struct PropertyChanges {
    pub name: Option<String>,
    pub time_zone: Option<String>,
    pub address: Option<String>,
    pub auto_generate_codes: Option<bool>,
    pub max_active_codes: Option<i32>,
    pub code_length: Option<i32>,
    pub check_in_time: Option<String>,
    pub check_out_time: Option<String>,
    pub cleaning_code: Option<bool>,
    pub cleaning_minutes: Option<i32>,
}

/// Inserts `property`; when its request id was seen before, returns the first result.
pub async fn create(conn: &mut AsyncPgConnection, property: &Property) -> QueryResult<Property> {
    let inserted = diesel::insert_into(properties::table)
        .values(property)
        .on_conflict((properties::tenant_id, properties::request_id))
        .do_nothing()
        .returning(Property::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    match (inserted, &property.request_id) {
        (Some(row), _) => Ok(row),
        (None, Some(request_id)) => {
            properties::table
                .filter(properties::tenant_id.eq(&property.tenant_id))
                .filter(properties::request_id.eq(request_id))
                .select(Property::as_select())
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
) -> QueryResult<Option<Property>> {
    properties::table
        .filter(properties::tenant_id.eq(tenant_id))
        .filter(properties::id.eq(id))
        .select(Property::as_select())
        .first(conn)
        .await
        .optional()
}

/// One page after `after`, fetching one row more than `limit` to tell whether more exist.
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    after: Option<Uuid>,
    name_contains: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Property>> {
    let mut query = properties::table
        .filter(properties::tenant_id.eq(tenant_id))
        .select(Property::as_select())
        .order(properties::id.asc())
        .limit(limit + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(properties::id.gt(after));
    }
    if let Some(needle) = name_contains {
        query = query.filter(properties::name.ilike(format!("%{}%", escape_like(needle))));
    }
    query.load(conn).await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
    changes: &PropertyChanges,
) -> QueryResult<Option<Property>> {
    diesel::update(properties::table)
        .filter(properties::tenant_id.eq(tenant_id))
        .filter(properties::id.eq(id))
        .set((
            changes,
            properties::version.eq(properties::version + 1),
            properties::update_time.eq(Utc::now()),
        ))
        .returning(Property::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes the property; `false` when the tenant has no such property.
pub async fn delete(conn: &mut AsyncPgConnection, tenant_id: &str, id: Uuid) -> QueryResult<bool> {
    let deleted = diesel::delete(properties::table)
        .filter(properties::tenant_id.eq(tenant_id))
        .filter(properties::id.eq(id))
        .execute(conn)
        .await?;
    Ok(deleted > 0)
}

/// The property, locked until the transaction ends: code issuance on its doors runs one
/// at a time, so limits and uniqueness are judged against settled data.
pub async fn get_for_update(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
) -> QueryResult<Option<Property>> {
    properties::table
        .filter(properties::tenant_id.eq(tenant_id))
        .filter(properties::id.eq(id))
        .select(Property::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}
