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
        auto_generate_codes -> Bool,
        max_active_codes -> Int4,
        code_length -> Int4,
        check_in_time -> Text,
        check_out_time -> Text,
        cleaning_code -> Bool,
        cleaning_minutes -> Int4,
    }
}

diesel::table! {
    doors (id) {
        id -> Uuid,
        tenant_id -> Text,
        property_id -> Uuid,
        name -> Text,
        door_type -> Text,
        location -> Text,
        time_zone -> Nullable<Text>,
        active -> Bool,
        lock_account_id -> Nullable<Uuid>,
        lock_id -> Nullable<Int8>,
        status -> Text,
        status_time -> Nullable<Timestamptz>,
        version -> Int8,
        request_id -> Nullable<Text>,
        create_time -> Timestamptz,
        update_time -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        tenant_id -> Text,
        external_id -> Nullable<Text>,
        name -> Text,
        email -> Text,
        roles -> Array<Text>,
        active -> Bool,
        version -> Int8,
        request_id -> Nullable<Text>,
        create_time -> Timestamptz,
        update_time -> Timestamptz,
    }
}

diesel::table! {
    memberships (id) {
        id -> Uuid,
        tenant_id -> Text,
        user_id -> Uuid,
        status -> Text,
        start_time -> Timestamptz,
        end_time -> Nullable<Timestamptz>,
        plan -> Text,
        version -> Int8,
        request_id -> Nullable<Text>,
        create_time -> Timestamptz,
        update_time -> Timestamptz,
    }
}

diesel::table! {
    rules (id) {
        id -> Uuid,
        tenant_id -> Text,
        door_id -> Uuid,
        name -> Text,
        description -> Text,
        roles -> Array<Text>,
        time_slots -> Jsonb,
        valid_from -> Nullable<Timestamptz>,
        valid_until -> Nullable<Timestamptz>,
        active -> Bool,
        version -> Int8,
        request_id -> Nullable<Text>,
        create_time -> Timestamptz,
        update_time -> Timestamptz,
    }
}

diesel::table! {
    rule_users (rule_id, user_id) {
        rule_id -> Uuid,
        user_id -> Uuid,
        tenant_id -> Text,
    }
}

diesel::table! {
    audit_log (tenant_id, sequence) {
        tenant_id -> Text,
        sequence -> Int8,
        time -> Timestamptz,
        actor -> Text,
        action -> Text,
        door_id -> Text,
        door_name -> Text,
        door_type -> Text,
        door_location -> Text,
        user_id -> Text,
        user_name -> Text,
        user_email -> Text,
        user_role -> Text,
        method -> Text,
        success -> Bool,
        reason_code -> Text,
        reason -> Text,
        rule_id -> Text,
        rule_version -> Int8,
        client_ip -> Text,
        request_id -> Text,
        target_type -> Text,
        target_id -> Text,
        metadata -> Text,
        flagged -> Bool,
        prev_hash -> Bytea,
        hash -> Bytea,
    }
}

diesel::table! {
    audit_heads (tenant_id) {
        tenant_id -> Text,
        sequence -> Int8,
        hash -> Bytea,
    }
}

diesel::table! {
    audit_checkpoints (tenant_id, sequence) {
        tenant_id -> Text,
        sequence -> Int8,
        hash -> Bytea,
        purged_before -> Timestamptz,
        purged_rows -> Int8,
        time -> Timestamptz,
    }
}

diesel::table! {
    access_codes (id) {
        id -> Uuid,
        tenant_id -> Text,
        property_id -> Nullable<Uuid>,
        grantee_type -> Text,
        user_id -> Nullable<Uuid>,
        grantee_name -> Text,
        grantee_contact -> Text,
        purpose -> Text,
        code_type -> Text,
        start_time -> Nullable<Timestamptz>,
        end_time -> Nullable<Timestamptz>,
        time_slots -> Jsonb,
        max_usages -> Int4,
        usage_count -> Int4,
        code_hmac -> Bytea,
        code_last_digits -> Text,
        status -> Text,
        booking_reference -> Nullable<Text>,
        request_id -> Nullable<Text>,
        version -> Int8,
        create_time -> Timestamptz,
        update_time -> Timestamptz,
        revoke_time -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    access_code_doors (code_id, door_id) {
        tenant_id -> Text,
        code_id -> Uuid,
        door_id -> Uuid,
        sync_state -> Text,
        failure_reason -> Text,
        detail -> Text,
        account_id -> Nullable<Uuid>,
        lock_id -> Nullable<Int8>,
        lock_passcode_id -> Nullable<Int8>,
        update_time -> Timestamptz,
    }
}

diesel::table! {
    provisioning_outbox (id) {
        id -> Uuid,
        tenant_id -> Text,
        code_id -> Uuid,
        door_id -> Uuid,
        intent -> Text,
        code_sealed -> Nullable<Bytea>,
        due_time -> Timestamptz,
        attempts -> Int4,
        generation -> Int4,
        lease_until -> Nullable<Timestamptz>,
        done_time -> Nullable<Timestamptz>,
        last_error -> Text,
        create_time -> Timestamptz,
    }
}

diesel::table! {
    device_event_cursors (tenant_id) {
        tenant_id -> Text,
        cursor -> Int8,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamptz>,
        update_time -> Timestamptz,
    }
}

diesel::joinable!(access_code_doors -> access_codes (code_id));
diesel::joinable!(access_code_doors -> doors (door_id));
diesel::joinable!(doors -> properties (property_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(rules -> doors (door_id));
diesel::joinable!(rule_users -> rules (rule_id));
diesel::joinable!(rule_users -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    properties,
    doors,
    users,
    memberships,
    rules,
    rule_users,
    audit_log,
    audit_heads,
    audit_checkpoints,
    access_codes,
    access_code_doors,
    provisioning_outbox,
    device_event_cursors,
);

diesel::table! {
    unlock_requests (tenant_id, request_id) {
        tenant_id -> Text,
        request_id -> Text,
        fingerprint -> Bytea,
        response -> Nullable<Bytea>,
        finished -> Bool,
        create_time -> Timestamptz,
    }
}

diesel::table! {
    request_fingerprints (tenant_id, operation, request_id) {
        tenant_id -> Text,
        operation -> Text,
        request_id -> Text,
        fingerprint -> Bytea,
        create_time -> Timestamptz,
    }
}
