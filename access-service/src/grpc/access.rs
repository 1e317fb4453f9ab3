//! `latchkey.access.v1.AccessService`.

use latchkey::auth::Caller;
use latchkey::error::FieldViolations;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_service_server::AccessService;
use latchkey::pb::{from_timestamp, timestamp};
use tonic::{Request, Response, Status};

use secrecy::SecretString;

use super::convert;
use crate::access::{self, Attempt, Decided};
use crate::actuations::UnlockResult;
use crate::decision::AccessKind;
use crate::error::Error;
use crate::state::AppState;
use crate::unlock::{self, Answered, EmergencyRequest, UnlockAnswer};

#[derive(Debug, Clone)]
pub struct AccessApi {
    state: AppState,
}

impl AccessApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn method(value: i32, violations: &mut FieldViolations) -> String {
    match pb::AccessMethod::try_from(value) {
        Ok(pb::AccessMethod::Unspecified) => String::new(),
        Ok(method) => convert::method_name(method).to_owned(),
        Err(_) => {
            violations.add("method", "is not a known access method");
            String::new()
        }
    }
}

pub fn access_type(kind: Option<AccessKind>) -> pb::AccessType {
    match kind {
        Some(AccessKind::UserSpecific) => pb::AccessType::UserSpecific,
        Some(AccessKind::RoleBased) => pb::AccessType::RoleBased,
        Some(AccessKind::Code) => pb::AccessType::Code,
        None => pb::AccessType::Unspecified,
    }
}

fn decision(decided: Decided) -> pb::Decision {
    let outcome = decided.outcome;
    let reason_code =
        pb::ReasonCode::from_str_name(&format!("REASON_CODE_{}", outcome.reason.as_str()))
            .unwrap_or(pb::ReasonCode::Unspecified);
    pb::Decision {
        granted: outcome.granted,
        reason_code: reason_code as i32,
        reason: outcome.message,
        rule_id: outcome
            .rule
            .as_ref()
            .map(|r| r.id.to_string())
            .unwrap_or_default(),
        rule_name: outcome
            .rule
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        rule_version: outcome.rule.as_ref().map_or(0, |r| r.version),
        access_type: access_type(outcome.access_type) as i32,
        steps: outcome
            .steps
            .into_iter()
            .map(|s| pb::EvaluationStep {
                check: s.check.to_owned(),
                passed: s.passed,
                detail: s.detail,
            })
            .collect(),
        decision_time: Some(timestamp(decided.at)),
        valid_until: outcome.valid_until.map(timestamp),
        time_zone: decided.time_zone,
        access_code_id: decided
            .access_code_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

fn unlock_outcome(result: UnlockResult) -> pb::UnlockOutcome {
    match result {
        UnlockResult::Unlocked => pb::UnlockOutcome::Unlocked,
        UnlockResult::NotAttemptedDenied => pb::UnlockOutcome::NotAttemptedDenied,
        UnlockResult::NoLock => pb::UnlockOutcome::NoLock,
        UnlockResult::Failed => pb::UnlockOutcome::Failed,
        UnlockResult::Unconfirmed => pb::UnlockOutcome::Unconfirmed,
    }
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn emergency_unlock(
        &self,
        request: Request<pb::EmergencyUnlockRequest>,
    ) -> Reply<pb::UnlockDoorResponse> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let emergency = EmergencyRequest {
            door_id: request.door_id,
            reason: request.reason,
            request_id: request.request_id,
            client_ip: request.client_ip,
        };
        let answered = unlock::emergency_unlock(&self.state, &caller, emergency, encode).await?;
        Ok(Response::new(unlock_response(answered)?))
    }

    async fn check_access(
        &self,
        request: Request<pb::CheckAccessRequest>,
    ) -> Reply<pb::CheckAccessResponse> {
        let caller = Caller::of(&request)?;
        let mut request = request.into_inner();
        // The presented code travels on only as a secret.
        let code = SecretString::from(std::mem::take(&mut request.code));
        let mut violations = FieldViolations::default();
        let attempt = Attempt {
            method: method(request.method, &mut violations),
            door_id: request.door_id,
            user_id: request.user_id,
            client_ip: request.client_ip,
            request_id: request.request_id,
        };
        violations.check().map_err(Error::from)?;
        let (decided, audit_sequence) =
            access::check_access(&self.state, &caller, attempt, code).await?;
        Ok(Response::new(pb::CheckAccessResponse {
            decision: Some(decision(decided)),
            audit_sequence,
        }))
    }

    async fn explain_access(
        &self,
        request: Request<pb::ExplainAccessRequest>,
    ) -> Reply<pb::ExplainAccessResponse> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::default();
        let at = request.at.as_ref().and_then(|at| {
            let parsed = from_timestamp(at);
            if parsed.is_none() {
                violations.add("at", "is not a valid timestamp");
            }
            parsed
        });
        let attempt = Attempt {
            method: method(request.method, &mut violations),
            door_id: request.door_id,
            user_id: request.user_id,
            ..Attempt::default()
        };
        violations.check().map_err(Error::from)?;
        let decided = access::explain(&self.state, &caller, attempt, at).await?;
        Ok(Response::new(pb::ExplainAccessResponse {
            decision: Some(decision(decided)),
        }))
    }

    async fn list_accessible_doors(
        &self,
        request: Request<pb::ListAccessibleDoorsRequest>,
    ) -> Reply<pb::ListAccessibleDoorsResponse> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let (doors, next_page_token) = access::accessible_doors(
            &self.state,
            &caller,
            &request.user_id,
            request.page_size,
            &request.page_token,
        )
        .await?;
        Ok(Response::new(pb::ListAccessibleDoorsResponse {
            doors: doors
                .into_iter()
                .map(|a| pb::AccessibleDoor {
                    rule_id: a
                        .outcome
                        .rule
                        .as_ref()
                        .map(|r| r.id.to_string())
                        .unwrap_or_default(),
                    rule_name: a
                        .outcome
                        .rule
                        .as_ref()
                        .map(|r| r.name.clone())
                        .unwrap_or_default(),
                    access_type: access_type(a.outcome.access_type) as i32,
                    valid_until: a.outcome.valid_until.map(timestamp),
                    door: Some(convert::door_entry(a.door_id, &a.door)),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn get_door_status(
        &self,
        request: Request<pb::GetDoorStatusRequest>,
    ) -> Reply<pb::GetDoorStatusResponse> {
        let caller = Caller::of(&request)?;
        let door_id = request.into_inner().door_id;
        let door = access::door_status(&self.state, &caller, &door_id).await?;
        Ok(Response::new(pb::GetDoorStatusResponse {
            status: convert::door_status(&door.status) as i32,
            active: door.view.active,
            has_lock: door.lock.is_some(),
            status_time: door.status_time.map(timestamp),
            door_id,
        }))
    }

    async fn unlock_door(
        &self,
        request: Request<pb::UnlockDoorRequest>,
    ) -> Reply<pb::UnlockDoorResponse> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let attempt = Attempt {
            door_id: request.door_id,
            user_id: request.user_id,
            method: "REMOTE".to_owned(),
            client_ip: request.client_ip,
            request_id: request.request_id,
        };
        let answered = unlock::unlock(&self.state, &caller, attempt, encode).await?;
        Ok(Response::new(unlock_response(answered)?))
    }
}

fn response(answer: UnlockAnswer) -> pb::UnlockDoorResponse {
    pb::UnlockDoorResponse {
        decision: Some(decision(answer.decided)),
        audit_sequence: answer.audit_sequence,
        outcome: unlock_outcome(answer.result) as i32,
        outcome_detail: answer.detail,
        outcome_audit_sequence: answer.outcome_audit_sequence,
    }
}

/// The answer as a repeat of the request gets it back.
fn encode(answer: &UnlockAnswer) -> Vec<u8> {
    use prost::Message;
    response(answer.clone()).encode_to_vec()
}

fn unlock_response(answered: Answered) -> Result<pb::UnlockDoorResponse, Status> {
    use prost::Message;
    match answered {
        Answered::Now(answer) => Ok(response(answer)),
        Answered::Replayed(bytes) => pb::UnlockDoorResponse::decode(bytes.as_slice())
            .map_err(|error| Error::from(latchkey::error::ApiError::internal(error)).into()),
    }
}
