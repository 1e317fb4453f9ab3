//! `latchkey.gateway.v1.LockGateway`.

use latchkey::auth::Caller;
use latchkey::pb::gateway::v1 as pb;
use latchkey::pb::gateway::v1::lock_gateway_server::LockGateway;
use latchkey::pb::timestamp;
use tonic::{Request, Response, Status};

use crate::db::accounts;
use crate::error::Error;
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

#[tonic::async_trait]
impl LockGateway for GatewayApi {
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
            accounts: rows
                .into_iter()
                .map(|a| pb::Account {
                    id: a.id.to_string(),
                    name: a.name,
                    base_url: a.base_url,
                    client_id: a.client_id,
                    username: a.username,
                    create_time: Some(timestamp(a.create_time)),
                })
                .collect(),
        }))
    }
}
