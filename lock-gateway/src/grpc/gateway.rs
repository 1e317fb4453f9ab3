//! `latchkey.gateway.v1.LockGateway`.

use latchkey::auth::Caller;
use latchkey::pb::gateway::v1 as pb;
use latchkey::pb::gateway::v1::lock_gateway_server::LockGateway;
use latchkey::pb::timestamp;
use tonic::{Request, Response, Status};

use secrecy::SecretString;

use crate::accounts::NewAccount;
use crate::db::accounts;
use crate::error::Error;
use crate::remote::Operation;
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct GatewayApi {
    state: AppState,
}

impl GatewayApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn account_message(a: accounts::AccountSummary) -> pb::Account {
    pb::Account {
        id: a.id.to_string(),
        name: a.name,
        base_url: a.base_url,
        client_id: a.client_id,
        username: a.username,
        create_time: Some(timestamp(a.create_time)),
    }
}

fn remote_message(outcome: crate::remote::Outcome) -> pb::RemoteOperationResponse {
    let kind = match outcome.outcome.as_str() {
        "CONFIRMED" => pb::RemoteOutcome::Confirmed,
        "FAILED" => pb::RemoteOutcome::Failed,
        _ => pb::RemoteOutcome::Unconfirmed,
    };
    pb::RemoteOperationResponse {
        outcome: kind as i32,
        errcode: outcome.errcode,
        latency_ms: outcome.latency_ms,
        detail: outcome.detail,
        replayed: outcome.replayed,
    }
}

impl GatewayApi {
    async fn remote(
        &self,
        request: Request<pb::RemoteOperationRequest>,
        operation: Operation,
    ) -> Result<Response<pb::RemoteOperationResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let outcome = crate::remote::run(
            &self.state,
            &caller,
            operation,
            &request.account_id,
            request.lock_id,
            &request.request_id,
        )
        .await?;
        Ok(Response::new(remote_message(outcome)))
    }
}

/// The stream `WatchDeviceEvents` answers with.
pub type DeviceEventStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<pb::DeviceEvent, Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl LockGateway for GatewayApi {
    type WatchDeviceEventsStream = DeviceEventStream;

    async fn sync_locks(
        &self,
        request: Request<pb::SyncLocksRequest>,
    ) -> Result<Response<pb::SyncLocksResponse>, Status> {
        super::locks::sync_locks(&self.state, request).await
    }

    async fn list_locks(
        &self,
        request: Request<pb::ListLocksRequest>,
    ) -> Result<Response<pb::ListLocksResponse>, Status> {
        super::locks::list_locks(&self.state, request).await
    }

    async fn get_lock(
        &self,
        request: Request<pb::GetLockRequest>,
    ) -> Result<Response<pb::Lock>, Status> {
        super::locks::get_lock(&self.state, request).await
    }

    async fn create_passcode(
        &self,
        request: Request<pb::CreatePasscodeRequest>,
    ) -> Result<Response<pb::PasscodeResult>, Status> {
        super::passcodes::create_passcode(&self.state, request).await
    }

    async fn change_passcode(
        &self,
        request: Request<pb::ChangePasscodeRequest>,
    ) -> Result<Response<pb::PasscodeResult>, Status> {
        super::passcodes::change_passcode(&self.state, request).await
    }

    async fn delete_passcode(
        &self,
        request: Request<pb::DeletePasscodeRequest>,
    ) -> Result<Response<pb::PasscodeResult>, Status> {
        super::passcodes::delete_passcode(&self.state, request).await
    }

    async fn list_passcodes(
        &self,
        request: Request<pb::ListPasscodesRequest>,
    ) -> Result<Response<pb::ListPasscodesResponse>, Status> {
        super::passcodes::list_passcodes(&self.state, request).await
    }

    async fn list_lock_records(
        &self,
        request: Request<pb::ListLockRecordsRequest>,
    ) -> Result<Response<pb::ListLockRecordsResponse>, Status> {
        super::passcodes::list_lock_records(&self.state, request).await
    }

    async fn watch_device_events(
        &self,
        request: Request<pb::WatchDeviceEventsRequest>,
    ) -> Result<Response<Self::WatchDeviceEventsStream>, Status> {
        super::events::watch_device_events(&self.state, request).await
    }

    async fn register_account(
        &self,
        request: Request<pb::RegisterAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let new = NewAccount {
            name: request.name,
            base_url: request.base_url,
            client_id: request.client_id,
            client_secret: SecretString::from(request.client_secret),
            username: request.username,
            password: SecretString::from(request.password),
            request_id: request.request_id,
        };
        let stored = self
            .state
            .accounts
            .register(&self.state.pool, &caller, new)
            .await?;
        Ok(Response::new(account_message(stored)))
    }

    async fn remove_account(
        &self,
        request: Request<pb::RemoveAccountRequest>,
    ) -> Result<Response<pb::RemoveAccountResponse>, Status> {
        let caller = Caller::of(&request)?;
        self.state
            .accounts
            .remove(&self.state.pool, &caller, &request.get_ref().id)
            .await?;
        Ok(Response::new(pb::RemoveAccountResponse {}))
    }

    async fn remote_unlock(
        &self,
        request: Request<pb::RemoteOperationRequest>,
    ) -> Result<Response<pb::RemoteOperationResponse>, Status> {
        self.remote(request, Operation::Unlock).await
    }

    async fn remote_lock(
        &self,
        request: Request<pb::RemoteOperationRequest>,
    ) -> Result<Response<pb::RemoteOperationResponse>, Status> {
        self.remote(request, Operation::Lock).await
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let mut conn = self.state.pool.get().await.map_err(Error::from)?;
        let rows = accounts::list(&mut conn, &caller.tenant_id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: rows.into_iter().map(account_message).collect(),
        }))
    }
}
