//! The TTLock callback receiver: an HTTP endpoint whose path carries an unguessable
//! secret. Each callback is masked, stored durably in the inbox (once, however often it
//! is delivered) and only then acknowledged with `200 text/plain success`; publishing
//! happens after, from the inbox.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use latchkey::db::DbPool;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::Instrument;

use super::MaskedRecord;
use crate::crypto::Sealer;
use crate::db::inbox;
use crate::ttlock::types::Callback;

/// The path prefix; the secret follows it.
pub const PATH_PREFIX: &str = "/ttlock/callback/";

/// A callback as stored: everything it said, credentials masked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Arrival {
    pub notify_type: Option<i32>,
    pub lock_id: Option<i64>,
    pub lock_mac: Option<String>,
    pub admin: Option<String>,
    pub records: Vec<MaskedRecord>,
    /// notifyType 2: the gateway and whether it is online now.
    pub gateway_id: Option<i64>,
    pub is_online: Option<bool>,
    /// notifyType 4: what failed (2 passcode, 3 card, ...), its id and TTLock's errcode.
    pub object_type: Option<i32>,
    pub object_id: Option<i64>,
    pub errcode: Option<i32>,
    /// The `records` field was not a JSON array of records; kept so it is not lost
    /// silently.
    pub malformed: bool,
}

impl Arrival {
    /// Decodes and masks a callback's form fields.
    pub fn decode(sealer: &Sealer, fields: &[(String, String)]) -> Self {
        let pairs = || fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let (callback, malformed) = match Callback::from_form(pairs()) {
            Ok(callback) => (callback, false),
            // Keep the other fields; drop only what does not parse.
            Err(_) => (
                Callback::from_form(pairs().filter(|(k, _)| *k != "records"))
                    .unwrap_or_else(|_| unreachable!("no records field left to fail")),
                true,
            ),
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_owned())
        };
        let lock_id = callback.lock_id.unwrap_or(0);
        Self {
            notify_type: callback.notify_type,
            lock_id: callback.lock_id,
            lock_mac: callback.lock_mac,
            admin: callback.admin,
            records: MaskedRecord::delivered(sealer, lock_id, &callback.records),
            gateway_id: field("gatewayId").and_then(|v| v.parse().ok()),
            is_online: field("isOnline").and_then(|v| match v.as_str() {
                "1" | "true" => Some(true),
                "0" | "false" => Some(false),
                _ => None,
            }),
            object_type: field("objectType").and_then(|v| v.parse().ok()),
            object_id: field("objectId").and_then(|v| v.parse().ok()),
            errcode: field("errcode").and_then(|v| v.parse().ok()),
            malformed,
        }
    }
}

#[derive(Clone)]
struct Receiver {
    pool: DbPool,
    sealer: Sealer,
    secret: Arc<SecretString>,
    processed: Arc<Notify>,
}

/// The receiver's routes. `processed` is woken after every stored callback.
pub fn router(
    pool: DbPool,
    sealer: Sealer,
    secret: SecretString,
    processed: Arc<Notify>,
) -> Router {
    Router::new()
        .route("/ttlock/callback/{secret}", post(receive))
        .with_state(Receiver {
            pool,
            sealer,
            secret: Arc::new(secret),
            processed,
        })
}

/// Compares in time independent of where the strings differ.
fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(secret): Path<String>,
    body: Bytes,
) -> Response {
    // The path is never recorded: it holds the secret.
    let span = tracing::info_span!(
        "ttlock.callback",
        notify_type = tracing::field::Empty,
        lock_id = tracing::field::Empty,
        records = tracing::field::Empty,
        stored = tracing::field::Empty,
    );
    async move {
        if !same_secret(&secret, receiver.secret.expose_secret()) {
            tracing::warn!("callback with a wrong secret refused");
            return text(StatusCode::NOT_FOUND, "not found");
        }
        let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
            tracing::warn!("callback body is not a form; refused");
            return text(StatusCode::BAD_REQUEST, "bad form");
        };
        let arrival = Arrival::decode(&receiver.sealer, &fields);
        let span = tracing::Span::current();
        span.record("notify_type", arrival.notify_type.unwrap_or(0));
        span.record("lock_id", arrival.lock_id.unwrap_or(0));
        span.record("records", arrival.records.len());
        let key = receiver.sealer.digest(&[b"callback", &body]);
        let Ok(payload) = serde_json::to_value(&arrival) else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "error");
        };
        // PostgreSQL cannot store U+0000 (jsonb refuses it), and TTLock never sends one:
        // such a body is refused as malformed rather than answered 503 and delivered
        // again for ever.
        if payload.to_string().contains("\\u0000") {
            tracing::warn!("callback holding a NUL character refused");
            return text(StatusCode::BAD_REQUEST, "bad form");
        }
        let stored = match receiver.pool.get().await {
            Ok(mut conn) => {
                inbox::insert(
                    &mut conn,
                    &key,
                    arrival.notify_type,
                    arrival
                        .lock_id
                        .or(arrival.records.first().map(|r| r.lock_id)),
                    &payload,
                )
                .await
            }
            Err(error) => {
                tracing::warn!(%error, "callback not stored: no database connection");
                return text(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
            }
        };
        match stored {
            Ok(stored) => {
                span.record("stored", stored);
                if arrival.malformed {
                    tracing::warn!("callback records field did not parse; the rest was kept");
                }
                receiver.processed.notify_one();
                text(StatusCode::OK, "success")
            }
            Err(error) => {
                tracing::warn!(%error, "callback not stored");
                text(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
    }
}
