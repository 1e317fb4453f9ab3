//! One TTLock token per account, kept sealed in its `ttlock_accounts` row. Renewals run
//! under the row's lock, so when replicas find the token expired or refused at once,
//! one renews and the others take its result; none presents a refresh token TTLock has
//! already replaced.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use latchkey::db::DbPool;
use uuid::Uuid;

use crate::crypto::Sealer;
use crate::db::accounts::{self, SealedToken};
use crate::ttlock::TokenSet;
use crate::ttlock::auth::{Renewal, StoredToken, TokenStore};
use crate::ttlock::error::{Error, Result};

/// The token store of one account.
#[derive(Clone)]
pub struct DbTokens {
    pool: DbPool,
    sealer: Sealer,
    account: Uuid,
}

fn coordination(error: impl std::fmt::Display) -> Error {
    Error::Coordination(format!("shared token: {error}"))
}

impl DbTokens {
    pub fn new(pool: DbPool, sealer: Sealer, account: Uuid) -> Self {
        Self {
            pool,
            sealer,
            account,
        }
    }

    fn context(&self, column: &str) -> String {
        format!("ttlock_accounts/{}/{column}", self.account)
    }

    fn seal(&self, token: &TokenSet) -> Result<SealedToken> {
        use secrecy::ExposeSecret as _;
        let seal = |value: &secrecy::SecretString, column: &str| {
            self.sealer
                .seal(value.expose_secret(), &self.context(column))
                .map_err(coordination)
        };
        Ok(SealedToken {
            token_version: 0,
            token_key_id: Some(self.sealer.current_key_id().to_owned()),
            access_token_enc: Some(seal(&token.access_token, "access_token")?),
            refresh_token_enc: Some(seal(&token.refresh_token, "refresh_token")?),
            ttlock_uid: token.uid,
            token_expires_at: DateTime::<Utc>::from_timestamp_millis(token.expires_at_ms),
        })
    }

    fn open(&self, sealed: SealedToken) -> Result<Option<StoredToken>> {
        let (Some(key_id), Some(access), Some(refresh), Some(expires)) = (
            sealed.token_key_id,
            sealed.access_token_enc,
            sealed.refresh_token_enc,
            sealed.token_expires_at,
        ) else {
            return Ok(None);
        };
        let open = |value: &[u8], column: &str| {
            self.sealer
                .open(&key_id, value, &self.context(column))
                .map_err(coordination)
        };
        Ok(Some(StoredToken {
            token: TokenSet {
                access_token: open(&access, "access_token")?,
                refresh_token: open(&refresh, "refresh_token")?,
                uid: sealed.ttlock_uid,
                expires_at_ms: expires.timestamp_millis(),
            },
            version: sealed.token_version,
        }))
    }

    /// Stores the token a registration logged in with, unless the account has one.
    pub async fn seed(&self, token: &TokenSet) -> Result<()> {
        let sealed = self.seal(token)?;
        let mut conn = self.pool.get().await.map_err(coordination)?;
        accounts::store_token(&mut conn, self.account, &sealed, true)
            .await
            .map_err(coordination)?;
        Ok(())
    }
}

impl TokenStore for DbTokens {
    fn load(&self) -> BoxFuture<'_, Result<Option<StoredToken>>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(coordination)?;
            let sealed = accounts::token(&mut conn, self.account, false)
                .await
                .map_err(coordination)?;
            drop(conn);
            match sealed {
                Some(sealed) => self.open(sealed),
                None => Err(Error::Config("the account was removed".to_owned())),
            }
        })
    }

    fn renew<'a>(
        &'a self,
        seen: Option<i64>,
        renew: Renewal<'a>,
    ) -> BoxFuture<'a, Result<StoredToken>> {
        use diesel_async::AsyncConnection as _;
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(coordination)?;
            // The row stays locked while TTLock is asked: other replicas wait here and
            // then take the new token instead of renewing again.
            conn.transaction(async |conn| {
                let sealed = accounts::token(conn, self.account, true)
                    .await
                    .map_err(coordination)?
                    .ok_or_else(|| Error::Config("the account was removed".to_owned()))?;
                let version = sealed.token_version;
                let stored = self.open(sealed)?;
                if let Some(stored) = stored.as_ref().filter(|_| seen != Some(version)) {
                    tracing::info!("another replica renewed the TTLock token; taking it");
                    return Ok(stored.clone());
                }
                let fresh = renew(stored.map(|stored| stored.token)).await?;
                let version = accounts::store_token(conn, self.account, &self.seal(&fresh)?, false)
                    .await
                    .map_err(coordination)?
                    .ok_or_else(|| Error::Config("the account was removed".to_owned()))?;
                Ok(StoredToken {
                    token: fresh,
                    version,
                })
            })
            .await
        })
    }
}

impl std::fmt::Debug for DbTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTokens")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}
