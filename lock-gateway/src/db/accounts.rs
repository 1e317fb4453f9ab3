//! TTLock accounts, always scoped by tenant. Only the public columns are read here;
//! ciphertext columns are read by the code that decrypts them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::ttlock_accounts;

/// What may be shown of an account: no secret, no token.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = ttlock_accounts)]
pub struct AccountSummary {
    pub id: Uuid,
    pub name: String,
    pub base_url: String,
    pub client_id: String,
    pub username: String,
    pub create_time: DateTime<Utc>,
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
) -> QueryResult<Vec<AccountSummary>> {
    ttlock_accounts::table
        .filter(ttlock_accounts::tenant_id.eq(tenant_id))
        .order(ttlock_accounts::id.asc())
        .select(AccountSummary::as_select())
        .load(conn)
        .await
}

/// An account with its sealed credentials, for building its TTLock client.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = ttlock_accounts)]
pub struct SealedAccount {
    pub id: Uuid,
    pub tenant_id: String,
    pub name: String,
    pub base_url: String,
    pub client_id: String,
    pub username: String,
    pub key_id: String,
    pub client_secret_enc: Vec<u8>,
    pub password_md5_enc: Vec<u8>,
    pub request_id: Option<String>,
    /// The registering request's keyed fingerprint (`crate::fingerprint`), with its id.
    pub request_fingerprint: Option<Vec<u8>>,
}

/// An account with the fingerprint of the request that registered it (`None` before
/// fingerprints were kept, or without a request id).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ttlock_accounts)]
pub struct Registered {
    #[diesel(embed)]
    pub account: AccountSummary,
    pub request_fingerprint: Option<Vec<u8>>,
}

/// Stores a new account; a repeated request id returns the first one.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    account: &SealedAccount,
) -> QueryResult<Registered> {
    let inserted = diesel::insert_into(ttlock_accounts::table)
        .values(account)
        .on_conflict((ttlock_accounts::tenant_id, ttlock_accounts::request_id))
        .do_nothing()
        .returning(Registered::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    match (inserted, &account.request_id) {
        (Some(row), _) => Ok(row),
        (None, Some(request_id)) => by_request_id(conn, &account.tenant_id, request_id)
            .await?
            .ok_or(diesel::result::Error::NotFound),
        (None, None) => Err(diesel::result::Error::NotFound),
    }
}

/// The account the tenant registered under `request_id`, if any.
pub async fn by_request_id(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    request_id: &str,
) -> QueryResult<Option<Registered>> {
    ttlock_accounts::table
        .filter(ttlock_accounts::tenant_id.eq(tenant_id))
        .filter(ttlock_accounts::request_id.eq(request_id))
        .select(Registered::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn sealed(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    id: Uuid,
) -> QueryResult<Option<SealedAccount>> {
    ttlock_accounts::table
        .filter(ttlock_accounts::tenant_id.eq(tenant_id))
        .filter(ttlock_accounts::id.eq(id))
        .select(SealedAccount::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn delete(conn: &mut AsyncPgConnection, tenant_id: &str, id: Uuid) -> QueryResult<bool> {
    let deleted = diesel::delete(ttlock_accounts::table)
        .filter(ttlock_accounts::tenant_id.eq(tenant_id))
        .filter(ttlock_accounts::id.eq(id))
        .execute(conn)
        .await?;
    Ok(deleted > 0)
}

/// Claims up to `limit` accounts due for their periodic sync and pushes their next sync
/// `interval` ahead; replicas skip rows another is claiming.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    interval: std::time::Duration,
    limit: i64,
) -> QueryResult<Vec<(String, Uuid)>> {
    let seconds = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX).max(1);
    diesel::sql_query(
        "UPDATE ttlock_accounts SET next_sync_time = now() + make_interval(secs => $1) \
         WHERE id IN (SELECT id FROM ttlock_accounts WHERE next_sync_time <= now() \
                      ORDER BY next_sync_time LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING tenant_id, id",
    )
    .bind::<diesel::sql_types::Double, _>(seconds as f64)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load::<Due>(conn)
    .await
    .map(|rows| rows.into_iter().map(|r| (r.tenant_id, r.id)).collect())
}

#[derive(QueryableByName)]
struct Due {
    #[diesel(sql_type = diesel::sql_types::Text)]
    tenant_id: String,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// An account's shared TTLock token, sealed (`crate::cluster::tokens`).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ttlock_accounts)]
pub struct SealedToken {
    pub token_version: i64,
    pub token_key_id: Option<String>,
    pub access_token_enc: Option<Vec<u8>>,
    pub refresh_token_enc: Option<Vec<u8>>,
    pub ttlock_uid: Option<i64>,
    pub token_expires_at: Option<DateTime<Utc>>,
}

/// The stored token of account `id`; `lock` holds the row until the transaction ends,
/// so one replica at a time renews it.
pub async fn token(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    lock: bool,
) -> QueryResult<Option<SealedToken>> {
    let query = ttlock_accounts::table
        .filter(ttlock_accounts::id.eq(id))
        .select(SealedToken::as_select());
    if lock {
        query.for_update().first(conn).await.optional()
    } else {
        query.first(conn).await.optional()
    }
}

/// A new token for account `id`, as the next version; returns that version. With
/// `only_first`, only an account that never had a stored token takes it.
pub async fn store_token(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    token: &SealedToken,
    only_first: bool,
) -> QueryResult<Option<i64>> {
    let mut query = diesel::update(ttlock_accounts::table)
        .filter(ttlock_accounts::id.eq(id))
        .into_boxed();
    if only_first {
        query = query.filter(ttlock_accounts::token_version.eq(0));
    }
    query
        .set((
            ttlock_accounts::token_key_id.eq(&token.token_key_id),
            ttlock_accounts::access_token_enc.eq(&token.access_token_enc),
            ttlock_accounts::refresh_token_enc.eq(&token.refresh_token_enc),
            ttlock_accounts::ttlock_uid.eq(token.ttlock_uid),
            ttlock_accounts::token_expires_at.eq(token.token_expires_at),
            ttlock_accounts::token_version.eq(ttlock_accounts::token_version + 1),
            ttlock_accounts::update_time.eq(Utc::now()),
        ))
        .returning(ttlock_accounts::token_version)
        .get_result(conn)
        .await
        .optional()
}
