//! The client side of lock-gateway: a lazily connected channel, a short-lived SERVICE
//! token per call scoped to the tenant being served, a client span and W3C trace
//! context on every call.

use std::time::Duration;

use latchkey::auth::{JwtSigner, roles};
use latchkey::pb::gateway::v1::lock_gateway_client::LockGatewayClient;
use latchkey::pb::gateway::v1::{Account, ListAccountsRequest};
use latchkey::telemetry::{client_span, inject_trace_context, record_client_status};
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument;

use crate::config::Config;
use crate::error::{Error, Result};

const SERVICE: &str = "latchkey.gateway.v1.LockGateway";
/// The `sub` of the tokens access-service presents.
const SUBJECT: &str = "access-service";
const TOKEN_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum GatewaySetupError {
    #[error("LOCK_GATEWAY_URL: {0}")]
    Url(#[from] tonic::transport::Error),
    #[error("reading the lock-gateway signing key {path}: {source}")]
    KeyFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the lock-gateway signing key: {0}")]
    Key(#[from] latchkey::auth::JwtError),
    #[error("set LOCK_GATEWAY_JWT_SECRET, LOCK_GATEWAY_JWT_PRIVATE_KEY_FILE or JWT_SECRET")]
    NoKey,
}

#[derive(Debug, Clone)]
pub struct GatewayClient {
    client: LockGatewayClient<Channel>,
    signer: JwtSigner,
    timeout: Duration,
}

impl GatewayClient {
    pub fn new(config: &Config) -> Result<Self, GatewaySetupError> {
        let channel = Endpoint::from_shared(config.lock_gateway_url.clone())?
            .connect_timeout(Duration::from_secs(5))
            // A device event stream is quiet while nothing happens: pings find a
            // connection that died without closing, so the follower reconnects.
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .connect_lazy();
        let signer = match (
            &config.lock_gateway_jwt_private_key_file,
            &config.lock_gateway_jwt_secret,
            &config.jwt.jwt_secret,
        ) {
            (Some(path), _, _) => {
                let pem = std::fs::read(path).map_err(|source| GatewaySetupError::KeyFile {
                    path: path.clone(),
                    source,
                })?;
                JwtSigner::from_private_pem(&pem)?
            }
            (None, Some(secret), _) | (None, None, Some(secret)) => JwtSigner::hs256(secret),
            (None, None, None) => return Err(GatewaySetupError::NoKey),
        }
        .with_issuer_and_audience(
            config.jwt.jwt_issuer.clone(),
            config.jwt.jwt_audience.clone(),
        );
        Ok(Self {
            client: LockGatewayClient::new(channel),
            signer,
            timeout: Duration::from_millis(config.lock_gateway_timeout_ms),
        })
    }

    /// The deadline of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A request carrying the tenant's SERVICE credential, the current trace context and
    /// a deadline.
    fn request<T>(&self, tenant_id: &str, message: T) -> Result<tonic::Request<T>> {
        let token = self
            .signer
            .sign(SUBJECT, tenant_id, &[roles::SERVICE], TOKEN_TTL)?;
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {token}")
            .parse()
            .map_err(latchkey::error::ApiError::internal)?;
        request.metadata_mut().insert("authorization", value);
        inject_trace_context(request.metadata_mut());
        request.set_timeout(self.timeout);
        Ok(request)
    }

    /// The tenant's TTLock accounts.
    pub async fn list_accounts(&self, tenant_id: &str) -> Result<Vec<Account>> {
        let span = client_span(SERVICE, "ListAccounts");
        async {
            let request = self.request(tenant_id, ListAccountsRequest {})?;
            let answer = self.client.clone().list_accounts(request).await;
            finish(answer.map(|response| response.into_inner().accounts))
        }
        .instrument(span)
        .await
    }
}

/// Records the call's status on the current (client) span and converts the error.
fn finish<T>(answer: std::result::Result<T, tonic::Status>) -> Result<T> {
    let span = tracing::Span::current();
    match answer {
        Ok(value) => {
            record_client_status(&span, tonic::Code::Ok);
            Ok(value)
        }
        Err(status) => {
            record_client_status(&span, status.code());
            tracing::warn!(code = ?status.code(), message = status.message(), "lock-gateway call failed");
            Err(Error::Gateway(status))
        }
    }
}

/// Why a lock-gateway call got no answer, as callers and stored states are told it:
/// the transport's own words go to the log, not to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoAnswer {
    /// Stable, upper snake case.
    pub reason: &'static str,
    /// A plain sentence.
    pub detail: &'static str,
    /// Whether the request may have reached lock-gateway, and through it the lock.
    pub maybe_sent: bool,
}

impl NoAnswer {
    /// No connection could be made: nothing was sent.
    pub const UNREACHABLE: Self = Self {
        reason: "LOCK_GATEWAY_UNAVAILABLE",
        detail: "lock-gateway could not be reached; nothing was sent",
        maybe_sent: false,
    };
    pub const STARTING: Self = Self {
        reason: "LOCK_GATEWAY_STARTING",
        detail: "lock-gateway is starting and took nothing on",
        maybe_sent: false,
    };
    pub const TIMEOUT: Self = Self {
        reason: "LOCK_GATEWAY_TIMEOUT",
        detail: "lock-gateway did not answer in time",
        maybe_sent: true,
    };
    pub const LOST: Self = Self {
        reason: "LOCK_GATEWAY_ANSWER_LOST",
        detail: "the connection to lock-gateway broke before it answered",
        maybe_sent: true,
    };
}

/// Classes a failed call: a connection never made (tonic's `ConnectError` among the
/// status's sources) or lock-gateway's own "starting" refusal sent nothing; anything
/// else (the deadline, a connection that broke) may have been carried out. `None` when lock-gateway answered with a refusal of
/// its own.
pub fn no_answer(status: &tonic::Status) -> Option<NoAnswer> {
    use tonic_types::StatusExt;
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::ConnectError>() {
            return Some(NoAnswer::UNREACHABLE);
        }
        // The call's own deadline, which tonic reports as CANCELLED.
        if error.is::<tonic::TimeoutExpired>() {
            return Some(NoAnswer::TIMEOUT);
        }
        source = error.source();
    }
    let reason = status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone());
    match status.code() {
        tonic::Code::Unavailable if reason.as_deref() == Some("STARTING") => {
            Some(NoAnswer::STARTING)
        }
        tonic::Code::DeadlineExceeded => Some(NoAnswer::TIMEOUT),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            Some(NoAnswer::LOST)
        }
        tonic::Code::Internal if reason.is_none() => Some(NoAnswer::LOST),
        _ => None,
    }
}

/// How a remote unlock ended, as lock-gateway told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actuation {
    /// The lock reported the door open.
    Confirmed(String),
    /// TTLock or the lock refused; the door did not open.
    Refused { errcode: i32, detail: String },
    /// TTLock's answer left it open whether the door moved.
    Ambiguous(String),
    /// No answer from lock-gateway.
    NoAnswer(NoAnswer),
    /// lock-gateway refused the request itself (unknown account or lock, bad input).
    Rejected(String),
}

impl GatewayClient {
    /// Asks lock-gateway to open a lock, passing the caller's request id through so a
    /// retried call never opens the door twice. Never retried here either.
    pub async fn remote_unlock(
        &self,
        tenant_id: &str,
        account: uuid::Uuid,
        lock_id: i64,
        request_id: &str,
    ) -> Actuation {
        use latchkey::pb::gateway::v1::{RemoteOperationRequest, RemoteOutcome};
        let span = client_span(SERVICE, "RemoteUnlock");
        let answer = async {
            let request = self.request(
                tenant_id,
                RemoteOperationRequest {
                    account_id: account.to_string(),
                    lock_id,
                    request_id: request_id.to_owned(),
                },
            )?;
            let answer = self.client.clone().remote_unlock(request).await;
            finish(answer.map(tonic::Response::into_inner))
        }
        .instrument(span)
        .await;
        match answer {
            Ok(response) => match RemoteOutcome::try_from(response.outcome) {
                Ok(RemoteOutcome::Confirmed) => Actuation::Confirmed(response.detail),
                Ok(RemoteOutcome::Failed) => Actuation::Refused {
                    errcode: response.errcode,
                    detail: response.detail,
                },
                _ => Actuation::Ambiguous(response.detail),
            },
            Err(Error::Gateway(status)) => match no_answer(&status) {
                Some(no_answer) => Actuation::NoAnswer(no_answer),
                None => Actuation::Rejected(status.message().to_owned()),
            },
            // The token could not be made: nothing was sent.
            Err(error) => Actuation::Rejected(error.to_string()),
        }
    }
}

/// How a passcode write on lock-gateway ended, as provisioning needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasscodeAnswer {
    /// lock-gateway answered; the outcome is in the result.
    Answered(latchkey::pb::gateway::v1::PasscodeResult),
    /// No answer: unless nothing was sent, the write may or may not have been made; ask
    /// again with the same request id.
    Lost(NoAnswer),
    /// lock-gateway refused the request itself (bad input, unknown account).
    Refused(String),
}

fn passcode_answer(answer: Result<latchkey::pb::gateway::v1::PasscodeResult>) -> PasscodeAnswer {
    match answer {
        Ok(result) => PasscodeAnswer::Answered(result),
        Err(Error::Gateway(status)) => match no_answer(&status) {
            Some(no_answer) => PasscodeAnswer::Lost(no_answer),
            None => PasscodeAnswer::Refused(format!("lock-gateway refused: {}", status.message())),
        },
        Err(error) => {
            tracing::warn!(%error, "a passcode write was not sent");
            PasscodeAnswer::Lost(NoAnswer::UNREACHABLE)
        }
    }
}

impl GatewayClient {
    /// Writes a passcode onto a lock; the code goes only into this request.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_passcode(
        &self,
        tenant_id: &str,
        account: uuid::Uuid,
        lock_id: i64,
        code: &secrecy::SecretString,
        name: &str,
        window: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
        request_id: &str,
    ) -> PasscodeAnswer {
        use secrecy::ExposeSecret;
        let span = client_span(SERVICE, "CreatePasscode");
        let answer = async {
            let request = self.request(
                tenant_id,
                latchkey::pb::gateway::v1::CreatePasscodeRequest {
                    account_id: account.to_string(),
                    lock_id,
                    code: code.expose_secret().to_owned(),
                    name: name.to_owned(),
                    start_time: window.map(|w| latchkey::pb::timestamp(w.0)),
                    end_time: window.map(|w| latchkey::pb::timestamp(w.1)),
                    request_id: request_id.to_owned(),
                },
            )?;
            let answer = self.client.clone().create_passcode(request).await;
            finish(answer.map(tonic::Response::into_inner))
        }
        .instrument(span)
        .await;
        passcode_answer(answer)
    }

    /// Moves a passcode's window on the lock.
    pub async fn change_passcode_window(
        &self,
        tenant_id: &str,
        account: uuid::Uuid,
        lock_id: i64,
        passcode_id: i64,
        window: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
        request_id: &str,
    ) -> PasscodeAnswer {
        let span = client_span(SERVICE, "ChangePasscode");
        let answer = async {
            let request = self.request(
                tenant_id,
                latchkey::pb::gateway::v1::ChangePasscodeRequest {
                    account_id: account.to_string(),
                    lock_id,
                    passcode_id,
                    new_code: String::new(),
                    name: String::new(),
                    start_time: Some(latchkey::pb::timestamp(window.0)),
                    end_time: Some(latchkey::pb::timestamp(window.1)),
                    request_id: request_id.to_owned(),
                },
            )?;
            let answer = self.client.clone().change_passcode(request).await;
            finish(answer.map(tonic::Response::into_inner))
        }
        .instrument(span)
        .await;
        passcode_answer(answer)
    }

    pub async fn delete_passcode(
        &self,
        tenant_id: &str,
        account: uuid::Uuid,
        lock_id: i64,
        passcode_id: i64,
        request_id: &str,
    ) -> PasscodeAnswer {
        let span = client_span(SERVICE, "DeletePasscode");
        let answer = async {
            let request = self.request(
                tenant_id,
                latchkey::pb::gateway::v1::DeletePasscodeRequest {
                    account_id: account.to_string(),
                    lock_id,
                    passcode_id,
                    request_id: request_id.to_owned(),
                },
            )?;
            let answer = self.client.clone().delete_passcode(request).await;
            finish(answer.map(tonic::Response::into_inner))
        }
        .instrument(span)
        .await;
        passcode_answer(answer)
    }

    /// What TTLock says is on the lock, codes masked.
    pub async fn list_passcodes(
        &self,
        tenant_id: &str,
        account: uuid::Uuid,
        lock_id: i64,
    ) -> Result<Vec<latchkey::pb::gateway::v1::Passcode>> {
        let span = client_span(SERVICE, "ListPasscodes");
        async {
            let request = self.request(
                tenant_id,
                latchkey::pb::gateway::v1::ListPasscodesRequest {
                    account_id: account.to_string(),
                    lock_id,
                },
            )?;
            let answer = self.client.clone().list_passcodes(request).await;
            finish(answer.map(|r| r.into_inner().passcodes))
        }
        .instrument(span)
        .await
    }
}

impl GatewayClient {
    /// Opens the tenant's device event stream after `after`. Without a deadline: the
    /// stream lives until lock-gateway ends it (at its shutdown) or the connection fails.
    pub async fn watch_device_events(
        &self,
        tenant_id: &str,
        after: i64,
    ) -> Result<tonic::Streaming<latchkey::pb::gateway::v1::DeviceEvent>> {
        use latchkey::pb::gateway::v1::WatchDeviceEventsRequest;
        let span = client_span(SERVICE, "WatchDeviceEvents");
        async {
            let mut request = self.request(
                tenant_id,
                WatchDeviceEventsRequest {
                    after_cursor: after,
                },
            )?;
            // The call deadline is carried only as this header; a stream must outlive it.
            request.metadata_mut().remove("grpc-timeout");
            let answer = self.client.clone().watch_device_events(request).await;
            finish(answer.map(tonic::Response::into_inner))
        }
        .instrument(span)
        .await
    }
}
