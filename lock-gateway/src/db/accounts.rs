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
