//! The lock cache, always scoped by tenant.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::locks;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = locks)]
pub struct LockRow {
    pub tenant_id: String,
    pub account_id: Uuid,
    pub lock_id: i64,
    pub alias: String,
    pub name: String,
    pub mac: String,
    pub battery_percent: i32,
    pub battery_time: Option<DateTime<Utc>>,
    pub has_gateway: bool,
    pub online: bool,
    pub remote_capable: bool,
    pub gateway_ids: Vec<i64>,
    pub model: String,
    pub hardware: String,
    pub firmware: String,
    pub timezone_offset_ms: i64,
    pub auto_lock_secs: i32,
    pub bolt: String,
    pub bolt_time: Option<DateTime<Utc>>,
    pub records_until_ms: Option<i64>,
    pub last_sync_time: DateTime<Utc>,
}

/// A page of the tenant's locks after `(account, lock)`, ordered by account then lock.
pub async fn page(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    account: Option<Uuid>,
    after: Option<(Uuid, i64)>,
    limit: i64,
) -> QueryResult<Vec<LockRow>> {
    let mut query = locks::table
        .filter(locks::tenant_id.eq(tenant_id))
        .order((locks::account_id.asc(), locks::lock_id.asc()))
        .limit(limit)
        .select(LockRow::as_select())
        .into_boxed();
    if let Some(account) = account {
        query = query.filter(locks::account_id.eq(account));
    }
    if let Some((account, lock)) = after {
        query = query.filter(
            locks::account_id
                .gt(account)
                .or(locks::account_id.eq(account).and(locks::lock_id.gt(lock))),
        );
    }
    query.load(conn).await
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    account: Uuid,
    lock_id: i64,
) -> QueryResult<Option<LockRow>> {
    locks::table
        .find((tenant_id, account, lock_id))
        .select(LockRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Every cached lock of an account, locked for the sync that rewrites them.
pub async fn of_account_for_update(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    account: Uuid,
) -> QueryResult<Vec<LockRow>> {
    locks::table
        .filter(locks::tenant_id.eq(tenant_id))
        .filter(locks::account_id.eq(account))
        .order(locks::lock_id.asc())
        .for_update()
        .select(LockRow::as_select())
        .load(conn)
        .await
}

/// Every cached copy of a TTLock lock (one per tenant account that holds it), locked.
pub async fn by_lock_id_for_update(
    conn: &mut AsyncPgConnection,
    lock_id: i64,
) -> QueryResult<Vec<LockRow>> {
    locks::table
        .filter(locks::lock_id.eq(lock_id))
        .order((locks::tenant_id.asc(), locks::account_id.asc()))
        .for_update()
        .select(LockRow::as_select())
        .load(conn)
        .await
}

pub async fn upsert(conn: &mut AsyncPgConnection, row: &LockRow) -> QueryResult<()> {
    diesel::insert_into(locks::table)
        .values(row)
        .on_conflict((locks::tenant_id, locks::account_id, locks::lock_id))
        .do_update()
        .set(row)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    account: Uuid,
    lock_id: i64,
) -> QueryResult<()> {
    diesel::delete(locks::table.find((tenant_id, account, lock_id)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Every cached lock a gateway reaches, locked.
pub async fn by_gateway_for_update(
    conn: &mut AsyncPgConnection,
    gateway_id: i64,
) -> QueryResult<Vec<LockRow>> {
    use diesel::PgArrayExpressionMethods;
    locks::table
        .filter(locks::gateway_ids.contains(vec![gateway_id]))
        .order((
            locks::tenant_id.asc(),
            locks::account_id.asc(),
            locks::lock_id.asc(),
        ))
        .for_update()
        .select(LockRow::as_select())
        .load(conn)
        .await
}
