//! TTLock accounts: registration (checked by logging in once, then sealed at rest),
//! removal, and the one TTLock client per account that every operation shares.

use std::collections::HashMap;
use std::sync::Arc;

use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pagination;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::cluster::Cluster;
use crate::cluster::tokens::DbTokens;
use crate::crypto::Sealer;
use crate::db::accounts::{self, AccountSummary, Registered, SealedAccount};
use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::ttlock::client::DEFAULT_BASE_URL;
use crate::ttlock::client::Sharing;
use crate::ttlock::{AccountConfig, ClientConfig, Password, SharedClock, TtlockClient, md5_hex};

/// An account to register, as the caller gave it.
#[derive(Debug)]
pub struct NewAccount {
    pub name: String,
    pub base_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub username: String,
    pub password: SecretString,
    pub request_id: String,
}

/// The associated data binding a sealed value to its account and column.
fn context(account: Uuid, column: &str) -> String {
    format!("ttlock_accounts/{account}/{column}")
}

/// Built clients, one per account, whose token, pace and gateway turns are shared with
/// every replica through [`Cluster`].
#[derive(Clone)]
pub struct Accounts {
    sealer: Sealer,
    client_config: ClientConfig,
    clock: SharedClock,
    cluster: Cluster,
    clients: Arc<Mutex<HashMap<Uuid, TtlockClient>>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("sealer", &self.sealer)
            .finish_non_exhaustive()
    }
}

fn check(new: &NewAccount, violations: &mut FieldViolations) {
    if new.name.trim().is_empty() || new.name.len() > 200 {
        violations.add("name", "is required, at most 200 characters");
    }
    let base = if new.base_url.is_empty() {
        DEFAULT_BASE_URL
    } else {
        new.base_url.as_str()
    };
    if !(base.starts_with("https://") || base.starts_with("http://"))
        || base.len() > 300
        || base.contains(char::is_whitespace)
    {
        violations.add(
            "base_url",
            "must be an http(s) URL such as https://euapi.ttlock.com",
        );
    }
    if new.client_id.trim().is_empty() || new.client_id.len() > 128 {
        violations.add("client_id", "is required, at most 128 characters");
    }
    if new.client_secret.expose_secret().is_empty() || new.client_secret.expose_secret().len() > 256
    {
        violations.add("client_secret", "is required, at most 256 characters");
    }
    if new.username.trim().is_empty() || new.username.len() > 200 {
        violations.add("username", "is required, at most 200 characters");
    }
    if new.password.expose_secret().is_empty() || new.password.expose_secret().len() > 256 {
        violations.add("password", "is required, at most 256 characters");
    }
    pagination::request_id(&new.request_id, violations);
}

/// The account an earlier call with the same request id registered, if that call was
/// this very request. An account registered before fingerprints were kept is returned
/// whatever the request, as it was then.
fn replay(earlier: Registered, fingerprint: Option<&[u8]>) -> Result<AccountSummary> {
    match (earlier.request_fingerprint.as_deref(), fingerprint) {
        (Some(earlier), Some(now)) if earlier != now => Err(ApiError::AlreadyExists {
            reason: "REQUEST_ID_REUSED",
            message: "this request id was first used to register another account (name, \
                      address or credentials); nothing was stored"
                .to_owned(),
        }
        .into()),
        _ => Ok(earlier.account),
    }
}

impl Accounts {
    pub fn new(
        sealer: Sealer,
        client_config: ClientConfig,
        clock: SharedClock,
        cluster: Cluster,
    ) -> Self {
        Self {
            sealer,
            client_config,
            clock,
            cluster,
            clients: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The keys sealing this gateway's secrets, also keying its digests.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Logs in once with the credentials (so a typo fails now, not at the first unlock),
    /// then stores them sealed. A request id already used answers without asking TTLock:
    /// the account it registered, or, for another request, REQUEST_ID_REUSED.
    pub async fn register(
        &self,
        pool: &latchkey::db::DbPool,
        caller: &Caller,
        new: NewAccount,
    ) -> Result<AccountSummary> {
        let mut violations = FieldViolations::default();
        check(&new, &mut violations);
        violations.check()?;
        let base_url = if new.base_url.is_empty() {
            DEFAULT_BASE_URL.to_owned()
        } else {
            new.base_url.trim_end_matches('/').to_owned()
        };
        let fingerprint = (!new.request_id.is_empty()).then(|| {
            Fingerprint::of("REGISTER_ACCOUNT")
                .text("name", new.name.trim())
                .text("base_url", &base_url)
                .text("client_id", &new.client_id)
                .text("client_secret", new.client_secret.expose_secret())
                .text("username", &new.username)
                .text("password", new.password.expose_secret())
                .digest(&self.sealer)
        });
        if fingerprint.is_some() {
            let mut conn = pool.get().await?;
            let earlier =
                accounts::by_request_id(&mut conn, &caller.tenant_id, &new.request_id).await?;
            if let Some(earlier) = earlier {
                return replay(earlier, fingerprint.as_deref());
            }
        }
        let password_md5 = SecretString::from(md5_hex(new.password.expose_secret()));
        let config = AccountConfig::new(
            new.client_id.clone(),
            new.client_secret.clone(),
            new.username.clone(),
            Password::Md5(password_md5.clone()),
        )
        .with_base_url(base_url.clone());
        // Paced with the account's other traffic; the token is stored once registered.
        let client = self.build(config, None)?;
        client.authenticate().await.map_err(|error| {
            tracing::info!(code = ?error.code(), "TTLock login refused at registration");
            ApiError::failed_precondition(
                "TTLOCK_LOGIN_FAILED",
                "TTLock refused these credentials or could not be reached",
            )
        })?;
        let id = Uuid::now_v7();
        let seal = |value: &SecretString, column: &str| {
            self.sealer
                .seal(value.expose_secret(), &context(id, column))
                .map_err(ApiError::internal)
        };
        let sealed = SealedAccount {
            id,
            tenant_id: caller.tenant_id.clone(),
            name: new.name.trim().to_owned(),
            base_url,
            client_id: new.client_id,
            username: new.username,
            key_id: self.sealer.current_key_id().to_owned(),
            client_secret_enc: seal(&new.client_secret, "client_secret")?,
            password_md5_enc: seal(&password_md5, "password_md5")?,
            request_id: (!new.request_id.is_empty()).then_some(new.request_id),
            request_fingerprint: fingerprint.clone(),
        };
        let mut conn = pool.get().await?;
        let stored = accounts::insert(&mut conn, &sealed)
            .await
            .map_err(|e| match e {
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                ) => ApiError::AlreadyExists {
                    reason: "ACCOUNT_EXISTS",
                    message: "this TTLock user is already registered for the tenant".to_owned(),
                },
                other => other.into(),
            })?;
        if stored.account.id != id {
            // Another call with this request id registered first, meanwhile.
            return replay(stored, fingerprint.as_deref());
        }
        if let Some(token) = client.token().await {
            // Every replica starts from this token instead of logging in again; one
            // that cannot be stored is only a login more.
            if let Err(error) = self.tokens(pool, id).seed(&token).await {
                tracing::warn!(%error, "storing the registration's TTLock token failed");
            }
        }
        Ok(stored.account)
    }

    pub async fn remove(
        &self,
        pool: &latchkey::db::DbPool,
        caller: &Caller,
        id: &str,
    ) -> Result<()> {
        let account = Uuid::try_parse(id)
            .map_err(|_| FieldViolations::single("id", "must be an account id (UUID)"))?;
        let mut conn = pool.get().await?;
        if !accounts::delete(&mut conn, &caller.tenant_id, account).await? {
            return Err(ApiError::not_found("account", id).into());
        }
        self.clients.lock().await.remove(&account);
        Ok(())
    }

    fn tokens(&self, pool: &latchkey::db::DbPool, account: Uuid) -> DbTokens {
        DbTokens::new(pool.clone(), self.sealer.clone(), account)
    }

    /// A client sharing pace and turns with the other replicas, and its token too when
    /// `tokens` is given.
    fn build(&self, config: AccountConfig, tokens: Option<DbTokens>) -> Result<TtlockClient> {
        let sharing = Sharing {
            coordinator: self.cluster.coordinator(
                &config,
                self.client_config.requests_per_second,
                self.client_config.burst,
            ),
            tokens: tokens.map(|tokens| std::sync::Arc::new(tokens) as _),
        };
        TtlockClient::shared(
            config,
            self.client_config.clone(),
            self.clock.clone(),
            sharing,
        )
        .map_err(|e| ApiError::internal(format!("building the TTLock client: {e}")).into())
    }

    /// The client of one of the tenant's accounts, built from its sealed credentials on
    /// first use.
    pub async fn client(
        &self,
        pool: &latchkey::db::DbPool,
        tenant_id: &str,
        account: Uuid,
    ) -> Result<TtlockClient> {
        if let Some(client) = self.clients.lock().await.get(&account) {
            // The map holds clients of every tenant: check ownership on every use.
            let mut conn = pool.get().await?;
            if accounts::sealed(&mut conn, tenant_id, account)
                .await?
                .is_none()
            {
                return Err(ApiError::not_found("account", account.to_string()).into());
            }
            return Ok(client.clone());
        }
        let mut conn = pool.get().await?;
        let sealed = accounts::sealed(&mut conn, tenant_id, account)
            .await?
            .ok_or_else(|| ApiError::not_found("account", account.to_string()))?;
        drop(conn);
        let open = |value: &[u8], column: &str| {
            self.sealer
                .open(&sealed.key_id, value, &context(account, column))
                .map_err(ApiError::internal)
        };
        let config = AccountConfig::new(
            sealed.client_id.clone(),
            open(&sealed.client_secret_enc, "client_secret")?,
            sealed.username.clone(),
            Password::Md5(open(&sealed.password_md5_enc, "password_md5")?),
        )
        .with_base_url(sealed.base_url.clone());
        let client = self.build(config, Some(self.tokens(pool, account)))?;
        let mut clients = self.clients.lock().await;
        Ok(clients.entry(account).or_insert(client).clone())
    }
}
