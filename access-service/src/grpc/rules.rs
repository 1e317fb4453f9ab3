//! `latchkey.access.v1.RuleService`.

use latchkey::auth::Caller;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::rule_service_server::RuleService;
use tonic::{Request, Response, Status};

use super::convert;
use crate::db::rules::RuleView;
use crate::request_ids;
use crate::rules::{self, UsersChange};
use crate::snapshot::Change;
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct RuleApi {
    state: AppState,
}

impl RuleApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// What a change to `rule` makes stale in the snapshot.
fn touched(rule: &RuleView) -> Change {
    Change::Rule {
        door: rule.rule.door_id,
        rule: rule.rule.id,
    }
}

#[tonic::async_trait]
impl RuleService for RuleApi {
    async fn create_rule(&self, request: Request<pb::CreateRuleRequest>) -> Reply<pb::Rule> {
        let caller = Caller::of(&request)?;
        let (request, request_id, body) = super::identified(request, |r| &mut r.request_id);
        let create = rules::create_rule(&self.state, &caller, request.rule, &request_id);
        let rule = request_ids::once(
            &self.state,
            &caller,
            "CreateRule",
            &request_id,
            &body,
            create,
        )
        .await?;
        self.state
            .changed(&caller.tenant_id, [touched(&rule)])
            .await;
        Ok(Response::new(convert::rule(rule)))
    }

    async fn get_rule(&self, request: Request<pb::GetRuleRequest>) -> Reply<pb::Rule> {
        let caller = Caller::of(&request)?;
        let rule = rules::get_rule(&self.state, &caller, &request.get_ref().id).await?;
        Ok(Response::new(convert::rule(rule)))
    }

    async fn list_rules(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> Reply<pb::ListRulesResponse> {
        let caller = Caller::of(&request)?;
        let (rows, next_page_token) =
            rules::list_rules(&self.state, &caller, request.get_ref()).await?;
        Ok(Response::new(pb::ListRulesResponse {
            rules: rows.into_iter().map(convert::rule).collect(),
            next_page_token,
        }))
    }

    async fn update_rule(&self, request: Request<pb::UpdateRuleRequest>) -> Reply<pb::Rule> {
        let caller = Caller::of(&request)?;
        let rule = rules::update_rule(&self.state, &caller, request.into_inner()).await?;
        self.state
            .changed(&caller.tenant_id, [touched(&rule)])
            .await;
        Ok(Response::new(convert::rule(rule)))
    }

    async fn delete_rule(
        &self,
        request: Request<pb::DeleteRuleRequest>,
    ) -> Reply<pb::DeleteRuleResponse> {
        let caller = Caller::of(&request)?;
        let (door, rule) = rules::delete_rule(&self.state, &caller, &request.get_ref().id).await?;
        self.state
            .changed(&caller.tenant_id, [Change::Rule { door, rule }])
            .await;
        Ok(Response::new(pb::DeleteRuleResponse {}))
    }

    async fn toggle_rule(&self, request: Request<pb::ToggleRuleRequest>) -> Reply<pb::Rule> {
        let caller = Caller::of(&request)?;
        let request = request.get_ref();
        let rule = rules::toggle_rule(&self.state, &caller, &request.id, request.active).await?;
        self.state
            .changed(&caller.tenant_id, [touched(&rule)])
            .await;
        Ok(Response::new(convert::rule(rule)))
    }

    async fn add_rule_users(&self, request: Request<pb::AddRuleUsersRequest>) -> Reply<pb::Rule> {
        let caller = Caller::of(&request)?;
        let request = request.get_ref();
        let rule = rules::change_rule_users(
            &self.state,
            &caller,
            &request.id,
            &request.user_ids,
            UsersChange::Add,
        )
        .await?;
        self.state
            .changed(&caller.tenant_id, [touched(&rule)])
            .await;
        Ok(Response::new(convert::rule(rule)))
    }

    async fn remove_rule_users(
        &self,
        request: Request<pb::RemoveRuleUsersRequest>,
    ) -> Reply<pb::Rule> {
        let caller = Caller::of(&request)?;
        let request = request.get_ref();
        let rule = rules::change_rule_users(
            &self.state,
            &caller,
            &request.id,
            &request.user_ids,
            UsersChange::Remove,
        )
        .await?;
        self.state
            .changed(&caller.tenant_id, [touched(&rule)])
            .await;
        Ok(Response::new(convert::rule(rule)))
    }
}
