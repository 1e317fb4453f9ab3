// Table definitions matching `migrations/`.

diesel::table! {
    ttlock_accounts (id) {
        id -> Uuid,
        tenant_id -> Text,
        name -> Text,
        base_url -> Text,
        client_id -> Text,
        username -> Text,
        key_id -> Text,
        client_secret_enc -> Bytea,
        password_md5_enc -> Bytea,
        access_token_enc -> Nullable<Bytea>,
        refresh_token_enc -> Nullable<Bytea>,
        ttlock_uid -> Nullable<Int8>,
        token_expires_at -> Nullable<Timestamptz>,
        request_id -> Nullable<Text>,
        create_time -> Timestamptz,
        update_time -> Timestamptz,
        next_sync_time -> Timestamptz,
        request_fingerprint -> Nullable<Bytea>,
        token_key_id -> Nullable<Text>,
        token_version -> Int8,
    }
}

diesel::table! {
    remote_operations (tenant_id, request_id) {
        tenant_id -> Text,
        request_id -> Text,
        operation -> Text,
        account_id -> Uuid,
        lock_id -> Int8,
        outcome -> Nullable<Text>,
        errcode -> Int4,
        latency_ms -> Int8,
        detail -> Text,
        create_time -> Timestamptz,
        finish_time -> Nullable<Timestamptz>,
        request_fingerprint -> Nullable<Bytea>,
    }
}

diesel::table! {
    locks (tenant_id, account_id, lock_id) {
        tenant_id -> Text,
        account_id -> Uuid,
        lock_id -> Int8,
        alias -> Text,
        name -> Text,
        mac -> Text,
        battery_percent -> Int4,
        battery_time -> Nullable<Timestamptz>,
        has_gateway -> Bool,
        online -> Bool,
        remote_capable -> Bool,
        gateway_ids -> Array<Int8>,
        model -> Text,
        hardware -> Text,
        firmware -> Text,
        timezone_offset_ms -> Int8,
        auto_lock_secs -> Int4,
        bolt -> Text,
        bolt_time -> Nullable<Timestamptz>,
        records_until_ms -> Nullable<Int8>,
        last_sync_time -> Timestamptz,
    }
}

diesel::table! {
    callback_inbox (id) {
        id -> Int8,
        dedupe_key -> Bytea,
        notify_type -> Nullable<Int4>,
        lock_id -> Nullable<Int8>,
        payload -> Jsonb,
        receive_time -> Timestamptz,
        process_time -> Nullable<Timestamptz>,
        outcome -> Nullable<Text>,
    }
}

diesel::table! {
    device_event_heads (tenant_id) {
        tenant_id -> Text,
        last_cursor -> Int8,
    }
}

diesel::table! {
    device_events (tenant_id, cursor) {
        tenant_id -> Text,
        cursor -> Int8,
        account_id -> Nullable<Uuid>,
        lock_id -> Int8,
        kind -> Text,
        source -> Text,
        success -> Bool,
        credential -> Text,
        username -> Text,
        battery_percent -> Int4,
        record_type -> Int4,
        passcode_id -> Int8,
        gateway_id -> Int8,
        occur_time -> Timestamptz,
        receive_time -> Timestamptz,
        detail -> Text,
        dedupe_key -> Nullable<Bytea>,
        delivery_key -> Nullable<Bytea>,
    }
}

diesel::table! {
    passcode_operations (tenant_id, request_id) {
        tenant_id -> Text,
        request_id -> Text,
        operation -> Text,
        account_id -> Uuid,
        lock_id -> Int8,
        passcode_id -> Nullable<Int8>,
        outcome -> Nullable<Text>,
        errcode -> Int4,
        reason -> Text,
        retryable -> Bool,
        detail -> Text,
        latency_ms -> Int8,
        create_time -> Timestamptz,
        finish_time -> Nullable<Timestamptz>,
        request_fingerprint -> Nullable<Bytea>,
    }
}

diesel::table! {
    gateway_secrets (name) {
        name -> Text,
        key_id -> Text,
        sealed -> Bytea,
        update_time -> Timestamptz,
    }
}

diesel::joinable!(locks -> ttlock_accounts (account_id));
diesel::allow_tables_to_appear_in_same_query!(ttlock_accounts, locks);
