//! Doors, always scoped by tenant and read with their property's time zone.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{doors, properties, rules};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = doors)]
pub struct Door {
    pub id: Uuid,
    pub tenant_id: String,
    pub property_id: Uuid,
    pub name: String,
    pub door_type: String,
    pub location: String,
    pub time_zone: Option<String>,
    pub active: bool,
    pub lock_account_id: Option<Uuid>,
    pub lock_id: Option<i64>,
    pub status: String,
    pub status_time: Option<DateTime<Utc>>,
    pub version: i64,
    pub request_id: Option<String>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// A door and the time zone of its property, which applies when the door sets none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorView {
    pub door: Door,
    pub property_time_zone: String,
}

impl DoorView {
    /// The zone the door's rules are judged in.
    pub fn effective_time_zone(&self) -> &str {
        self.door
            .time_zone
            .as_deref()
            .unwrap_or(&self.property_time_zone)
    }
}

/// The fields an update may change; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Default, Clone, AsChangeset)]
#[diesel(table_name = doors)]
pub struct DoorChanges {
    pub name: Option<String>,
    pub door_type: Option<String>,
    pub location: Option<String>,
    pub time_zone: Option<Option<String>>,
    pub active: Option<bool>,
    pub lock_account_id: Option<Option<Uuid>>,
    pub lock_id: Option<Option<i64>>,
}

/// List filters; `None` means any.
#[derive(Debug, Default, Clone)]
pub struct DoorFilter {
    pub property_id: Option<Uuid>,
    pub door_type: Option<String>,
    pub active: Option<bool>,
}

/// Inserts `door`; when its request id was seen before, returns the first result.
pub async fn create(conn: &mut AsyncPgConnection, door: &Door) -> QueryResult<Door> {
    let inserted = diesel::insert_into(doors::table)
        .values(door)
        .on_conflict((doors::tenant_id, doors::request_id))
        .do_nothing()
        .returning(Door::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    match (inserted, &door.request_id) {
        (Some(row), _) => Ok(row),
        (None, Some(request_id)) => {
            doors::table
                .filter(doors::tenant_id.eq(&door.tenant_id))
                .filter(doors::request_id.eq(request_id))
                .select(Door::as_select())
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
) -> QueryResult<Option<DoorView>> {
    doors::table
        .inner_join(properties::table)
        .filter(doors::tenant_id.eq(tenant_id))
        .filter(doors::id.eq(id))
        .select((Door::as_select(), properties::time_zone))
        .first::<(Door, String)>(conn)
        .await
        .optional()
        .map(|row| {
            row.map(|(door, property_time_zone)| DoorView {
                door,
                property_time_zone,
            })
        })
}

/// Whether the tenant has this door.
pub async fn exists(conn: &mut AsyncPgConnection, tenant_id: &str, id: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        doors::table
            .filter(doors::tenant_id.eq(tenant_id))
            .filter(doors::id.eq(id)),
    ))
    .get_result(conn)
    .await
}

/// One page after `after`, fetching one row more than `limit` to tell whether more exist.
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    after: Option<Uuid>,
    filter: &DoorFilter,
    limit: i64,
) -> QueryResult<Vec<DoorView>> {
    let mut query = doors::table
        .inner_join(properties::table)
        .filter(doors::tenant_id.eq(tenant_id))
        .select((Door::as_select(), properties::time_zone))
        .order(doors::id.asc())
        .limit(limit + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(doors::id.gt(after));
    }
    if let Some(property_id) = filter.property_id {
        query = query.filter(doors::property_id.eq(property_id));
    }
    if let Some(door_type) = &filter.door_type {
        query = query.filter(doors::door_type.eq(door_type.clone()));
    }
    if let Some(active) = filter.active {
        query = query.filter(doors::active.eq(active));
    }
    let rows = query.load::<(Door, String)>(conn).await?;
    Ok(rows
        .into_iter()
        .map(|(door, property_time_zone)| DoorView {
            door,
            property_time_zone,
        })
        .collect())
}

/// Applies `changes` and increases the version; `None` when the tenant has no such door.
pub async fn update(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
    changes: &DoorChanges,
) -> QueryResult<Option<Door>> {
    diesel::update(doors::table)
        .filter(doors::tenant_id.eq(tenant_id))
        .filter(doors::id.eq(id))
        .set((
            changes,
            doors::version.eq(doors::version + 1),
            doors::update_time.eq(Utc::now()),
        ))
        .returning(Door::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes the door and, through the foreign key, its rules. Returns how many rules went
/// with it, or `None` when the tenant has no such door.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
) -> QueryResult<Option<i64>> {
    let rules: i64 = rules::table
        .filter(rules::tenant_id.eq(tenant_id))
        .filter(rules::door_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    let deleted = diesel::delete(doors::table)
        .filter(doors::tenant_id.eq(tenant_id))
        .filter(doors::id.eq(id))
        .execute(conn)
        .await?;
    Ok((deleted > 0).then_some(rules))
}
