//! `latchkey.access.v1.DirectoryService`.

use latchkey::auth::Caller;
use latchkey::error::FieldViolations;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::directory_service_server::DirectoryService;
use tonic::{Request, Response, Status};

use super::convert;
use crate::db::properties::PropertyChanges;
use crate::directory::{self, NewProperty, SettingsUpdate, mask_fields};
use crate::error::Error;
use crate::request_ids;
use crate::snapshot::Change;
use crate::state::AppState;
use crate::{doors, memberships, users};

#[derive(Debug, Clone)]
pub struct DirectoryApi {
    state: AppState,
}

impl DirectoryApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl DirectoryService for DirectoryApi {
    async fn get_tenant_settings(
        &self,
        request: Request<pb::GetTenantSettingsRequest>,
    ) -> Reply<pb::TenantSettings> {
        let caller = Caller::of(&request)?;
        let tenant = directory::tenant_settings(&self.state, &caller).await?;
        Ok(Response::new(convert::tenant_settings(tenant)))
    }

    async fn update_tenant_settings(
        &self,
        request: Request<pb::UpdateTenantSettingsRequest>,
    ) -> Reply<pb::TenantSettings> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::default();
        let Some(settings) = request.settings else {
            return Err(Error::from(FieldViolations::single("settings", "is required")).into());
        };
        let fields = mask_fields(
            request.update_mask.as_ref(),
            &["door_access_enabled", "default_time_zone"],
            &mut violations,
        );
        violations.check().map_err(Error::from)?;
        let update = SettingsUpdate {
            door_access_enabled: fields
                .contains(&"door_access_enabled")
                .then_some(settings.door_access_enabled),
            default_time_zone: fields
                .contains(&"default_time_zone")
                .then_some(settings.default_time_zone),
        };
        let tenant = directory::update_tenant_settings(&self.state, &caller, update).await?;
        self.state.changed(&caller.tenant_id, [Change::Doors]).await;
        Ok(Response::new(convert::tenant_settings(tenant)))
    }

    async fn create_property(
        &self,
        request: Request<pb::CreatePropertyRequest>,
    ) -> Reply<pb::Property> {
        let caller = Caller::of(&request)?;
        let (request, request_id, body) = super::identified(request, |r| &mut r.request_id);
        let Some(property) = request.property else {
            return Err(Error::from(FieldViolations::single("property", "is required")).into());
        };
        let new = NewProperty {
            name: property.name,
            time_zone: property.time_zone,
            address: property.address,
            request_id: request_id.clone(),
            code_settings: property.code_settings,
        };
        let create = directory::create_property(&self.state, &caller, new);
        let created = request_ids::once(
            &self.state,
            &caller,
            "CreateProperty",
            &request_id,
            &body,
            create,
        )
        .await?;
        self.state.changed(&caller.tenant_id, [Change::Doors]).await;
        Ok(Response::new(convert::property(created)))
    }

    async fn get_property(&self, request: Request<pb::GetPropertyRequest>) -> Reply<pb::Property> {
        let caller = Caller::of(&request)?;
        let property = directory::get_property(&self.state, &caller, &request.get_ref().id).await?;
        Ok(Response::new(convert::property(property)))
    }

    async fn list_properties(
        &self,
        request: Request<pb::ListPropertiesRequest>,
    ) -> Reply<pb::ListPropertiesResponse> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let (rows, next_page_token) = directory::list_properties(
            &self.state,
            &caller,
            request.page_size,
            &request.page_token,
            &request.name_contains,
        )
        .await?;
        Ok(Response::new(pb::ListPropertiesResponse {
            properties: rows.into_iter().map(convert::property).collect(),
            next_page_token,
        }))
    }

    async fn update_property(
        &self,
        request: Request<pb::UpdatePropertyRequest>,
    ) -> Reply<pb::Property> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let Some(property) = request.property else {
            return Err(Error::from(FieldViolations::single("property", "is required")).into());
        };
        let mut violations = FieldViolations::default();
        let fields = mask_fields(
            request.update_mask.as_ref(),
            &["name", "time_zone", "address", "code_settings"],
            &mut violations,
        );
        violations.check().map_err(Error::from)?;
        let explicit = request
            .update_mask
            .as_ref()
            .is_some_and(|mask| !mask.paths.is_empty());
        // Named in the mask but absent: back to the defaults. An empty mask leaves
        // settings the message does not carry as they are.
        let code_settings = match property.code_settings {
            Some(settings) if fields.contains(&"code_settings") => Some(settings),
            None if explicit && fields.contains(&"code_settings") => Some(pb::CodeSettings {
                auto_generate: true,
                ..Default::default()
            }),
            _ => None,
        };
        let changes = PropertyChanges {
            name: fields.contains(&"name").then_some(property.name),
            time_zone: fields.contains(&"time_zone").then_some(property.time_zone),
            address: fields.contains(&"address").then_some(property.address),
            ..PropertyChanges::default()
        };
        let updated =
            directory::update_property(&self.state, &caller, &property.id, changes, code_settings)
                .await?;
        self.state.changed(&caller.tenant_id, [Change::Doors]).await;
        Ok(Response::new(convert::property(updated)))
    }

    async fn delete_property(
        &self,
        request: Request<pb::DeletePropertyRequest>,
    ) -> Reply<pb::DeletePropertyResponse> {
        let caller = Caller::of(&request)?;
        directory::delete_property(&self.state, &caller, &request.get_ref().id).await?;
        self.state.changed(&caller.tenant_id, [Change::Doors]).await;
        Ok(Response::new(pb::DeletePropertyResponse {}))
    }

    async fn create_door(&self, request: Request<pb::CreateDoorRequest>) -> Reply<pb::Door> {
        let caller = Caller::of(&request)?;
        let (request, request_id, body) = super::identified(request, |r| &mut r.request_id);
        let create = doors::create_door(&self.state, &caller, request.door, &request_id);
        let door = request_ids::once(
            &self.state,
            &caller,
            "CreateDoor",
            &request_id,
            &body,
            create,
        )
        .await?;
        self.state.changed(&caller.tenant_id, [Change::Doors]).await;
        Ok(Response::new(convert::door(door)))
    }

    async fn get_door(&self, request: Request<pb::GetDoorRequest>) -> Reply<pb::Door> {
        let caller = Caller::of(&request)?;
        let door = doors::get_door(&self.state, &caller, &request.get_ref().id).await?;
        Ok(Response::new(convert::door(door)))
    }

    async fn list_doors(
        &self,
        request: Request<pb::ListDoorsRequest>,
    ) -> Reply<pb::ListDoorsResponse> {
        let caller = Caller::of(&request)?;
        let (rows, next_page_token) =
            doors::list_doors(&self.state, &caller, request.get_ref()).await?;
        Ok(Response::new(pb::ListDoorsResponse {
            doors: rows.into_iter().map(convert::door).collect(),
            next_page_token,
        }))
    }

    async fn update_door(&self, request: Request<pb::UpdateDoorRequest>) -> Reply<pb::Door> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let door = doors::update_door(
            &self.state,
            &caller,
            request.door,
            request.update_mask.as_ref(),
        )
        .await?;
        self.state.changed(&caller.tenant_id, [Change::Doors]).await;
        Ok(Response::new(convert::door(door)))
    }

    async fn delete_door(
        &self,
        request: Request<pb::DeleteDoorRequest>,
    ) -> Reply<pb::DeleteDoorResponse> {
        let caller = Caller::of(&request)?;
        let door = doors::delete_door(&self.state, &caller, &request.get_ref().id).await?;
        // Its rules and its codes' bindings went with it.
        self.state
            .changed(
                &caller.tenant_id,
                [Change::Doors, Change::Rules(Some(door)), Change::Codes],
            )
            .await;
        Ok(Response::new(pb::DeleteDoorResponse {}))
    }

    async fn create_user(&self, request: Request<pb::CreateUserRequest>) -> Reply<pb::User> {
        let caller = Caller::of(&request)?;
        let (request, request_id, body) = super::identified(request, |r| &mut r.request_id);
        let create = users::create_user(&self.state, &caller, request.user, &request_id);
        let user = request_ids::once(
            &self.state,
            &caller,
            "CreateUser",
            &request_id,
            &body,
            create,
        )
        .await?;
        self.state.changed(&caller.tenant_id, [Change::Users]).await;
        Ok(Response::new(convert::user(user)))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Reply<pb::User> {
        let caller = Caller::of(&request)?;
        let user = users::get_user(&self.state, &caller, &request.get_ref().id).await?;
        Ok(Response::new(convert::user(user)))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Reply<pb::ListUsersResponse> {
        let caller = Caller::of(&request)?;
        let (rows, next_page_token) =
            users::list_users(&self.state, &caller, request.get_ref()).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: rows.into_iter().map(convert::user).collect(),
            next_page_token,
        }))
    }

    async fn update_user(&self, request: Request<pb::UpdateUserRequest>) -> Reply<pb::User> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let user = users::update_user(
            &self.state,
            &caller,
            request.user,
            request.update_mask.as_ref(),
        )
        .await?;
        self.state.changed(&caller.tenant_id, [Change::Users]).await;
        Ok(Response::new(convert::user(user)))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Reply<pb::DeleteUserResponse> {
        let caller = Caller::of(&request)?;
        let rule_doors = users::delete_user(&self.state, &caller, &request.get_ref().id).await?;
        // Its memberships and grants went with it, and its codes name no user now.
        let grants = rule_doors.into_iter().map(|door| Change::Rules(Some(door)));
        self.state
            .changed(
                &caller.tenant_id,
                [Change::Users, Change::Memberships, Change::Codes]
                    .into_iter()
                    .chain(grants),
            )
            .await;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn create_membership(
        &self,
        request: Request<pb::CreateMembershipRequest>,
    ) -> Reply<pb::Membership> {
        let caller = Caller::of(&request)?;
        let (request, request_id, body) = super::identified(request, |r| &mut r.request_id);
        let create =
            memberships::create_membership(&self.state, &caller, request.membership, &request_id);
        let membership = request_ids::once(
            &self.state,
            &caller,
            "CreateMembership",
            &request_id,
            &body,
            create,
        )
        .await?;
        self.state
            .changed(&caller.tenant_id, [Change::Memberships])
            .await;
        Ok(Response::new(convert::membership(membership)))
    }

    async fn get_membership(
        &self,
        request: Request<pb::GetMembershipRequest>,
    ) -> Reply<pb::Membership> {
        let caller = Caller::of(&request)?;
        let membership =
            memberships::get_membership(&self.state, &caller, &request.get_ref().id).await?;
        Ok(Response::new(convert::membership(membership)))
    }

    async fn list_memberships(
        &self,
        request: Request<pb::ListMembershipsRequest>,
    ) -> Reply<pb::ListMembershipsResponse> {
        let caller = Caller::of(&request)?;
        let (rows, next_page_token) =
            memberships::list_memberships(&self.state, &caller, request.get_ref()).await?;
        Ok(Response::new(pb::ListMembershipsResponse {
            memberships: rows.into_iter().map(convert::membership).collect(),
            next_page_token,
        }))
    }

    async fn update_membership(
        &self,
        request: Request<pb::UpdateMembershipRequest>,
    ) -> Reply<pb::Membership> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let membership = memberships::update_membership(
            &self.state,
            &caller,
            request.membership,
            request.update_mask.as_ref(),
        )
        .await?;
        self.state
            .changed(&caller.tenant_id, [Change::Memberships])
            .await;
        Ok(Response::new(convert::membership(membership)))
    }

    async fn delete_membership(
        &self,
        request: Request<pb::DeleteMembershipRequest>,
    ) -> Reply<pb::DeleteMembershipResponse> {
        let caller = Caller::of(&request)?;
        memberships::delete_membership(&self.state, &caller, &request.get_ref().id).await?;
        self.state
            .changed(&caller.tenant_id, [Change::Memberships])
            .await;
        Ok(Response::new(pb::DeleteMembershipResponse {}))
    }

    async fn list_lock_accounts(
        &self,
        request: Request<pb::ListLockAccountsRequest>,
    ) -> Reply<pb::ListLockAccountsResponse> {
        let caller = Caller::of(&request)?;
        let accounts = self.state.gateway.list_accounts(&caller.tenant_id).await?;
        Ok(Response::new(pb::ListLockAccountsResponse {
            accounts: accounts
                .into_iter()
                .map(|a| pb::LockAccount {
                    id: a.id,
                    name: a.name,
                    base_url: a.base_url,
                    username: a.username,
                })
                .collect(),
        }))
    }
}
