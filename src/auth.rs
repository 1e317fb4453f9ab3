//! Bearer JWT authentication and the per-method role policy, applied to every RPC by
//! one tower layer. Health and reflection are the only public methods.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

use crate::error::ApiError;

/// Roles with meaning to the system. Any other role is an ordinary member role.
pub mod roles {
    /// Everything within its tenant.
    pub const ADMIN: &str = "ADMIN";
    /// Manages rules, reads logs and statistics.
    pub const MANAGER: &str = "MANAGER";
    /// Internal callers; may act on behalf of any user of their tenant.
    pub const SERVICE: &str = "SERVICE";
}

/// The claims latchkey reads from a bearer token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub tenant_id: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// The authenticated caller of an RPC, put into the request's extensions by the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub tenant_id: String,
    pub roles: Vec<String>,
}

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn has_any_role(&self, roles: &[&str]) -> bool {
        roles.iter().any(|role| self.has_role(role))
    }

    /// The caller of a request that passed the [`AuthLayer`].
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Self, Status> {
        request
            .extensions()
            .get::<Self>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("no authenticated caller"))
    }
}

/// JWT settings, shared by both binaries.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JwtConfig {
    /// HS256 shared secret for bearer tokens.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub jwt_secret: Option<SecretString>,
    /// PEM public key (RSA for RS256, Ed25519 for EdDSA) for bearer tokens; used instead
    /// of JWT_SECRET when set.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required `iss` claim, when set.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, when set.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

/// clap parser for secret values, so they are never printed by `Debug`.
pub fn parse_secret(value: &str) -> Result<SecretString, String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(SecretString::from(value.to_owned()))
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("set JWT_SECRET or JWT_PUBLIC_KEY_FILE")]
    NoKey,
    #[error("reading {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds neither an RSA nor an Ed25519 public key in PEM")]
    KeyFormat { path: PathBuf },
}

/// Why a token was refused. Each maps to `UNAUTHENTICATED` with a stable reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed bearer token")]
    Malformed,
    #[error("token expired")]
    Expired,
    #[error("token signature is not valid")]
    BadSignature,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token lacks a required claim")]
    MissingClaim,
    /// `sub`, `tenant_id` or a role is too long or holds a control character: such a
    /// value would reach the database (and the audit log) as the caller's identity.
    #[error("a token claim is too long or holds control characters")]
    InvalidClaim,
}

impl AuthError {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "TOKEN_MISSING",
            Self::Malformed => "TOKEN_MALFORMED",
            Self::Expired => "TOKEN_EXPIRED",
            Self::BadSignature => "TOKEN_SIGNATURE_INVALID",
            Self::WrongAudience => "TOKEN_AUDIENCE_INVALID",
            Self::WrongIssuer => "TOKEN_ISSUER_INVALID",
            Self::MissingClaim => "TOKEN_CLAIM_MISSING",
            Self::InvalidClaim => "TOKEN_CLAIM_INVALID",
        }
    }

    pub fn into_status(self) -> Status {
        let mut details = tonic_types::ErrorDetails::new();
        details.set_error_info(
            self.reason(),
            "auth.latchkey",
            std::collections::HashMap::<String, String>::new(),
        );
        <Status as tonic_types::StatusExt>::with_error_details(
            Code::Unauthenticated,
            self.to_string(),
            details,
        )
    }
}

/// Checks bearer tokens against one configured key.
#[derive(Clone)]
pub struct JwtVerifier {
    key: Arc<DecodingKey>,
    validation: Arc<Validation>,
    /// Tokens already verified, with their expiry: a client presents the same token on
    /// every call, and checking its signature and claims again each time is most of
    /// what authentication costs. A hit is honoured only before the token's `exp`.
    verified: Arc<Mutex<HashMap<String, (Caller, i64)>>>,
}

/// Most tokens remembered as verified; past this the memory starts over.
const VERIFIED_TOKENS: usize = 10_000;

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    pub fn from_config(config: &JwtConfig) -> Result<Self, AuthConfigError> {
        let (key, algorithm) = match (&config.jwt_public_key_file, &config.jwt_secret) {
            (Some(path), _) => {
                let pem = std::fs::read(path).map_err(|source| AuthConfigError::KeyFile {
                    path: path.clone(),
                    source,
                })?;
                if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                    (key, Algorithm::RS256)
                } else if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
                    (key, Algorithm::EdDSA)
                } else {
                    return Err(AuthConfigError::KeyFormat { path: path.clone() });
                }
            }
            (None, Some(secret)) => (
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                Algorithm::HS256,
            ),
            (None, None) => return Err(AuthConfigError::NoKey),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        if let Some(issuer) = &config.jwt_issuer {
            validation.set_issuer(&[issuer]);
        }
        match &config.jwt_audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(Self {
            key: Arc::new(key),
            validation: Arc::new(validation),
            verified: Arc::default(),
        })
    }

    /// Verifies a raw token and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let now = chrono::Utc::now().timestamp();
        if let Some((caller, exp)) = self.lock_verified().get(token)
            && now < *exp
        {
            return Ok(caller.clone());
        }
        let (caller, exp) = self.verify_uncached(token)?;
        let mut verified = self.lock_verified();
        if verified.len() >= VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(token.to_owned(), (caller.clone(), exp));
        Ok(caller)
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Caller, i64)>> {
        // The map holds only verified results; a panic elsewhere cannot leave it wrong.
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks the signature and claims; returns the caller and the token's expiry.
    fn verify_uncached(&self, token: &str) -> Result<(Caller, i64), AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |error| match error.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(_) => AuthError::MissingClaim,
                _ => AuthError::Malformed,
            },
        )?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.tenant_id.is_empty() {
            return Err(AuthError::MissingClaim);
        }
        if !is_identity(&claims.sub)
            || !is_identity(&claims.tenant_id)
            || !claims.roles.iter().all(|role| is_identity(role))
        {
            return Err(AuthError::InvalidClaim);
        }
        let caller = Caller {
            user_id: claims.sub,
            tenant_id: claims.tenant_id,
            roles: claims.roles,
        };
        Ok((caller, claims.exp))
    }

    /// Reads the `authorization: Bearer <token>` header and verifies it.
    pub fn verify_header(&self, headers: &http::HeaderMap) -> Result<Caller, AuthError> {
        let value = headers
            .get(http::header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Malformed)?
            .trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        self.verify(token)
    }
}

/// Longest `sub`, `tenant_id` or role accepted, in bytes.
pub const MAX_IDENTITY_LEN: usize = 128;

/// Whether a claim may stand for a caller: short, and free of control characters (NUL
/// cannot be stored at all; the others would only garble logs and exports).
fn is_identity(value: &str) -> bool {
    value.len() <= MAX_IDENTITY_LEN && !value.chars().any(char::is_control)
}

/// Signs tokens: the service credential access-service presents to lock-gateway, and
/// the local default's admin token.
#[derive(Clone)]
pub struct JwtSigner {
    key: Arc<EncodingKey>,
    algorithm: Algorithm,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    pub fn hs256(secret: &SecretString) -> Self {
        Self {
            key: Arc::new(EncodingKey::from_secret(secret.expose_secret().as_bytes())),
            algorithm: Algorithm::HS256,
            issuer: None,
            audience: None,
        }
    }

    /// A private key in PEM: RSA signs RS256, Ed25519 signs EdDSA.
    pub fn from_private_pem(pem: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        let (key, algorithm) = match EncodingKey::from_rsa_pem(pem) {
            Ok(key) => (key, Algorithm::RS256),
            Err(_) => (EncodingKey::from_ed_pem(pem)?, Algorithm::EdDSA),
        };
        Ok(Self {
            key: Arc::new(key),
            algorithm,
            issuer: None,
            audience: None,
        })
    }

    #[must_use]
    pub fn with_issuer_and_audience(
        mut self,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Self {
        self.issuer = issuer;
        self.audience = audience;
        self
    }

    /// Signs a token for `user` of `tenant` with `roles`, valid for `ttl`.
    pub fn sign(
        &self,
        user: &str,
        tenant: &str,
        roles: &[&str],
        ttl: std::time::Duration,
    ) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user.to_owned(),
            tenant_id: tenant.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat: Some(now),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.key)
            .map_err(ApiError::internal)
    }
}

/// Errors of key parsing and signing.
pub use jsonwebtoken::errors::Error as JwtError;

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token: health and reflection only.
    Public,
    /// Any authenticated caller; the handler narrows further where needed.
    Authenticated,
    /// Callers holding at least one of these roles.
    Roles(&'static [&'static str]),
}

/// Maps a gRPC path (`/package.Service/Method`) to who may call it.
pub type Policy = fn(&str) -> Access;

/// Paths that never need a token.
fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// The tower layer that authenticates every RPC and applies the service's policy.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    verifier: JwtVerifier,
    policy: Policy,
}

impl AuthLayer {
    pub fn new(verifier: JwtVerifier, policy: Policy) -> Self {
        Self { verifier, policy }
    }

    fn authorize(&self, path: &str, headers: &http::HeaderMap) -> Result<Option<Caller>, Status> {
        let access = if is_public(path) {
            Access::Public
        } else {
            (self.policy)(path)
        };
        if access == Access::Public {
            return Ok(None);
        }
        let caller = self
            .verifier
            .verify_header(headers)
            .map_err(AuthError::into_status)?;
        if let Access::Roles(allowed) = access
            && !caller.has_any_role(allowed)
        {
            let mut details = tonic_types::ErrorDetails::new();
            details.set_error_info(
                "ROLE_NOT_ALLOWED",
                "auth.latchkey",
                std::collections::HashMap::<String, String>::new(),
            );
            return Err(<Status as tonic_types::StatusExt>::with_error_details(
                Code::PermissionDenied,
                format!(
                    "this method requires one of the roles {}",
                    allowed.join(", ")
                ),
                details,
            ));
        }
        tracing::Span::current().record("enduser.id", caller.user_id.as_str());
        tracing::Span::current().record("latchkey.tenant_id", caller.tenant_id.as_str());
        Ok(Some(caller))
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self
            .layer
            .authorize(request.uri().path(), request.headers())
        {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                // Take the service that was polled ready and leave a fresh clone behind.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(request))
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(audience: Option<&str>) -> JwtConfig {
        JwtConfig {
            jwt_secret: Some(SecretString::from("unit-test-secret".to_owned())),
            jwt_audience: audience.map(str::to_owned),
            ..JwtConfig::default()
        }
    }

    fn signer(secret: &str) -> JwtSigner {
        JwtSigner::hs256(&SecretString::from(secret.to_owned()))
    }

    #[test]
    fn accepts_a_valid_token() {
        let verifier = JwtVerifier::from_config(&config(None)).unwrap();
        let token = signer("unit-test-secret")
            .sign("u1", "t1", &["ADMIN"], Duration::from_secs(60))
            .unwrap();
        let caller = verifier.verify(&token).unwrap();
        assert_eq!(caller.user_id, "u1");
        assert_eq!(caller.tenant_id, "t1");
        assert!(caller.has_role(roles::ADMIN));
    }

    #[test]
    fn refuses_identities_that_cannot_be_stored() {
        let verifier = JwtVerifier::from_config(&config(None)).unwrap();
        let sign = |sub: &str, tenant: &str, role: &str| {
            signer("unit-test-secret")
                .sign(sub, tenant, &[role], Duration::from_secs(60))
                .unwrap()
        };
        for token in [
            sign("al\0ice", "t1", "ADMIN"),
            sign("alice", "t\u{1b}1", "ADMIN"),
            sign("alice", "t1", "ADM\nIN"),
            sign(&"a".repeat(MAX_IDENTITY_LEN + 1), "t1", "ADMIN"),
        ] {
            assert_eq!(verifier.verify(&token), Err(AuthError::InvalidClaim));
        }
        let longest = sign(&"a".repeat(MAX_IDENTITY_LEN), "t1", "ADMIN");
        assert!(verifier.verify(&longest).is_ok());
    }

    #[test]
    fn refuses_wrong_signature_and_audience() {
        let verifier = JwtVerifier::from_config(&config(Some("latchkey"))).unwrap();
        let forged = signer("other-secret")
            .sign("u1", "t1", &[], Duration::from_secs(60))
            .unwrap();
        assert_eq!(verifier.verify(&forged), Err(AuthError::BadSignature));
        let wrong_aud = signer("unit-test-secret")
            .with_issuer_and_audience(None, Some("someone-else".into()))
            .sign("u1", "t1", &[], Duration::from_secs(60))
            .unwrap();
        assert_eq!(verifier.verify(&wrong_aud), Err(AuthError::WrongAudience));
        assert_eq!(verifier.verify("not.a.jwt"), Err(AuthError::Malformed));
    }

    #[test]
    fn a_remembered_token_is_honoured_only_until_it_expires() {
        let verifier = JwtVerifier::from_config(&config(None)).unwrap();
        let token = signer("unit-test-secret")
            .sign("u1", "t1", &["ADMIN"], Duration::from_secs(60))
            .unwrap();
        let first = verifier.verify(&token).unwrap();
        assert_eq!(verifier.verify(&token).unwrap(), first);
        assert!(verifier.lock_verified().contains_key(&token));
        // A token remembered while it was valid, now past its expiry and the leeway:
        // the memory does not answer for it, and the full check refuses it.
        let claims = Claims {
            sub: "u1".to_owned(),
            tenant_id: "t1".to_owned(),
            roles: vec![],
            exp: chrono::Utc::now().timestamp() - 120,
            iat: None,
            iss: None,
            aud: None,
        };
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"unit-test-secret"),
        )
        .unwrap();
        verifier
            .lock_verified()
            .insert(expired.clone(), (first.clone(), claims.exp));
        assert_eq!(verifier.verify(&expired), Err(AuthError::Expired));
        // A token that differs from a remembered one in any byte is checked in full.
        let mut altered = token.clone();
        altered.push('x');
        assert!(verifier.verify(&altered).is_err());
    }

    #[test]
    fn bearer_header_shape_is_checked() {
        let verifier = JwtVerifier::from_config(&config(None)).unwrap();
        let mut headers = http::HeaderMap::new();
        assert_eq!(verifier.verify_header(&headers), Err(AuthError::Missing));
        headers.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(verifier.verify_header(&headers), Err(AuthError::Malformed));
    }
}
