//! locks: placeholder until implemented.

use latchkey::pb::gateway::v1 as pb;
use tonic::{Request, Response, Status};

use crate::state::AppState;

pub async fn sync_locks(
    _state: &AppState,
    _request: Request<pb::SyncLocksRequest>,
) -> Result<Response<pb::SyncLocksResponse>, Status> {
    Err(Status::unimplemented("sync_locks"))
}

pub async fn list_locks(
    _state: &AppState,
    _request: Request<pb::ListLocksRequest>,
) -> Result<Response<pb::ListLocksResponse>, Status> {
    Err(Status::unimplemented("list_locks"))
}

pub async fn get_lock(
    _state: &AppState,
    _request: Request<pb::GetLockRequest>,
) -> Result<Response<pb::Lock>, Status> {
    Err(Status::unimplemented("get_lock"))
}
