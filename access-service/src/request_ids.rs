//! Create requests by request id: a repeat of the same request is carried out again
//! (each create then finds what the first made and answers it, recording nothing new);
//! the same id with a different request is refused with `REQUEST_ID_REUSED` before
//! anything is done. A request that fails gives its id back, so a corrected retry under
//! the same id is carried out.

use latchkey::auth::Caller;
use latchkey::error::ApiError;

use crate::db::request_fingerprints::{
    self,
    RequestIdTable::{Creates, Unlocks},
};
use crate::error::Result;
use crate::state::AppState;

/// Runs `create` once per request id and request. `message` is the request as encoded,
/// without its request id.
pub async fn once<T>(
    state: &AppState,
    caller: &Caller,
    operation: &str,
    request_id: &str,
    message: &[u8],
    create: impl Future<Output = Result<T>>,
) -> Result<T> {
    if request_id.is_empty() || !latchkey::pagination::is_request_id(request_id) {
        // No id, or one the create refuses: nothing to compare.
        return create.await;
    }
    let tenant = caller.tenant_id.as_str();
    let fingerprint = state.code_keys.request_fingerprint(operation, message);
    let first = {
        let mut conn = state.pool.get().await?;
        request_fingerprints::claim(&mut conn, tenant, operation, request_id, &fingerprint).await?
    };
    match first {
        Some(first) if first != fingerprint => Err(ApiError::failed_precondition(
            "REQUEST_ID_REUSED",
            "this request id was first used for a different request",
        )
        .into()),
        Some(_) => create.await,
        None => {
            let created = create.await;
            if created.is_err() {
                let released = async {
                    let mut conn = state.pool.get().await?;
                    request_fingerprints::release(&mut conn, tenant, operation, request_id).await?;
                    Ok::<_, crate::error::Error>(())
                }
                .await;
                if let Err(error) = released {
                    tracing::warn!(?error, "a failed request's id could not be given back");
                }
            }
            created
        }
    }
}

/// Forgets request ids (of unlocks and creates) first used more than `retention` ago,
/// every `interval`, in bounded batches.
pub async fn retention_job(
    pool: latchkey::db::DbPool,
    retention: chrono::Duration,
    interval: std::time::Duration,
) {
    const BATCH: i64 = 5_000;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let before = chrono::Utc::now() - retention;
        let swept = async {
            let mut conn = pool.get().await?;
            let mut forgotten = 0;
            loop {
                let unlocks =
                    request_fingerprints::forget_before(&mut conn, Unlocks, before, BATCH).await?;
                let creates =
                    request_fingerprints::forget_before(&mut conn, Creates, before, BATCH).await?;
                forgotten += unlocks + creates;
                if unlocks < BATCH as usize && creates < BATCH as usize {
                    return Ok::<_, crate::error::Error>(forgotten);
                }
            }
        }
        .await;
        match swept {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(forgotten, "old request ids forgotten"),
            Err(error) => tracing::warn!(?error, "request ids could not be swept"),
        }
    }
}
