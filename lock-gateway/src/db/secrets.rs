//! Secrets the gateway makes for itself, kept sealed under the encryption key.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::gateway_secrets;

/// Stores `sealed` under `name` unless a value is already there; returns what is stored,
/// with the id of the key that sealed it. Replicas starting together agree on the first.
pub async fn insert_or_get(
    conn: &mut AsyncPgConnection,
    name: &str,
    key_id: &str,
    sealed: &[u8],
) -> QueryResult<(String, Vec<u8>)> {
    diesel::insert_into(gateway_secrets::table)
        .values((
            gateway_secrets::name.eq(name),
            gateway_secrets::key_id.eq(key_id),
            gateway_secrets::sealed.eq(sealed),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    gateway_secrets::table
        .find(name)
        .select((gateway_secrets::key_id, gateway_secrets::sealed))
        .first(conn)
        .await
}

/// Replaces the value of `name`, sealed anew under `key_id`.
pub async fn reseal(
    conn: &mut AsyncPgConnection,
    name: &str,
    key_id: &str,
    sealed: &[u8],
) -> QueryResult<()> {
    diesel::update(gateway_secrets::table.find(name))
        .set((
            gateway_secrets::key_id.eq(key_id),
            gateway_secrets::sealed.eq(sealed),
            gateway_secrets::update_time.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
