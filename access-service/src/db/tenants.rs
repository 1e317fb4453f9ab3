//! Tenant settings.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::tenants;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = tenants)]
pub struct Tenant {
    pub tenant_id: String,
    pub door_access_enabled: bool,
    pub default_time_zone: String,
    pub version: i64,
    pub update_time: DateTime<Utc>,
}

impl Tenant {
    /// The settings of a tenant that never changed them.
    pub fn defaults(tenant_id: &str) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            door_access_enabled: true,
            default_time_zone: "UTC".to_owned(),
            version: 0,
            update_time: DateTime::<Utc>::UNIX_EPOCH,
        }
    }
}

pub async fn find(conn: &mut AsyncPgConnection, tenant_id: &str) -> QueryResult<Option<Tenant>> {
    tenants::table
        .find(tenant_id)
        .select(Tenant::as_select())
        .first(conn)
        .await
        .optional()
}

/// Stores `settings`, creating the row on first change; the version increases by one.
pub async fn upsert(conn: &mut AsyncPgConnection, settings: &Tenant) -> QueryResult<Tenant> {
    let row = Tenant {
        version: 1,
        update_time: Utc::now(),
        ..settings.clone()
    };
    diesel::insert_into(tenants::table)
        .values(&row)
        .on_conflict(tenants::tenant_id)
        .do_update()
        .set((
            tenants::door_access_enabled.eq(excluded(tenants::door_access_enabled)),
            tenants::default_time_zone.eq(excluded(tenants::default_time_zone)),
            tenants::version.eq(tenants::version + 1),
            tenants::update_time.eq(excluded(tenants::update_time)),
        ))
        .returning(Tenant::as_returning())
        .get_result(conn)
        .await
}
