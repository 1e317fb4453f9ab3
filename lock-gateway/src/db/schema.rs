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
    }
}
