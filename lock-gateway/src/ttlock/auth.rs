//! Account credentials and the OAuth token: login with the MD5 of the password, refresh
//! ahead of expiry and when TTLock refuses the token, log in again when the refresh
//! token is refused.

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

#[derive(Debug, Default)]
pub(crate) struct TokenState {
    pub current: Option<TokenSet>,
    /// Bumped on every new token so concurrent callers renew a refused token once.
    pub generation: u64,
}

impl Inner {
    /// A token valid for at least the refresh margin, renewing it first if needed.
    pub(crate) async fn access_token(&self) -> Result<(SecretString, u64)> {
        let mut state = self.tokens.lock().await;
        let margin = i64::try_from(self.config.refresh_margin.as_millis()).unwrap_or(i64::MAX);
        let now = self.clock.now_ms();
        if let Some(current) = &state.current
            && now < current.expires_at_ms.saturating_sub(margin)
        {
            return Ok((current.access_token.clone(), state.generation));
        }
        let refresh = state.current.as_ref().map(|t| t.refresh_token.clone());
        let fresh = self
            .refresh_or_login(refresh.as_ref(), state.current.as_ref())
            .await?;
        let token = fresh.access_token.clone();
        state.current = Some(fresh);
        state.generation += 1;
        Ok((token, state.generation))
    }

    /// Renews a token TTLock refused, unless another caller already did.
    pub(crate) async fn renew(&self, refused_generation: u64) -> Result<()> {
        let mut state = self.tokens.lock().await;
        if state.generation != refused_generation {
            return Ok(());
        }
        let refresh = state.current.as_ref().map(|t| t.refresh_token.clone());
        let fresh = self
            .refresh_or_login(refresh.as_ref(), state.current.as_ref())
            .await?;
        state.current = Some(fresh);
        state.generation += 1;
        Ok(())
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
