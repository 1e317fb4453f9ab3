//! The digest key that de-duplicates records and callbacks. Digests are compared with
//! those stored earlier, so the key must not change when the encryption key rotates: it
//! is kept sealed in `gateway_secrets`. The first start stores the key derived from the
//! encryption key of that time, which keyed every digest stored before it was kept;
//! later starts adopt the stored key and, once the encryption key has rotated, seal it
//! anew under the current one.

use std::time::Duration;

use latchkey::db::DbPool;
use secrecy::ExposeSecret as _;

use crate::crypto::{CryptoError, Sealer};
use crate::db::secrets;

const NAME: &str = "digest_key";
/// Binds the sealed value to its row, as TTLock secrets are bound to theirs.
const CONTEXT: &str = "gateway_secrets/digest_key";

/// Longest wait between attempts while the database is away.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DigestKeyError {
    #[error("database: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(#[from] diesel_async::pooled_connection::deadpool::PoolError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// `sealer` with the stored digest key, storing its own if none is stored yet.
#[tracing::instrument(name = "digest_key.adopt", skip_all)]
pub async fn adopt(pool: &DbPool, sealer: Sealer) -> Result<Sealer, DigestKeyError> {
    let mut conn = pool.get().await?;
    let own = sealer.seal(sealer.digest_key().expose_secret(), CONTEXT)?;
    let (key_id, sealed) =
        secrets::insert_or_get(&mut conn, NAME, sealer.current_key_id(), &own).await?;
    let key = sealer.open(&key_id, &sealed, CONTEXT)?;
    let sealer = sealer.with_digest_key(&key)?;
    if key_id != sealer.current_key_id() {
        let resealed = sealer.seal(key.expose_secret(), CONTEXT)?;
        secrets::reseal(&mut conn, NAME, sealer.current_key_id(), &resealed).await?;
        tracing::info!(
            from = %key_id,
            to = %sealer.current_key_id(),
            "digest key sealed under the current encryption key"
        );
    }
    Ok(sealer)
}

/// [`adopt`], retried with backoff while the database cannot be reached or queried. A key
/// that does not open (the key it was sealed with is not configured) is not retried.
pub async fn adopt_when_reachable(pool: &DbPool, sealer: Sealer) -> Result<Sealer, CryptoError> {
    let mut delay = Duration::from_millis(100);
    loop {
        match adopt(pool, sealer.clone()).await {
            Ok(adopted) => return Ok(adopted),
            Err(DigestKeyError::Crypto(error)) => return Err(error),
            Err(error) => {
                tracing::warn!(%error, retry_ms = delay.as_millis() as u64, "the database is not reachable; waiting for it before serving");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}
