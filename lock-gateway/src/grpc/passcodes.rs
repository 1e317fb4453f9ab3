//! passcodes: placeholder until implemented.

use latchkey::pb::gateway::v1 as pb;
use tonic::{Request, Response, Status};

use crate::state::AppState;

pub async fn create_passcode(
    _state: &AppState,
    _request: Request<pb::CreatePasscodeRequest>,
) -> Result<Response<pb::PasscodeResult>, Status> {
    Err(Status::unimplemented("create_passcode"))
}

pub async fn change_passcode(
    _state: &AppState,
    _request: Request<pb::ChangePasscodeRequest>,
) -> Result<Response<pb::PasscodeResult>, Status> {
    Err(Status::unimplemented("change_passcode"))
}

pub async fn delete_passcode(
    _state: &AppState,
    _request: Request<pb::DeletePasscodeRequest>,
) -> Result<Response<pb::PasscodeResult>, Status> {
    Err(Status::unimplemented("delete_passcode"))
}

pub async fn list_passcodes(
    _state: &AppState,
    _request: Request<pb::ListPasscodesRequest>,
) -> Result<Response<pb::ListPasscodesResponse>, Status> {
    Err(Status::unimplemented("list_passcodes"))
}

pub async fn list_lock_records(
    _state: &AppState,
    _request: Request<pb::ListLockRecordsRequest>,
) -> Result<Response<pb::ListLockRecordsResponse>, Status> {
    Err(Status::unimplemented("list_lock_records"))
}
