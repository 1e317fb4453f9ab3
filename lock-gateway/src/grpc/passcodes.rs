//! Passcodes and lock records: unpack, call [`crate::passcodes`], convert. Codes are
//! wrapped in [`PasscodeText`] at once so no `Debug` of what travels on shows them.

use latchkey::auth::Caller;
use latchkey::pb::gateway::v1 as pb;
use tonic::{Request, Response, Status};

use crate::passcodes::{self, NewPasscode, Outcome, PasscodeRemoval, PasscodeUpdate, WriteResult};
use crate::state::AppState;
use crate::ttlock::PasscodeText;

fn result_message(result: WriteResult) -> pb::PasscodeResult {
    let outcome = match result.outcome {
        Outcome::Done => pb::PasscodeOutcome::Done,
        Outcome::Failed => pb::PasscodeOutcome::Failed,
        Outcome::Unconfirmed => pb::PasscodeOutcome::Unconfirmed,
    };
    pb::PasscodeResult {
        outcome: outcome as i32,
        passcode_id: result.passcode_id,
        errcode: result.errcode,
        reason: result.reason,
        retryable: result.retryable,
        detail: result.detail,
        latency_ms: result.latency_ms,
        replayed: result.replayed,
    }
}

pub async fn create_passcode(
    state: &AppState,
    request: Request<pb::CreatePasscodeRequest>,
) -> Result<Response<pb::PasscodeResult>, Status> {
    let caller = Caller::of(&request)?;
    let request = request.into_inner();
    let new = NewPasscode {
        account_id: request.account_id,
        lock_id: request.lock_id,
        code: PasscodeText::new(request.code),
        name: request.name,
        start_time: request.start_time,
        end_time: request.end_time,
        request_id: request.request_id,
    };
    let result = passcodes::create(state, &caller, new).await?;
    Ok(Response::new(result_message(result)))
}

pub async fn change_passcode(
    state: &AppState,
    request: Request<pb::ChangePasscodeRequest>,
) -> Result<Response<pb::PasscodeResult>, Status> {
    let caller = Caller::of(&request)?;
    let request = request.into_inner();
    let update = PasscodeUpdate {
        account_id: request.account_id,
        lock_id: request.lock_id,
        passcode_id: request.passcode_id,
        new_code: PasscodeText::new(request.new_code),
        name: request.name,
        start_time: request.start_time,
        end_time: request.end_time,
        request_id: request.request_id,
    };
    let result = passcodes::change(state, &caller, update).await?;
    Ok(Response::new(result_message(result)))
}

pub async fn delete_passcode(
    state: &AppState,
    request: Request<pb::DeletePasscodeRequest>,
) -> Result<Response<pb::PasscodeResult>, Status> {
    let caller = Caller::of(&request)?;
    let request = request.into_inner();
    let removal = PasscodeRemoval {
        account_id: request.account_id,
        lock_id: request.lock_id,
        passcode_id: request.passcode_id,
        request_id: request.request_id,
    };
    let result = passcodes::delete(state, &caller, removal).await?;
    Ok(Response::new(result_message(result)))
}

pub async fn list_passcodes(
    state: &AppState,
    request: Request<pb::ListPasscodesRequest>,
) -> Result<Response<pb::ListPasscodesResponse>, Status> {
    let caller = Caller::of(&request)?;
    let request = request.get_ref();
    let passcodes =
        passcodes::list_passcodes(state, &caller, &request.account_id, request.lock_id).await?;
    Ok(Response::new(pb::ListPasscodesResponse { passcodes }))
}

pub async fn list_lock_records(
    state: &AppState,
    request: Request<pb::ListLockRecordsRequest>,
) -> Result<Response<pb::ListLockRecordsResponse>, Status> {
    let caller = Caller::of(&request)?;
    let request = request.get_ref();
    let records = passcodes::list_records(
        state,
        &caller,
        &request.account_id,
        request.lock_id,
        request.since.as_ref(),
    )
    .await?;
    Ok(Response::new(pb::ListLockRecordsResponse { records }))
}
