//! `latchkey.access.v1.AccessCodeService`.

use latchkey::auth::Caller;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_code_service_server::AccessCodeService;
use latchkey::pb::timestamp;
use secrecy::ExposeSecret;
use tonic::{Request, Response, Status};

use crate::codes::{self, Issued, StoredCode};
use crate::db::outbox::CodeDoor;
use crate::request_ids;
use crate::state::AppState;
use crate::time_slot::StoredSlot;

#[derive(Debug, Clone)]
pub struct AccessCodeApi {
    state: AppState,
}

impl AccessCodeApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn code_door(door: CodeDoor) -> pb::CodeDoor {
    pb::CodeDoor {
        door_id: door.door_id.to_string(),
        sync_state: pb::SyncState::from_str_name(&format!("SYNC_STATE_{}", door.sync_state))
            .unwrap_or(pb::SyncState::Unspecified) as i32,
        failure_reason: door.failure_reason,
        detail: door.detail,
        lock_passcode_id: door.lock_passcode_id.unwrap_or_default(),
        update_time: Some(timestamp(door.update_time)),
    }
}

/// A stored code as the API shows it: masked, never the code.
pub fn access_code(stored: StoredCode) -> pb::AccessCode {
    let masked_code = stored.masked();
    let code = stored.code;
    let slots: Vec<StoredSlot> = match serde_json::from_value(code.time_slots) {
        Ok(slots) => slots,
        Err(error) => {
            // Only this service writes the column; a bad value is a bug worth seeing.
            tracing::error!(code_id = %code.id, %error, "stored time slots are malformed");
            Vec::new()
        }
    };
    pb::AccessCode {
        id: code.id.to_string(),
        grantee: Some(pb::Grantee {
            r#type: pb::GranteeType::from_str_name(&format!("GRANTEE_TYPE_{}", code.grantee_type))
                .unwrap_or(pb::GranteeType::Unspecified) as i32,
            user_id: code.user_id.map(|u| u.to_string()).unwrap_or_default(),
            name: code.grantee_name,
            contact: code.grantee_contact,
        }),
        purpose: pb::CodePurpose::from_str_name(&format!("CODE_PURPOSE_{}", code.purpose))
            .unwrap_or(pb::CodePurpose::Unspecified) as i32,
        r#type: pb::CodeType::from_str_name(&format!("CODE_TYPE_{}", code.code_type))
            .unwrap_or(pb::CodeType::Unspecified) as i32,
        start_time: code.start_time.map(timestamp),
        end_time: code.end_time.map(timestamp),
        time_slots: slots
            .into_iter()
            .map(|s| pb::TimeSlot {
                day_of_week: s.day_of_week,
                start: s.start,
                end: s.end,
            })
            .collect(),
        max_usages: code.max_usages,
        usage_count: code.usage_count,
        masked_code,
        status: pb::CodeStatus::from_str_name(&format!("CODE_STATUS_{}", code.status))
            .unwrap_or(pb::CodeStatus::Unspecified) as i32,
        doors: stored.doors.into_iter().map(code_door).collect(),
        booking_reference: code.booking_reference.unwrap_or_default(),
        property_id: code.property_id.map(|p| p.to_string()).unwrap_or_default(),
        create_time: Some(timestamp(code.create_time)),
        revoke_time: code.revoke_time.map(timestamp),
        version: code.version,
    }
}

/// The plaintext, exposed only into the one response that issues it.
fn plaintext(issued: &Issued) -> String {
    issued
        .plaintext
        .as_ref()
        .map(|code| code.expose_secret().to_owned())
        .unwrap_or_default()
}

#[tonic::async_trait]
impl AccessCodeService for AccessCodeApi {
    async fn issue_access_code(
        &self,
        request: Request<pb::IssueAccessCodeRequest>,
    ) -> Reply<pb::IssueAccessCodeResponse> {
        let caller = Caller::of(&request)?;
        let (mut request, request_id, body) = super::identified(request, |r| &mut r.request_id);
        request.request_id = request_id.clone();
        let issue = codes::issue_access_code(&self.state, &caller, request);
        let issued = request_ids::once(
            &self.state,
            &caller,
            "IssueAccessCode",
            &request_id,
            &body,
            issue,
        )
        .await?;
        Ok(Response::new(pb::IssueAccessCodeResponse {
            code: plaintext(&issued),
            replayed: issued.replayed,
            access_code: Some(access_code(issued.code)),
        }))
    }

    async fn issue_stay_codes(
        &self,
        request: Request<pb::IssueStayCodesRequest>,
    ) -> Reply<pb::IssueStayCodesResponse> {
        let caller = Caller::of(&request)?;
        let stay = codes::issue_stay_codes(&self.state, &caller, request.into_inner()).await?;
        let cleaning_plaintext = stay.cleaning.as_ref().map(plaintext).unwrap_or_default();
        Ok(Response::new(pb::IssueStayCodesResponse {
            code: plaintext(&stay.guest),
            guest_code: Some(access_code(stay.guest.code)),
            cleaning_code: stay.cleaning.map(|c| access_code(c.code)),
            cleaning_plaintext,
            existing: stay.existing,
        }))
    }

    async fn revoke_access_code(
        &self,
        request: Request<pb::RevokeAccessCodeRequest>,
    ) -> Reply<pb::AccessCode> {
        let caller = Caller::of(&request)?;
        let request = request.get_ref();
        let code = codes::revoke_access_code(
            &self.state,
            &caller,
            &request.id,
            &request.reason,
            &request.request_id,
        )
        .await?;
        Ok(Response::new(access_code(code)))
    }

    async fn get_access_code(
        &self,
        request: Request<pb::GetAccessCodeRequest>,
    ) -> Reply<pb::AccessCode> {
        let caller = Caller::of(&request)?;
        let code = codes::get_access_code(&self.state, &caller, &request.get_ref().id).await?;
        Ok(Response::new(access_code(code)))
    }

    async fn list_access_codes(
        &self,
        request: Request<pb::ListAccessCodesRequest>,
    ) -> Reply<pb::ListAccessCodesResponse> {
        let caller = Caller::of(&request)?;
        let (rows, next_page_token) =
            codes::list_access_codes(&self.state, &caller, request.get_ref()).await?;
        Ok(Response::new(pb::ListAccessCodesResponse {
            access_codes: rows.into_iter().map(access_code).collect(),
            next_page_token,
        }))
    }

    async fn reconcile_lock(
        &self,
        request: Request<pb::ReconcileLockRequest>,
    ) -> Reply<pb::ReconcileLockResponse> {
        let caller = Caller::of(&request)?;
        Ok(Response::new(
            crate::provisioning::reconcile::reconcile_lock(
                &self.state,
                &caller,
                request.into_inner(),
            )
            .await?,
        ))
    }
}
