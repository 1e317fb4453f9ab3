//! Conversions between stored rows and protobuf messages.

use latchkey::pb::access::v1 as pb;
use latchkey::pb::timestamp;

use crate::db::doors::DoorView;
use crate::db::memberships::Membership;
use crate::db::properties::Property;
use crate::db::rules::RuleView;
use crate::db::tenants::Tenant;
use crate::db::users::User;
use crate::time_slot::StoredSlot;

pub fn tenant_settings(tenant: Tenant) -> pb::TenantSettings {
    pb::TenantSettings {
        tenant_id: tenant.tenant_id,
        door_access_enabled: tenant.door_access_enabled,
        default_time_zone: tenant.default_time_zone,
        version: tenant.version,
        update_time: (tenant.version > 0).then(|| timestamp(tenant.update_time)),
    }
}

pub fn property(property: Property) -> pb::Property {
    pb::Property {
        id: property.id.to_string(),
        name: property.name,
        time_zone: property.time_zone,
        address: property.address,
        version: property.version,
        create_time: Some(timestamp(property.create_time)),
        update_time: Some(timestamp(property.update_time)),
        code_settings: Some(pb::CodeSettings {
            auto_generate: property.auto_generate_codes,
            max_active_codes: property.max_active_codes,
            default_code_length: property.code_length,
            check_in_time: property.check_in_time,
            check_out_time: property.check_out_time,
            cleaning_code: property.cleaning_code,
            cleaning_minutes: property.cleaning_minutes,
        }),
    }
}

use crate::audit::AuditAction;
use crate::audit::store::Record;

pub fn audit_action_to_pb(action: &str) -> pb::AuditAction {
    match AuditAction::parse(action) {
        Some(AuditAction::AccessGranted) => pb::AuditAction::AccessGranted,
        Some(AuditAction::AccessDenied) => pb::AuditAction::AccessDenied,
        Some(AuditAction::Unlock) => pb::AuditAction::Unlock,
        Some(AuditAction::Lock) => pb::AuditAction::Lock,
        Some(AuditAction::UnlockFailed) => pb::AuditAction::UnlockFailed,
        Some(AuditAction::AdminCreate) => pb::AuditAction::AdminCreate,
        Some(AuditAction::AdminUpdate) => pb::AuditAction::AdminUpdate,
        Some(AuditAction::AdminDelete) => pb::AuditAction::AdminDelete,
        Some(AuditAction::LogsPurged) => pb::AuditAction::LogsPurged,
        Some(AuditAction::EmergencyUnlock) => pb::AuditAction::EmergencyUnlock,
        Some(AuditAction::DeviceEvent) => pb::AuditAction::DeviceEvent,
        None => pb::AuditAction::Unspecified,
    }
}

pub fn audit_action_from_pb(action: pb::AuditAction) -> Option<AuditAction> {
    AuditAction::ALL
        .into_iter()
        .find(|a| audit_action_to_pb(a.as_str()) == action)
}

/// The stored name of an access method, e.g. "CARD".
pub fn method_name(method: pb::AccessMethod) -> &'static str {
    method.as_str_name().trim_start_matches("ACCESS_METHOD_")
}

pub fn method_from_name(name: &str) -> pb::AccessMethod {
    pb::AccessMethod::from_str_name(&format!("ACCESS_METHOD_{name}"))
        .unwrap_or(pb::AccessMethod::Unspecified)
}

pub fn access_log(record: Record) -> pb::AccessLog {
    pb::AccessLog {
        sequence: record.sequence,
        time: Some(timestamp(record.time)),
        door_id: record.door_id,
        door_name: record.door_name,
        door_type: record.door_type,
        door_location: record.door_location,
        user_id: record.user_id,
        user_name: record.user_name,
        user_email: record.user_email,
        user_role: record.user_role,
        action: audit_action_to_pb(&record.action) as i32,
        method: method_from_name(&record.method) as i32,
        success: record.success,
        reason_code: record.reason_code,
        reason: record.reason,
        rule_id: record.rule_id,
        rule_version: record.rule_version,
        client_ip: record.client_ip,
        request_id: record.request_id,
        target_type: record.target_type,
        target_id: record.target_id,
        metadata_json: record.metadata,
        flagged: record.flagged,
        actor: record.actor,
        hash: hex::encode(record.hash),
        prev_hash: hex::encode(record.prev_hash),
    }
}

pub fn door(view: DoorView) -> pb::Door {
    let effective_time_zone = view.effective_time_zone().to_owned();
    let door = view.door;
    let lock = match (door.lock_account_id, door.lock_id) {
        (Some(account), Some(lock_id)) => Some(pb::LockBinding {
            account_id: account.to_string(),
            lock_id,
        }),
        _ => None,
    };
    pb::Door {
        id: door.id.to_string(),
        property_id: door.property_id.to_string(),
        name: door.name,
        r#type: pb::DoorType::from_str_name(&format!("DOOR_TYPE_{}", door.door_type))
            .unwrap_or(pb::DoorType::Unspecified)
            .into(),
        location: door.location,
        time_zone: door.time_zone.unwrap_or_default(),
        effective_time_zone,
        active: door.active,
        lock,
        status: pb::DoorStatus::from_str_name(&format!("DOOR_STATUS_{}", door.status))
            .unwrap_or(pb::DoorStatus::Unspecified)
            .into(),
        version: door.version,
        create_time: Some(timestamp(door.create_time)),
        update_time: Some(timestamp(door.update_time)),
    }
}

pub fn user(user: User) -> pb::User {
    pb::User {
        id: user.id.to_string(),
        external_id: user.external_id.unwrap_or_default(),
        name: user.name,
        email: user.email,
        roles: user.roles,
        active: user.active,
        version: user.version,
        create_time: Some(timestamp(user.create_time)),
        update_time: Some(timestamp(user.update_time)),
    }
}

pub fn membership(membership: Membership) -> pb::Membership {
    pb::Membership {
        id: membership.id.to_string(),
        user_id: membership.user_id.to_string(),
        status: pb::MembershipStatus::from_str_name(&format!(
            "MEMBERSHIP_STATUS_{}",
            membership.status
        ))
        .unwrap_or(pb::MembershipStatus::Unspecified)
        .into(),
        start_time: Some(timestamp(membership.start_time)),
        end_time: membership.end_time.map(timestamp),
        plan: membership.plan,
        version: membership.version,
        create_time: Some(timestamp(membership.create_time)),
        update_time: Some(timestamp(membership.update_time)),
    }
}

pub fn rule(view: RuleView) -> pb::Rule {
    let rule = view.rule;
    let slots: Vec<StoredSlot> = match serde_json::from_value(rule.time_slots) {
        Ok(slots) => slots,
        Err(error) => {
            // Only this service writes the column; a bad value is a bug worth seeing.
            tracing::error!(rule_id = %rule.id, %error, "stored time slots are malformed");
            Vec::new()
        }
    };
    pb::Rule {
        id: rule.id.to_string(),
        door_id: rule.door_id.to_string(),
        name: rule.name,
        description: rule.description,
        user_ids: view.user_ids.iter().map(ToString::to_string).collect(),
        roles: rule.roles,
        time_slots: slots
            .into_iter()
            .map(|s| pb::TimeSlot {
                day_of_week: s.day_of_week,
                start: s.start,
                end: s.end,
            })
            .collect(),
        valid_from: rule.valid_from.map(timestamp),
        valid_until: rule.valid_until.map(timestamp),
        active: rule.active,
        version: rule.version,
        create_time: Some(timestamp(rule.create_time)),
        update_time: Some(timestamp(rule.update_time)),
    }
}

pub fn door_status(name: &str) -> pb::DoorStatus {
    pb::DoorStatus::from_str_name(&format!("DOOR_STATUS_{name}")).unwrap_or(pb::DoorStatus::Unknown)
}

pub fn door_type(name: &str) -> pb::DoorType {
    pb::DoorType::from_str_name(&format!("DOOR_TYPE_{name}")).unwrap_or(pb::DoorType::Unspecified)
}

/// A door as the snapshot holds it.
pub fn door_entry(id: uuid::Uuid, door: &crate::snapshot::DoorEntry) -> pb::Door {
    pb::Door {
        id: id.to_string(),
        property_id: door.property_id.to_string(),
        name: door.name.clone(),
        r#type: door_type(&door.door_type) as i32,
        location: door.location.clone(),
        time_zone: String::new(),
        effective_time_zone: door.time_zone.clone(),
        active: door.view.active,
        lock: door.lock.map(|(account, lock_id)| pb::LockBinding {
            account_id: account.to_string(),
            lock_id,
        }),
        status: door_status(&door.status) as i32,
        version: 0,
        create_time: None,
        update_time: None,
    }
}
