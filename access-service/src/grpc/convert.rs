//! Conversions between stored rows and protobuf messages.

use latchkey::pb::access::v1 as pb;
use latchkey::pb::timestamp;

use crate::db::properties::Property;
use crate::db::tenants::Tenant;

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
