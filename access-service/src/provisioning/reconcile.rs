//! On-demand reconciliation of one lock's passcodes with the codes that should be on it.

use latchkey::auth::Caller;
use latchkey::error::ApiError;
use latchkey::pb::access::v1 as pb;

use crate::state::AppState;

pub async fn reconcile_lock(
    _state: &AppState,
    _caller: &Caller,
    _request: pb::ReconcileLockRequest,
) -> crate::error::Result<pb::ReconcileLockResponse> {
    Err(ApiError::unavailable(
        "RECONCILE_UNAVAILABLE",
        "reconciliation is not available in this build",
    )
    .into())
}
