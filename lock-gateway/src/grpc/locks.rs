//! `SyncLocks`, `ListLocks`, `GetLock`.

use latchkey::auth::Caller;
use latchkey::pb::gateway::v1 as pb;
use tonic::{Request, Response, Status};

use crate::state::AppState;

pub async fn sync_locks(
    state: &AppState,
    request: Request<pb::SyncLocksRequest>,
) -> Result<Response<pb::SyncLocksResponse>, Status> {
    let caller = Caller::of(&request)?;
    let report = crate::locks::sync(state, &caller, &request.get_ref().account_id).await?;
    Ok(Response::new(report))
}

pub async fn list_locks(
    state: &AppState,
    request: Request<pb::ListLocksRequest>,
) -> Result<Response<pb::ListLocksResponse>, Status> {
    let caller = Caller::of(&request)?;
    let page = crate::locks::list(state, &caller, request.into_inner()).await?;
    Ok(Response::new(page))
}

pub async fn get_lock(
    state: &AppState,
    request: Request<pb::GetLockRequest>,
) -> Result<Response<pb::Lock>, Status> {
    let caller = Caller::of(&request)?;
    let request = request.into_inner();
    let lock = crate::locks::get(state, &caller, &request.account_id, request.lock_id).await?;
    Ok(Response::new(lock))
}
