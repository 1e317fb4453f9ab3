// Table definitions matching `migrations/`.

diesel::table! {
    tenants (tenant_id) {
        tenant_id -> Text,
        door_access_enabled -> Bool,
        default_time_zone -> Text,
        version -> Int8,
        update_time -> Timestamptz,
    }
}

diesel::table! {
    properties (id) {
        id -> Uuid,
        tenant_id -> Text,
        name -> Text,
        time_zone -> Text,
        address -> Text,
        version -> Int8,
        request_id -> Nullable<Text>,
        create_time -> Timestamptz,
        update_time -> Timestamptz,
    }
}
