//! The TTLock client: one per account. Every `/v3` call carries `clientId`,
//! `accessToken` and `date`; reads are GET with a query, writes POST a form. Errors come
//! back as HTTP 200 with a non-zero `errcode`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret as _, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument as _;

use super::auth::{Password, TokenSet, TokenState, TokenStore};
use super::clock::SharedClock;
use super::discipline::{self, Coordinator, Local, RetryPolicy, SerialKey};
use super::error::{Effect, Error, ErrorClass, Result};
use super::types::{
    AddedPasscode, Envelope, Gateway, GatewayLock, List, LockDetail, LockGateway, LockRecord,
    LockSummary, OpenState, Page, PasscodeEntry, PasscodeText,
};

/// TTLock's non-China API host.
pub const DEFAULT_BASE_URL: &str = "https://euapi.ttlock.com";

/// One TTLock app account under one developer application.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// API host without a trailing path, e.g. [`DEFAULT_BASE_URL`].
    pub base_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The TTLock app login (not the developer account).
    pub username: String,
    pub password: Password,
}

impl AccountConfig {
    /// An account on [`DEFAULT_BASE_URL`].
    pub fn new(
        client_id: impl Into<String>,
        client_secret: SecretString,
        username: impl Into<String>,
        password: Password,
    ) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            client_id: client_id.into(),
            client_secret,
            username: username.into(),
            password,
        }
    }

    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }
}

/// How the client paces and retries its traffic.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Average requests per second for the account; 0 disables the limit.
    pub requests_per_second: f64,
    /// Requests that may go at once after a quiet period.
    pub burst: u32,
    /// Timeout of calls answered by the cloud alone.
    pub request_timeout: Duration,
    /// Timeout of calls relayed to a lock through a gateway (seconds observed; ≥ 30 s).
    pub remote_timeout: Duration,
    /// Renew the token this long before it expires.
    pub refresh_margin: Duration,
    pub retry: RetryPolicy,
    /// Items per page when listing (TTLock's maximum is 200 for most lists).
    pub page_size: u32,
    /// How long a lock's gateway is remembered for serialising commands (TTLock caches
    /// the association for 30 minutes).
    pub gateway_cache_ttl: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 5.0,
            burst: 5,
            request_timeout: Duration::from_secs(15),
            remote_timeout: Duration::from_secs(40),
            refresh_margin: Duration::from_secs(7 * 24 * 3600),
            retry: RetryPolicy::default(),
            page_size: 100,
            gateway_cache_ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// Validity of a custom passcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Permanent,
    /// Epoch milliseconds, judged by the lock's clock.
    Period {
        start_ms: i64,
        end_ms: i64,
    },
}

/// What to change on a passcode; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct PasscodeChange {
    pub new_code: Option<PasscodeText>,
    pub name: Option<String>,
    /// New `(start, end)` in epoch milliseconds.
    pub period: Option<(i64, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

/// One TTLock call, before authentication parameters are added.
pub(crate) struct Request {
    method: Method,
    path: &'static str,
    params: Vec<(&'static str, String)>,
    /// Relayed to the lock through a gateway: serialised and given the long timeout.
    remote_lock: Option<i64>,
    effect: Effect,
    lock_id: Option<i64>,
}

impl Request {
    pub(crate) fn get(path: &'static str, params: Vec<(&'static str, String)>) -> Self {
        Self {
            method: Method::Get,
            path,
            params,
            remote_lock: None,
            effect: Effect::Idempotent,
            lock_id: None,
        }
    }

    pub(crate) fn post(path: &'static str, params: Vec<(&'static str, String)>) -> Self {
        Self {
            method: Method::Post,
            ..Self::get(path, params)
        }
    }

    fn lock(mut self, lock_id: i64) -> Self {
        self.lock_id = Some(lock_id);
        self
    }

    fn remote(mut self, lock_id: i64) -> Self {
        self.remote_lock = Some(lock_id);
        self.lock(lock_id)
    }

    fn actuating(mut self) -> Self {
        self.effect = Effect::Actuating;
        self
    }
}

/// Where a client's pace, gateway turns and token are kept when other replicas share
/// them; [`TtlockClient::new`] keeps them in the process.
#[derive(Debug, Clone)]
pub struct Sharing {
    pub coordinator: Arc<dyn Coordinator>,
    pub tokens: Option<Arc<dyn TokenStore>>,
}

/// The longest pause between retries of a command refused because its gateway is busy:
/// the gateway frees within seconds, and the deadline bounds the total.
const BUSY_PAUSE_MAX: Duration = Duration::from_secs(2);

/// The least time before its deadline a relayed command is sent with after waiting (for
/// its gateway, or between retries): sent later, it would likely be cut off by its own
/// timeout and end ambiguous, where not sending it is a clear refusal.
const LEAST_TIME_TO_SEND: Duration = Duration::from_secs(1);

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) account: AccountConfig,
    pub(crate) config: ClientConfig,
    pub(crate) clock: SharedClock,
    pub(crate) tokens: tokio::sync::Mutex<TokenState>,
    pub(crate) token_store: Option<Arc<dyn TokenStore>>,
    coordinator: Arc<dyn Coordinator>,
    /// lock id → (serialisation key, expiry by the client clock).
    serial_keys: StdMutex<HashMap<i64, (SerialKey, i64)>>,
}

/// A TTLock cloud client for one account. Cheap to clone; clones share the token, the
/// rate limit and the per-gateway serialisation.
#[derive(Clone)]
pub struct TtlockClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TtlockClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlockClient")
            .field("base_url", &self.inner.account.base_url)
            .field("client_id", &self.inner.account.client_id)
            .field("username", &self.inner.account.username)
            .finish_non_exhaustive()
    }
}

impl TtlockClient {
    /// A client whose pace, turns and token live in this process.
    pub fn new(account: AccountConfig, config: ClientConfig, clock: SharedClock) -> Result<Self> {
        let sharing = Sharing {
            coordinator: Arc::new(Local::new(config.requests_per_second, config.burst)),
            tokens: None,
        };
        Self::shared(account, config, clock, sharing)
    }

    /// A client whose pace, turns and token are kept by `sharing`.
    pub fn shared(
        account: AccountConfig,
        config: ClientConfig,
        clock: SharedClock,
        sharing: Sharing,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Config(e.without_url().to_string()))?;
        let mut account = account;
        account.base_url = account.base_url.trim_end_matches('/').to_owned();
        if !(account.base_url.starts_with("https://") || account.base_url.starts_with("http://")) {
            return Err(Error::Config(format!(
                "base URL {:?} is not http(s)",
                account.base_url
            )));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                account,
                config,
                clock,
                tokens: tokio::sync::Mutex::new(TokenState::default()),
                token_store: sharing.tokens,
                coordinator: sharing.coordinator,
                serial_keys: StdMutex::new(HashMap::new()),
            }),
        })
    }

    /// Obtains a token now if there is none (or it is near expiry); calls do this on
    /// their own, this lets a caller check credentials up front.
    pub async fn authenticate(&self) -> Result<()> {
        self.inner.access_token().await.map(|_| ())
    }

    /// The current token, to persist it (encrypted).
    pub async fn token(&self) -> Option<TokenSet> {
        self.inner.tokens.lock().await.current.clone()
    }

    /// Starts from a persisted token instead of logging in.
    pub async fn restore_token(&self, token: TokenSet) {
        let mut state = self.inner.tokens.lock().await;
        state.current = Some(token);
        state.generation += 1;
    }

    /// Every lock the account administers (all pages).
    pub async fn locks(&self) -> Result<Vec<LockSummary>> {
        self.inner
            .all_pages("/v3/lock/list", Vec::new(), None)
            .await
    }

    pub async fn lock_detail(&self, lock_id: i64) -> Result<LockDetail> {
        let request = Request::get("/v3/lock/detail", vec![("lockId", lock_id.to_string())]);
        self.inner.call(request.lock(lock_id)).await
    }

    /// Remote unlock through the lock's gateway. Never retried after an ambiguous
    /// failure: that comes back as [`Error::Unconfirmed`].
    pub async fn unlock(&self, lock_id: i64) -> Result<()> {
        let request = Request::post("/v3/lock/unlock", vec![("lockId", lock_id.to_string())]);
        self.inner
            .call::<Envelope>(request.remote(lock_id).actuating())
            .await
            .map(|_| ())
    }

    /// Remote lock; see [`TtlockClient::unlock`].
    pub async fn lock(&self, lock_id: i64) -> Result<()> {
        let request = Request::post("/v3/lock/lock", vec![("lockId", lock_id.to_string())]);
        self.inner
            .call::<Envelope>(request.remote(lock_id).actuating())
            .await
            .map(|_| ())
    }

    /// Asks the lock for its bolt state (wakes the lock; don't poll).
    pub async fn query_open_state(&self, lock_id: i64) -> Result<OpenState> {
        let request = Request::get(
            "/v3/lock/queryOpenState",
            vec![("lockId", lock_id.to_string())],
        );
        self.inner.call(request.remote(lock_id)).await
    }

    /// Asks the lock for its battery percentage (wakes the lock; don't poll).
    pub async fn query_battery(&self, lock_id: i64) -> Result<i64> {
        let request = Request::get(
            "/v3/lock/queryElectricQuantity",
            vec![("lockId", lock_id.to_string())],
        );
        let answer: super::types::ElectricQuantity =
            self.inner.call(request.remote(lock_id)).await?;
        Ok(answer.electric_quantity)
    }

    /// Every gateway of the account (all pages).
    pub async fn gateways(&self) -> Result<Vec<Gateway>> {
        self.inner
            .all_pages("/v3/gateway/list", Vec::new(), None)
            .await
    }

    /// The locks a gateway reaches.
    pub async fn gateway_locks(&self, gateway_id: i64) -> Result<Vec<GatewayLock>> {
        let request = Request::get(
            "/v3/gateway/listLock",
            vec![("gatewayId", gateway_id.to_string())],
        );
        let list: List<GatewayLock> = self.inner.call(request).await?;
        Ok(list.list)
    }

    /// The gateways that reach a lock, with their signal strength.
    pub async fn lock_gateways(&self, lock_id: i64) -> Result<Vec<LockGateway>> {
        self.inner.lock_gateways(lock_id).await
    }

    /// Writes a custom passcode to the lock through its gateway; returns its id.
    pub async fn add_passcode(
        &self,
        lock_id: i64,
        code: &PasscodeText,
        name: Option<&str>,
        validity: Validity,
    ) -> Result<i64> {
        let mut params = vec![
            ("lockId", lock_id.to_string()),
            ("keyboardPwd", code.expose().to_owned()),
            ("addType", "2".to_owned()),
        ];
        if let Some(name) = name {
            params.push(("keyboardPwdName", name.to_owned()));
        }
        match validity {
            Validity::Permanent => params.push(("keyboardPwdType", "2".to_owned())),
            Validity::Period { start_ms, end_ms } => {
                params.push(("keyboardPwdType", "3".to_owned()));
                params.push(("startDate", start_ms.to_string()));
                params.push(("endDate", end_ms.to_string()));
            }
        }
        let request = Request::post("/v3/keyboardPwd/add", params);
        let added: AddedPasscode = self.inner.call(request.remote(lock_id).actuating()).await?;
        Ok(added.keyboard_pwd_id)
    }

    /// Changes a passcode on the lock through its gateway.
    pub async fn change_passcode(
        &self,
        lock_id: i64,
        passcode_id: i64,
        change: PasscodeChange,
    ) -> Result<()> {
        let mut params = vec![
            ("lockId", lock_id.to_string()),
            ("keyboardPwdId", passcode_id.to_string()),
            ("changeType", "2".to_owned()),
        ];
        if let Some(code) = &change.new_code {
            params.push(("newKeyboardPwd", code.expose().to_owned()));
        }
        if let Some(name) = change.name {
            params.push(("keyboardPwdName", name));
        }
        if let Some((start, end)) = change.period {
            params.push(("startDate", start.to_string()));
            params.push(("endDate", end.to_string()));
        }
        let request = Request::post("/v3/keyboardPwd/change", params);
        self.inner
            .call::<Envelope>(request.remote(lock_id).actuating())
            .await
            .map(|_| ())
    }

    /// Deletes a passcode from the lock through its gateway. TTLock answers success for
    /// unknown ids too.
    pub async fn delete_passcode(&self, lock_id: i64, passcode_id: i64) -> Result<()> {
        let params = vec![
            ("lockId", lock_id.to_string()),
            ("keyboardPwdId", passcode_id.to_string()),
            ("deleteType", "2".to_owned()),
        ];
        let request = Request::post("/v3/keyboardPwd/delete", params);
        self.inner
            .call::<Envelope>(request.remote(lock_id).actuating())
            .await
            .map(|_| ())
    }

    /// Every passcode the cloud knows for a lock (all pages, newest first).
    pub async fn passcodes(&self, lock_id: i64) -> Result<Vec<PasscodeEntry>> {
        let params = vec![("lockId", lock_id.to_string()), ("orderBy", "1".to_owned())];
        self.inner
            .all_pages("/v3/lock/listKeyboardPwd", params, Some(lock_id))
            .await
    }

    /// Lock records from `since_ms` (epoch ms) on, all pages. TTLock filters by the
    /// lock's own clock, which drifts and counts whole seconds: incremental syncs should
    /// overlap their windows and de-duplicate. The end lies a day ahead, because a lock
    /// whose clock runs fast stamps its newest records after the cloud's "now".
    pub async fn records_since(&self, lock_id: i64, since_ms: i64) -> Result<Vec<LockRecord>> {
        const AHEAD_MS: i64 = 24 * 60 * 60 * 1000;
        let params = vec![
            ("lockId", lock_id.to_string()),
            ("startDate", since_ms.to_string()),
            (
                "endDate",
                (self.inner.clock.now_ms() + AHEAD_MS).to_string(),
            ),
        ];
        self.inner
            .all_pages("/v3/lockRecord/list", params, Some(lock_id))
            .await
    }
}

impl Inner {
    async fn lock_gateways(&self, lock_id: i64) -> Result<Vec<LockGateway>> {
        let request = Request::get(
            "/v3/gateway/listByLock",
            vec![("lockId", lock_id.to_string())],
        );
        // Boxed: `call` resolves remote commands' gateways through here.
        let list: List<LockGateway> = Box::pin(self.call(request.lock(lock_id))).await?;
        Ok(list.list)
    }

    /// The gateway TTLock will relay a command to `lock_id` through: the one with the
    /// best signal, as the cloud chooses. Locks without a gateway serialise on themselves.
    async fn serial_key(&self, lock_id: i64) -> Result<SerialKey> {
        let now = self.clock.now_ms();
        if let Some((key, expires)) = self
            .serial_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&lock_id)
            && *expires > now
        {
            return Ok(*key);
        }
        let gateways = self.lock_gateways(lock_id).await?;
        let key = gateways
            .iter()
            .max_by_key(|g| g.rssi.unwrap_or(i32::MIN))
            .map_or(SerialKey::Lock(lock_id), |g| {
                SerialKey::Gateway(g.gateway_id)
            });
        let ttl = i64::try_from(self.config.gateway_cache_ttl.as_millis()).unwrap_or(i64::MAX);
        self.serial_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(lock_id, (key, now.saturating_add(ttl)));
        Ok(key)
    }

    async fn all_pages<T: DeserializeOwned>(
        &self,
        path: &'static str,
        params: Vec<(&'static str, String)>,
        lock_id: Option<i64>,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut page_no: i64 = 1;
        loop {
            let mut page_params = params.clone();
            page_params.push(("pageNo", page_no.to_string()));
            page_params.push(("pageSize", self.config.page_size.to_string()));
            let mut request = Request::get(path, page_params);
            request.lock_id = lock_id;
            let page: Page<T> = self.call(request).await?;
            let empty = page.list.is_empty();
            items.extend(page.list);
            // `pages` is the real page count; an empty page means we ran past the end.
            if empty || page.pages.is_none_or(|pages| page_no >= pages) {
                return Ok(items);
            }
            page_no += 1;
        }
    }

    /// An authenticated `/v3` call: serialised per gateway when relayed, retried with
    /// backoff while the failure is retryable (a busy gateway until the command's
    /// deadline), re-authenticated once when the token is refused.
    pub(crate) async fn call<T: DeserializeOwned>(&self, request: Request) -> Result<T> {
        let deadline = request.remote_lock.map(|_| self.command_deadline());
        // A caller who allows less than that gets one attempt, without waiting.
        let turn_deadline = deadline.map(|deadline| {
            deadline
                .checked_sub(LEAST_TIME_TO_SEND)
                .filter(|latest| *latest > tokio::time::Instant::now())
                .unwrap_or(deadline)
        });
        let serial_key = match request.remote_lock {
            Some(lock_id) => Some(self.serial_key(lock_id).await?),
            None => None,
        };
        let mut attempt = 0;
        let mut failures = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            let (token, generation) = self.access_token().await?;
            let result = {
                let _turn = match (serial_key, turn_deadline) {
                    (Some(key), Some(latest)) => Some(self.coordinator.enter(key, latest).await?),
                    _ => None,
                };
                self.send_once(&request, Some(&token), attempt, deadline)
                    .await
            };
            let error = match result.and_then(|value| decode::<T>(value, request.path)) {
                Ok(value) => return Ok(value),
                Err(error) => error.for_effect(request.effect),
            };
            let pause = match error.class() {
                ErrorClass::ReAuthenticate if !renewed => {
                    renewed = true;
                    tracing::info!(path = request.path, "TTLock refused the token; renewing");
                    self.renew(generation).await?;
                    continue;
                }
                // Until the deadline when there is one: the gateway frees within seconds.
                ErrorClass::Busy if deadline.is_some() => {
                    self.config.retry.delay(attempt).min(BUSY_PAUSE_MAX)
                }
                ErrorClass::Busy | ErrorClass::Retryable
                    if failures + 1 < self.config.retry.max_attempts =>
                {
                    failures += 1;
                    self.config.retry.delay(failures)
                }
                _ => return Err(error),
            };
            // A retry that could not be answered before the deadline is not sent.
            if let Some(deadline) = deadline
                && tokio::time::Instant::now() + pause + LEAST_TIME_TO_SEND >= deadline
            {
                return Err(error);
            }
            tracing::warn!(
                path = request.path,
                attempt,
                delay_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "retrying TTLock call"
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// When a relayed command must be answered: the deadline the caller set for this
    /// task, or the remote timeout from now.
    fn command_deadline(&self) -> tokio::time::Instant {
        let own = tokio::time::Instant::now() + self.config.remote_timeout;
        discipline::current_deadline().map_or(own, |deadline| deadline.min(own))
    }

    /// An unauthenticated call (the token endpoint), retried while retryable.
    pub(crate) async fn send_with_retries(&self, request: &Request) -> Result<Value> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_once(request, None, attempt, None).await {
                Ok(value) => return Ok(value),
                Err(error)
                    if error.class() == ErrorClass::Retryable
                        && attempt < self.config.retry.max_attempts =>
                {
                    tokio::time::sleep(self.config.retry.delay(attempt)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One HTTP exchange inside a `ttlock.request` span. Parameters are never recorded:
    /// they hold tokens, secrets and passcodes.
    async fn send_once(
        &self,
        request: &Request,
        token: Option<&SecretString>,
        attempt: u32,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Value> {
        self.coordinator.pace().await?;
        let span = tracing::info_span!(
            "ttlock.request",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = request.method.as_str(),
            url.path = request.path,
            ttlock.lock_id = request.lock_id,
            ttlock.attempt = attempt,
            http.response.status_code = tracing::field::Empty,
            ttlock.errcode = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        async {
            let started = Instant::now();
            let result = self.exchange(request, token, deadline).await;
            let span = tracing::Span::current();
            span.record(
                "latency_ms",
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            );
            match &result {
                Ok(_) => {
                    span.record("ttlock.errcode", 0);
                }
                Err(error) => {
                    if let Some(code) = error.code() {
                        span.record("ttlock.errcode", code.code());
                    }
                    span.record("otel.status_code", "ERROR");
                    tracing::debug!(error = %error, "TTLock call failed");
                }
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn exchange(
        &self,
        request: &Request,
        token: Option<&SecretString>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Value> {
        let mut params: Vec<(&str, String)> = Vec::with_capacity(request.params.len() + 3);
        if let Some(token) = token {
            params.push(("clientId", self.account.client_id.clone()));
            params.push(("accessToken", token.expose_secret().to_owned()));
            params.push(("date", self.clock.now_ms().to_string()));
        }
        params.extend(request.params.iter().map(|(k, v)| (*k, v.clone())));
        let url = format!("{}{}", self.account.base_url, request.path);
        let timeout = match deadline {
            // An answer after the deadline reaches nobody.
            Some(deadline) => deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(self.config.remote_timeout),
            None if request.remote_lock.is_some() => self.config.remote_timeout,
            None => self.config.request_timeout,
        };
        if timeout.is_zero() {
            return Err(Error::NoTurn);
        }
        let builder = match request.method {
            Method::Get => self.http.get(url).query(&params),
            Method::Post => self.http.post(url).form(&params),
        };
        let response = builder
            .timeout(timeout)
            .send()
            .await
            .map_err(Error::from_reqwest)?;
        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        if status != reqwest::StatusCode::OK {
            return Err(Error::Http {
                status: status.as_u16(),
            });
        }
        let body = response.bytes().await.map_err(Error::from_reqwest)?;
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            Error::Decode(format!("{}: not JSON ({:?})", request.path, e.classify()))
        })?;
        check_errcode(value)
    }
}

/// Splits TTLock's answers: an `errcode` other than 0 is an error whatever the HTTP
/// status said; no `errcode`, or 0, is success.
pub(crate) fn check_errcode(value: Value) -> Result<Value> {
    let errcode = value.get("errcode").and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    });
    match errcode {
        None | Some(0) => Ok(value),
        Some(code) => {
            let errmsg = value
                .get("errmsg")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Err(Error::api(i32::try_from(code).unwrap_or(i32::MIN), errmsg))
        }
    }
}

fn decode<T: DeserializeOwned>(value: Value, path: &str) -> Result<T> {
    serde_json::from_value(value).map_err(|e| {
        // serde quotes offending values, which can be passcodes; a missing field only
        // names the field.
        let message = e.to_string();
        if message.starts_with("missing field") {
            Error::Decode(format!("{path}: {message}"))
        } else {
            Error::Decode(format!("{path}: {:?}", e.classify()))
        }
    })
}
