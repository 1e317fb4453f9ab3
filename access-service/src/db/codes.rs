//! Access codes, always scoped by tenant. A code is stored only as its keyed hash and
//! its last two digits.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{access_code_doors, access_codes, doors};

#[derive(Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = access_codes)]
pub struct AccessCode {
    pub id: Uuid,
    pub tenant_id: String,
    pub property_id: Option<Uuid>,
    /// USER, PROVIDER, TENANT or GUEST.
    pub grantee_type: String,
    pub user_id: Option<Uuid>,
    pub grantee_name: String,
    pub grantee_contact: String,
    /// STAY, CLEANING, MAINTENANCE, EMERGENCY or OTHER.
    pub purpose: String,
    /// PERMANENT, TEMPORARY or RECURRING.
    pub code_type: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// Weekly slots in the shape rules keep them.
    pub time_slots: serde_json::Value,
    pub max_usages: i32,
    pub usage_count: i32,
    pub code_hmac: Vec<u8>,
    pub code_last_digits: String,
    /// ACTIVE, REVOKED, EXPIRED or EXHAUSTED.
    pub status: String,
    pub booking_reference: Option<String>,
    pub request_id: Option<String>,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub revoke_time: Option<DateTime<Utc>>,
}

// Without the hash: it has no business in logs.
impl std::fmt::Debug for AccessCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessCode")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("purpose", &self.purpose)
            .field("code_type", &self.code_type)
            .field("status", &self.status)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A door a code is for, as issuance needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable)]
pub struct DoorTarget {
    pub id: Uuid,
    pub property_id: Uuid,
    pub lock_account_id: Option<Uuid>,
    pub lock_id: Option<i64>,
}

impl DoorTarget {
    pub fn lock(&self) -> Option<(Uuid, i64)> {
        self.lock_account_id.zip(self.lock_id)
    }
}

/// List filters; `None` means any.
#[derive(Debug, Default, Clone)]
pub struct CodeFilter {
    pub door_id: Option<Uuid>,
    /// A user id (when the text is one) or an exact grantee name.
    pub grantee: Option<String>,
    pub sync_state: Option<String>,
    pub purpose: Option<String>,
    pub status: Option<String>,
    pub active_at: Option<DateTime<Utc>>,
}

/// The tenant's doors among `ids`.
pub async fn doors_by_id(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    ids: &[Uuid],
) -> QueryResult<Vec<DoorTarget>> {
    doors::table
        .filter(doors::tenant_id.eq(tenant_id))
        .filter(doors::id.eq_any(ids))
        .select((
            doors::id,
            doors::property_id,
            doors::lock_account_id,
            doors::lock_id,
        ))
        .load(conn)
        .await
}

/// The property's active doors, in id order.
pub async fn active_doors_of_property(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    property_id: Uuid,
) -> QueryResult<Vec<DoorTarget>> {
    doors::table
        .filter(doors::tenant_id.eq(tenant_id))
        .filter(doors::property_id.eq(property_id))
        .filter(doors::active.eq(true))
        .order(doors::id.asc())
        .select((
            doors::id,
            doors::property_id,
            doors::lock_account_id,
            doors::lock_id,
        ))
        .load(conn)
        .await
}

/// Inserts `code`; `None` when its request id was already used (a concurrent retry).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    code: &AccessCode,
) -> QueryResult<Option<AccessCode>> {
    diesel::insert_into(access_codes::table)
        .values(code)
        .on_conflict((access_codes::tenant_id, access_codes::request_id))
        .do_nothing()
        .returning(AccessCode::as_returning())
        .get_result(conn)
        .await
        .optional()
}

pub async fn by_request_id(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    request_id: &str,
) -> QueryResult<Option<AccessCode>> {
    access_codes::table
        .filter(access_codes::tenant_id.eq(tenant_id))
        .filter(access_codes::request_id.eq(request_id))
        .select(AccessCode::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
) -> QueryResult<Option<AccessCode>> {
    access_codes::table
        .filter(access_codes::tenant_id.eq(tenant_id))
        .filter(access_codes::id.eq(id))
        .select(AccessCode::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn get_for_update(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
) -> QueryResult<Option<AccessCode>> {
    access_codes::table
        .filter(access_codes::tenant_id.eq(tenant_id))
        .filter(access_codes::id.eq(id))
        .select(AccessCode::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The booking's code of one purpose, locked.
pub async fn booking_for_update(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    booking_reference: &str,
    purpose: &str,
) -> QueryResult<Option<AccessCode>> {
    access_codes::table
        .filter(access_codes::tenant_id.eq(tenant_id))
        .filter(access_codes::booking_reference.eq(booking_reference))
        .filter(access_codes::purpose.eq(purpose))
        .select(AccessCode::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The keyed hashes of the ACTIVE codes on any of `doors`.
pub async fn active_hashes_on_doors(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    doors: &[Uuid],
) -> QueryResult<Vec<Vec<u8>>> {
    access_codes::table
        .inner_join(access_code_doors::table)
        .filter(access_codes::tenant_id.eq(tenant_id))
        .filter(access_codes::status.eq("ACTIVE"))
        .filter(access_code_doors::door_id.eq_any(doors))
        .select(access_codes::code_hmac)
        .distinct()
        .load(conn)
        .await
}

/// ACTIVE codes on any door of the property whose window has not ended at `now`.
pub async fn count_active_on_property(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    property_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<i64> {
    let on_property = access_code_doors::table
        .inner_join(doors::table)
        .filter(access_code_doors::tenant_id.eq(tenant_id))
        .filter(doors::property_id.eq(property_id))
        .select(access_code_doors::code_id);
    access_codes::table
        .filter(access_codes::tenant_id.eq(tenant_id))
        .filter(access_codes::status.eq("ACTIVE"))
        .filter(
            access_codes::end_time
                .is_null()
                .or(access_codes::end_time.gt(now)),
        )
        .filter(access_codes::id.eq_any(on_property))
        .count()
        .get_result(conn)
        .await
}

pub async fn revoke(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<AccessCode> {
    diesel::update(access_codes::table.find(id))
        .set((
            access_codes::status.eq("REVOKED"),
            access_codes::revoke_time.eq(Some(now)),
            access_codes::version.eq(access_codes::version + 1),
            access_codes::update_time.eq(now),
        ))
        .returning(AccessCode::as_returning())
        .get_result(conn)
        .await
}

pub async fn move_window(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> QueryResult<AccessCode> {
    diesel::update(access_codes::table.find(id))
        .set((
            access_codes::start_time.eq(Some(start)),
            access_codes::end_time.eq(Some(end)),
            access_codes::version.eq(access_codes::version + 1),
            access_codes::update_time.eq(now),
        ))
        .returning(AccessCode::as_returning())
        .get_result(conn)
        .await
}

/// One page after `after`, fetching one row more than `limit` to tell whether more exist.
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    after: Option<Uuid>,
    filter: &CodeFilter,
    limit: i64,
) -> QueryResult<Vec<AccessCode>> {
    let mut query = access_codes::table
        .filter(access_codes::tenant_id.eq(tenant_id))
        .select(AccessCode::as_select())
        .order(access_codes::id.asc())
        .limit(limit + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(access_codes::id.gt(after));
    }
    if let Some(door) = filter.door_id {
        query = query.filter(
            access_codes::id.eq_any(
                access_code_doors::table
                    .filter(access_code_doors::tenant_id.eq(tenant_id))
                    .filter(access_code_doors::door_id.eq(door))
                    .select(access_code_doors::code_id),
            ),
        );
    }
    if let Some(state) = &filter.sync_state {
        query = query.filter(
            access_codes::id.eq_any(
                access_code_doors::table
                    .filter(access_code_doors::tenant_id.eq(tenant_id))
                    .filter(access_code_doors::sync_state.eq(state.clone()))
                    .select(access_code_doors::code_id),
            ),
        );
    }
    if let Some(grantee) = &filter.grantee {
        query = match Uuid::try_parse(grantee) {
            Ok(user) => query.filter(
                access_codes::user_id
                    .eq(user)
                    .or(access_codes::grantee_name.eq(grantee.clone())),
            ),
            Err(_) => query.filter(access_codes::grantee_name.eq(grantee.clone())),
        };
    }
    if let Some(purpose) = &filter.purpose {
        query = query.filter(access_codes::purpose.eq(purpose.clone()));
    }
    if let Some(status) = &filter.status {
        query = query.filter(access_codes::status.eq(status.clone()));
    }
    if let Some(at) = filter.active_at {
        query = query
            .filter(access_codes::status.eq("ACTIVE"))
            .filter(
                access_codes::start_time
                    .is_null()
                    .or(access_codes::start_time.le(at)),
            )
            .filter(
                access_codes::end_time
                    .is_null()
                    .or(access_codes::end_time.gt(at)),
            );
    }
    query.load(conn).await
}
