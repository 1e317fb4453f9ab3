//! The simulator's HTTP surface: `/oauth2/token`, `/v3/...` (GET or POST, query and
//! form merged, as TTLock accepts), and a small admin API under `/_sim`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::Shared;
use super::callback;
use super::faults::Faults;
use super::state::{self, Fail, Reply};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/faults", get(get_faults).post(set_faults))
        .route("/_sim/stats", get(stats))
        .route("/_sim/revoke", post(revoke))
        .route("/_sim/keypad", post(keypad))
        .fallback(api)
        .with_state(shared)
}

fn params(uri: &Uri, body: &[u8]) -> Result<HashMap<String, String>, Fail> {
    let mut params = HashMap::new();
    if let Some(query) = uri.query() {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|_| Fail::Code(-3))?;
        params.extend(pairs);
    }
    if !body.is_empty() {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|_| Fail::Code(-3))?;
        params.extend(pairs);
    }
    Ok(params)
}

async fn api(State(shared): State<Arc<Shared>>, uri: Uri, body: Bytes) -> Response {
    let reply = answer(&shared, &uri, &body).await;
    let pending = shared.lock().take_pending();
    callback::deliver(&shared, pending);
    match reply {
        Ok(value) => Json(value).into_response(),
        Err(Fail::Code(code)) => {
            shared.lock().count_errcode(code);
            let (errmsg, description) = state::errmsg(code);
            Json(json!({"errcode": code, "errmsg": errmsg, "description": description}))
                .into_response()
        }
        Err(Fail::Http(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, status.canonical_reason().unwrap_or("error")).into_response()
        }
    }
}

async fn answer(shared: &Arc<Shared>, uri: &Uri, body: &[u8]) -> Reply {
    let path = uri.path();
    let params = params(uri, body)?;
    let now = shared.clock.now_ms();
    let ticket = {
        let mut state = shared.lock();
        state.stats.requests += 1;
        *state
            .stats
            .requests_by_path
            .entry(path.to_owned())
            .or_default() += 1;
        if path == "/oauth2/token" {
            return state.token(&params, now);
        }
        if !path.starts_with("/v3/") {
            return Err(Fail::Http(404));
        }
        let account = state.authenticate(&params, now)?;
        if !state::State::is_remote(path, &params) {
            if let Some(failure) = state.take_injected(path, false) {
                return Err(match failure.http_status {
                    Some(status) => Fail::Http(status),
                    None => Fail::Code(failure.errcode.unwrap_or(1)),
                });
            }
            return state.cloud(account, path, &params, now);
        }
        state.begin_remote(account, path, &params)?
    };
    let latency = Duration::from_millis(shared.lock().faults.remote_latency_ms);
    // The command runs to its end even if the caller gives up, as on a real gateway.
    let shared = shared.clone();
    let task = tokio::spawn(async move {
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let now = shared.clock.now_ms();
        shared.lock().finish_remote(ticket, now)
    });
    task.await.unwrap_or(Err(Fail::Code(90000)))
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Json<Faults> {
    Json(shared.lock().faults.clone())
}

async fn set_faults(State(shared): State<Arc<Shared>>, Json(faults): Json<Faults>) -> Json<Faults> {
    shared.lock().faults = faults.clone();
    Json(faults)
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<state::SimStats> {
    Json(shared.lock().stats.clone())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Revoke {
    #[serde(default = "yes")]
    access_tokens: bool,
    #[serde(default)]
    refresh_tokens: bool,
}

fn yes() -> bool {
    true
}

async fn revoke(State(shared): State<Arc<Shared>>, Json(revoke): Json<Revoke>) -> StatusCode {
    let mut state = shared.lock();
    if revoke.access_tokens {
        state.revoke_access_tokens();
    }
    if revoke.refresh_tokens {
        state.revoke_refresh_tokens();
    }
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Keypad {
    lock_id: i64,
    code: String,
}

async fn keypad(State(shared): State<Arc<Shared>>, Json(entry): Json<Keypad>) -> Response {
    let now = shared.clock.now_ms();
    let (opened, pending) = {
        let mut state = shared.lock();
        let opened = state.keypad(entry.lock_id, &entry.code, now);
        (opened, state.take_pending())
    };
    callback::deliver(&shared, pending);
    match opened {
        Some(opened) => Json(json!({"opened": opened})).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
