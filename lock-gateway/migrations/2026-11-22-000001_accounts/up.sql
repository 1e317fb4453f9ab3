-- TTLock cloud accounts, several per tenant. Credentials and tokens are stored only as
-- AES-256-GCM ciphertext (nonce || ciphertext || tag) under the key named by key_id.
CREATE TABLE ttlock_accounts (
    id                UUID PRIMARY KEY,
    tenant_id         TEXT NOT NULL CHECK (length(tenant_id) BETWEEN 1 AND 128),
    name              TEXT NOT NULL,
    base_url          TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    username          TEXT NOT NULL,
    key_id            TEXT NOT NULL,
    client_secret_enc BYTEA NOT NULL,
    password_md5_enc  BYTEA NOT NULL,
    access_token_enc  BYTEA,
    refresh_token_enc BYTEA,
    ttlock_uid        BIGINT,
    token_expires_at  TIMESTAMPTZ,
    request_id        TEXT,
    create_time       TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT ttlock_accounts_username_key UNIQUE (tenant_id, base_url, username),
    CONSTRAINT ttlock_accounts_request_id_key UNIQUE (tenant_id, request_id)
);

CREATE INDEX ttlock_accounts_tenant_id_idx ON ttlock_accounts (tenant_id, id);
