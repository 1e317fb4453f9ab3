//! What following lock-gateway's device events reads and writes: the per-tenant cursor
//! and its lease, the door a lock is bound to, and the usage of the code a passcode
//! unlock names.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Double, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::doors::Door;
use super::schema::{access_code_doors, access_codes, device_event_cursors, doors, users};

/// Tenants with at least one door bound to a lock: the ones whose events matter.
pub async fn followed_tenants(conn: &mut AsyncPgConnection) -> QueryResult<Vec<String>> {
    doors::table
        .filter(doors::lock_account_id.is_not_null())
        .select(doors::tenant_id)
        .distinct()
        .load(conn)
        .await
}

/// Takes (or keeps) the tenant's lease for `lease` from now, by the database's clock so
/// replicas agree; `false` while another replica holds an unexpired lease.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    owner: &str,
    lease: Duration,
) -> QueryResult<bool> {
    diesel::insert_into(device_event_cursors::table)
        .values(device_event_cursors::tenant_id.eq(tenant))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    let claimed = diesel::sql_query(
        "UPDATE device_event_cursors \
         SET lease_owner = $2, lease_until = now() + make_interval(secs => $3), update_time = now() \
         WHERE tenant_id = $1 AND (lease_owner = $2 OR lease_until IS NULL OR lease_until < now())",
    )
    .bind::<Text, _>(tenant)
    .bind::<Text, _>(owner)
    .bind::<Double, _>(lease.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(claimed == 1)
}

/// Gives the lease up so another replica can take over at once.
pub async fn release(conn: &mut AsyncPgConnection, tenant: &str, owner: &str) -> QueryResult<()> {
    diesel::update(
        device_event_cursors::table
            .filter(device_event_cursors::tenant_id.eq(tenant))
            .filter(device_event_cursors::lease_owner.eq(owner)),
    )
    .set((
        device_event_cursors::lease_owner.eq(None::<String>),
        device_event_cursors::lease_until.eq(None::<DateTime<Utc>>),
        device_event_cursors::update_time.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// The last cursor applied for the tenant (0: none yet).
pub async fn cursor(conn: &mut AsyncPgConnection, tenant: &str) -> QueryResult<i64> {
    Ok(device_event_cursors::table
        .find(tenant)
        .select(device_event_cursors::cursor)
        .first(conn)
        .await
        .optional()?
        .unwrap_or(0))
}

/// The last cursor applied, locked until the transaction ends so two appliers of one
/// tenant take turns and the second sees what the first applied.
pub async fn lock_cursor(conn: &mut AsyncPgConnection, tenant: &str) -> QueryResult<i64> {
    diesel::insert_into(device_event_cursors::table)
        .values(device_event_cursors::tenant_id.eq(tenant))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    device_event_cursors::table
        .find(tenant)
        .select(device_event_cursors::cursor)
        .for_update()
        .first(conn)
        .await
}

pub async fn set_cursor(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    cursor: i64,
) -> QueryResult<()> {
    diesel::update(device_event_cursors::table.find(tenant))
        .set((
            device_event_cursors::cursor.eq(cursor),
            device_event_cursors::update_time.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The tenant's door bound to the lock (one at most: `doors_lock_key`).
pub async fn door_on_lock(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    account: Uuid,
    lock_id: i64,
) -> QueryResult<Option<Door>> {
    doors::table
        .filter(doors::tenant_id.eq(tenant))
        .filter(doors::lock_account_id.eq(account))
        .filter(doors::lock_id.eq(lock_id))
        .select(Door::as_select())
        .first(conn)
        .await
        .optional()
}

/// Sets the door's status unless a later event already set it. With `only_from`, only a
/// door in that status changes. The door's version is left alone: status is not
/// configuration, and an administrator's update must not fail because a lock reported.
pub async fn set_door_status(
    conn: &mut AsyncPgConnection,
    door_id: Uuid,
    status: &str,
    only_from: Option<&str>,
    occur_time: DateTime<Utc>,
) -> QueryResult<bool> {
    let target = doors::table.filter(doors::id.eq(door_id)).filter(
        doors::status_time
            .is_null()
            .or(doors::status_time.le(occur_time)),
    );
    let changes = (doors::status.eq(status), doors::status_time.eq(occur_time));
    let updated = match only_from {
        Some(from) => {
            diesel::update(target.filter(doors::status.eq(from)))
                .set(changes)
                .execute(conn)
                .await?
        }
        None => diesel::update(target).set(changes).execute(conn).await?,
    };
    Ok(updated == 1)
}

/// What a passcode unlock needs of the code it names.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = access_codes)]
pub struct CodeUse {
    pub id: Uuid,
    pub grantee_type: String,
    pub user_id: Option<Uuid>,
    pub grantee_name: String,
    pub max_usages: i32,
    pub usage_count: i32,
    pub status: String,
}

/// The tenant's code, locked so concurrent counts of its usages add up.
pub async fn code_for_update(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    code_id: Uuid,
) -> QueryResult<Option<CodeUse>> {
    access_codes::table
        .filter(access_codes::tenant_id.eq(tenant))
        .filter(access_codes::id.eq(code_id))
        .select(CodeUse::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The name and email of the tenant's user.
pub async fn user_contact(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    user_id: Uuid,
) -> QueryResult<Option<(String, String)>> {
    users::table
        .filter(users::tenant_id.eq(tenant))
        .filter(users::id.eq(user_id))
        .select((users::name, users::email))
        .first(conn)
        .await
        .optional()
}

/// Counts one more usage; `exhausted` also ends the code.
pub async fn count_usage(
    conn: &mut AsyncPgConnection,
    code_id: Uuid,
    exhausted: bool,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    let target = access_codes::table.filter(access_codes::id.eq(code_id));
    let counted = (
        access_codes::usage_count.eq(access_codes::usage_count + 1),
        access_codes::version.eq(access_codes::version + 1),
        access_codes::update_time.eq(now),
    );
    if exhausted {
        diesel::update(target)
            .set((
                counted,
                access_codes::status.eq("EXHAUSTED"),
                access_codes::revoke_time.eq(now),
            ))
            .execute(conn)
            .await?;
    } else {
        diesel::update(target).set(counted).execute(conn).await?;
    }
    Ok(())
}

/// The code written to the lock as passcode `passcode_id`, once provisioning recorded it.
pub async fn code_of_passcode(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    account: Uuid,
    lock_id: i64,
    passcode_id: i64,
) -> QueryResult<Option<Uuid>> {
    access_code_doors::table
        .filter(access_code_doors::tenant_id.eq(tenant))
        .filter(access_code_doors::account_id.eq(account))
        .filter(access_code_doors::lock_id.eq(lock_id))
        .filter(access_code_doors::lock_passcode_id.eq(passcode_id))
        .select(access_code_doors::code_id)
        .first(conn)
        .await
        .optional()
}
