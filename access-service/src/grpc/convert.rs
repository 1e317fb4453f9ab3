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
