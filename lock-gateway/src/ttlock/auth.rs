//! Account credentials and the OAuth token: login with the MD5 of the password, refresh
//! ahead of expiry and when TTLock refuses the token, log in again when the refresh
//! token is refused.

use std::fmt;

use futures_util::future::BoxFuture;
use md5::{Digest as _, Md5};
use secrecy::{ExposeSecret as _, SecretString};

use super::client::{Inner, Request};
use super::error::{ErrorCode, Result};
use super::types::{RawToken, TokenGrant};

/// The TTLock app account's password.
#[derive(Debug, Clone)]
pub enum Password {
    Plain(SecretString),
    /// Already the 32-character lowercase hex MD5 TTLock expects.
    Md5(SecretString),
}

impl Password {
    /// Lowercase hex MD5, as `/oauth2/token` wants it.
    pub fn md5_hex(&self) -> SecretString {
        match self {
            Self::Plain(plain) => SecretString::from(md5_hex(plain.expose_secret())),
            Self::Md5(hash) => SecretString::from(hash.expose_secret().to_ascii_lowercase()),
        }
    }
}

/// Lowercase hex MD5 of `text`.
pub fn md5_hex(text: &str) -> String {
    let digest = Md5::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The account's token, with its absolute expiry so it can be persisted and restored.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub uid: Option<i64>,
    /// Epoch milliseconds by the client's clock.
    pub expires_at_ms: i64,
}

/// A token as a [`TokenStore`] keeps it: `version` changes with every renewal.
#[derive(Debug, Clone)]
pub struct StoredToken {
    pub token: TokenSet,
    pub version: i64,
}

/// Renews a token, given the one stored (if any).
pub type Renewal<'a> =
    Box<dyn FnOnce(Option<TokenSet>) -> BoxFuture<'a, Result<TokenSet>> + Send + 'a>;

/// Where the replicas keep an account's token, so that one renewal serves them all:
/// TTLock ends an account's older tokens when its refresh token is used, so replicas
/// renewing on their own would refuse each other's tokens in turn.
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The stored token, if any.
    fn load(&self) -> BoxFuture<'_, Result<Option<StoredToken>>>;
    /// Runs `renew` while no other replica can and stores what it returns; unless the
    /// stored version is no longer `seen` (another replica renewed meanwhile): then the
    /// stored token is returned and `renew` does not run.
    fn renew<'a>(
        &'a self,
        seen: Option<i64>,
        renew: Renewal<'a>,
    ) -> BoxFuture<'a, Result<StoredToken>>;
}

#[derive(Debug, Default)]
pub(crate) struct TokenState {
    pub current: Option<TokenSet>,
    /// Bumped on every new token so concurrent callers renew a refused token once.
    pub generation: u64,
    /// The store's version of `current`, when a store keeps it.
    pub stored: Option<i64>,
}

impl TokenState {
    fn adopt(&mut self, token: TokenSet, stored: Option<i64>) -> SecretString {
        let access = token.access_token.clone();
        self.current = Some(token);
        self.stored = stored;
        self.generation += 1;
        access
    }
}

impl Inner {
    /// A token valid for at least the refresh margin, renewing it first if needed.
    pub(crate) async fn access_token(&self) -> Result<(SecretString, u64)> {
        let mut state = self.tokens.lock().await;
        if let Some(current) = &state.current
            && self.fresh(current)
        {
            return Ok((current.access_token.clone(), state.generation));
        }
        let Some(store) = &self.token_store else {
            let fresh = self.renewed(state.current.clone()).await?;
            let token = state.adopt(fresh, None);
            return Ok((token, state.generation));
        };
        // Another replica may have renewed it already.
        let stored = store.load().await?;
        if let Some(stored) = &stored
            && self.fresh(&stored.token)
        {
            let token = state.adopt(stored.token.clone(), Some(stored.version));
            return Ok((token, state.generation));
        }
        let seen = stored.map(|stored| stored.version);
        let renewed = store
            .renew(seen, Box::new(|previous| Box::pin(self.renewed(previous))))
            .await?;
        let token = state.adopt(renewed.token, Some(renewed.version));
        Ok((token, state.generation))
    }

    /// Renews a token TTLock refused, unless another caller (or, with a store, another
    /// replica) already did.
    pub(crate) async fn renew(&self, refused_generation: u64) -> Result<()> {
        let mut state = self.tokens.lock().await;
        if state.generation != refused_generation {
            return Ok(());
        }
        match &self.token_store {
            Some(store) => {
                let renewed = store
                    .renew(
                        state.stored,
                        Box::new(|previous| Box::pin(self.renewed(previous))),
                    )
                    .await?;
                state.adopt(renewed.token, Some(renewed.version));
            }
            None => {
                let fresh = self.renewed(state.current.clone()).await?;
                state.adopt(fresh, None);
            }
        }
        Ok(())
    }

    /// Whether `token` stays valid beyond the refresh margin.
    fn fresh(&self, token: &TokenSet) -> bool {
        let margin = i64::try_from(self.config.refresh_margin.as_millis()).unwrap_or(i64::MAX);
        self.clock.now_ms() < token.expires_at_ms.saturating_sub(margin)
    }

    /// A new token: refreshed from `previous`, or by logging in.
    async fn renewed(&self, previous: Option<TokenSet>) -> Result<TokenSet> {
        let refresh = previous.as_ref().map(|t| t.refresh_token.clone());
        self.refresh_or_login(refresh.as_ref(), previous.as_ref())
            .await
    }

    async fn refresh_or_login(
        &self,
        refresh_token: Option<&SecretString>,
        previous: Option<&TokenSet>,
    ) -> Result<TokenSet> {
        if let Some(refresh_token) = refresh_token {
            match self.refresh(refresh_token).await {
                Ok(grant) => {
                    // Refresh answers carry no uid; keep the one from login.
                    let uid = grant.uid.or(previous.and_then(|p| p.uid));
                    return Ok(self.token_set(grant, uid));
                }
                Err(error) if error.code() == Some(ErrorCode::InvalidRefreshToken) => {
                    tracing::info!("TTLock refused the refresh token; logging in again");
                }
                Err(error) => return Err(error),
            }
        }
        let grant = self.login().await?;
        let uid = grant.uid;
        Ok(self.token_set(grant, uid))
    }

    fn token_set(&self, grant: TokenGrant, uid: Option<i64>) -> TokenSet {
        TokenSet {
            expires_at_ms: self
                .clock
                .now_ms()
                .saturating_add(grant.expires_in.saturating_mul(1000)),
            access_token: grant.access_token,
            refresh_token: grant.refresh_token,
            uid,
        }
    }

    async fn login(&self) -> Result<TokenGrant> {
        let params = vec![
            ("clientId", self.account.client_id.clone()),
            (
                "clientSecret",
                self.account.client_secret.expose_secret().to_owned(),
            ),
            ("username", self.account.username.clone()),
            (
                "password",
                self.account.password.md5_hex().expose_secret().to_owned(),
            ),
        ];
        self.token_request(params).await
    }

    async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenGrant> {
        let params = vec![
            ("clientId", self.account.client_id.clone()),
            (
                "clientSecret",
                self.account.client_secret.expose_secret().to_owned(),
            ),
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.expose_secret().to_owned()),
        ];
        self.token_request(params).await
    }

    async fn token_request(&self, params: Vec<(&'static str, String)>) -> Result<TokenGrant> {
        let request = Request::post("/oauth2/token", params);
        let value = self.send_with_retries(&request).await?;
        // serde's messages may quote values; report only where decoding failed.
        let raw: RawToken = serde_json::from_value(value).map_err(|e| {
            super::error::Error::Decode(format!("token response: {:?}", e.classify()))
        })?;
        Ok(raw.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_the_documented_examples() {
        assert_eq!(md5_hex("123456"), "e10adc3949ba59abbe56e057f20f883e");
        assert_eq!(md5_hex("hunter2"), "2ab96390c7dbe3439de74d0c9b0b1767");
        let pre = Password::Md5(SecretString::from("E10ADC3949BA59ABBE56E057F20F883E"));
        assert_eq!(
            pre.md5_hex().expose_secret(),
            "e10adc3949ba59abbe56e057f20f883e"
        );
    }
}
