-- How each property issues access codes.
ALTER TABLE properties
    ADD COLUMN auto_generate_codes BOOLEAN NOT NULL DEFAULT true,
    ADD COLUMN max_active_codes    INTEGER NOT NULL DEFAULT 0 CHECK (max_active_codes >= 0),
    ADD COLUMN code_length         INTEGER NOT NULL DEFAULT 6 CHECK (code_length BETWEEN 4 AND 9),
    ADD COLUMN check_in_time       TEXT NOT NULL DEFAULT '15:00',
    ADD COLUMN check_out_time      TEXT NOT NULL DEFAULT '11:00',
    ADD COLUMN cleaning_code       BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN cleaning_minutes    INTEGER NOT NULL DEFAULT 180 CHECK (cleaning_minutes BETWEEN 1 AND 1440);

-- Access codes. The code itself is kept only as an HMAC-SHA256 under the server's code
-- key (for matching) and its last two digits (for display).
CREATE TABLE access_codes (
    id                UUID PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    property_id       UUID REFERENCES properties (id) ON DELETE SET NULL,
    grantee_type      TEXT NOT NULL CHECK (grantee_type IN ('USER', 'PROVIDER', 'TENANT', 'GUEST')),
    user_id           UUID REFERENCES users (id) ON DELETE SET NULL,
    grantee_name      TEXT NOT NULL DEFAULT '',
    grantee_contact   TEXT NOT NULL DEFAULT '',
    purpose           TEXT NOT NULL CHECK (purpose IN ('STAY', 'CLEANING', 'MAINTENANCE', 'EMERGENCY', 'OTHER')),
    code_type         TEXT NOT NULL CHECK (code_type IN ('PERMANENT', 'TEMPORARY', 'RECURRING')),
    start_time        TIMESTAMPTZ,
    end_time          TIMESTAMPTZ,
    -- [{"day_of_week":1,"start":"09:00","end":"12:00"}], as rules keep them.
    time_slots        JSONB NOT NULL DEFAULT '[]',
    max_usages        INTEGER NOT NULL DEFAULT 0 CHECK (max_usages >= 0),
    usage_count       INTEGER NOT NULL DEFAULT 0,
    code_hmac         BYTEA NOT NULL,
    code_last_digits  TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'REVOKED', 'EXPIRED', 'EXHAUSTED')),
    booking_reference TEXT,
    request_id        TEXT,
    version           BIGINT NOT NULL DEFAULT 1,
    create_time       TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time       TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoke_time       TIMESTAMPTZ,
    CONSTRAINT access_codes_request_id_key UNIQUE (tenant_id, request_id),
    -- One guest code and one cleaning code per booking.
    CONSTRAINT access_codes_booking_key UNIQUE (tenant_id, booking_reference, purpose),
    CHECK (end_time IS NULL OR start_time IS NULL OR start_time < end_time)
);

CREATE INDEX access_codes_tenant_idx ON access_codes (tenant_id, id);
CREATE INDEX access_codes_active_end_idx ON access_codes (end_time) WHERE status = 'ACTIVE';

-- One row per code per door: where the code stands on that door's lock.
CREATE TABLE access_code_doors (
    tenant_id        TEXT NOT NULL,
    code_id          UUID NOT NULL REFERENCES access_codes (id) ON DELETE CASCADE,
    door_id          UUID NOT NULL REFERENCES doors (id) ON DELETE CASCADE,
    sync_state       TEXT NOT NULL CHECK (sync_state IN ('PENDING', 'SETTING', 'SET', 'FAILED', 'REMOVING', 'REMOVED', 'NOT_APPLICABLE')),
    failure_reason   TEXT NOT NULL DEFAULT '',
    detail           TEXT NOT NULL DEFAULT '',
    -- The lock the code was (or is to be) written to, fixed when the intent is made.
    account_id       UUID,
    lock_id          BIGINT,
    lock_passcode_id BIGINT,
    update_time      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (code_id, door_id)
);

CREATE INDEX access_code_doors_door_idx ON access_code_doors (tenant_id, door_id);

-- The transactional outbox of provisioning: every intent to set, change or remove a
-- code on a lock, written in the same transaction as the change that causes it. Workers
-- claim due rows with FOR UPDATE SKIP LOCKED. The code travels sealed (AES-256-GCM
-- under the server's code key, bound to the row) and is erased once written.
CREATE TABLE provisioning_outbox (
    id              UUID PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    code_id         UUID NOT NULL REFERENCES access_codes (id) ON DELETE CASCADE,
    door_id         UUID NOT NULL,
    intent          TEXT NOT NULL CHECK (intent IN ('SET', 'CHANGE', 'REMOVE')),
    code_sealed     BYTEA,
    -- Not before this instant (the lead time before a window opens), then with backoff.
    due_time        TIMESTAMPTZ NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Bumped after each definite failure: the request id sent to lock-gateway is
    -- (id, generation), so a write interrupted without an answer is asked about, not
    -- repeated.
    generation      INTEGER NOT NULL DEFAULT 0,
    -- A worker holds the row until then.
    lease_until     TIMESTAMPTZ,
    done_time       TIMESTAMPTZ,
    last_error      TEXT NOT NULL DEFAULT '',
    create_time     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX provisioning_outbox_due_idx ON provisioning_outbox (due_time) WHERE done_time IS NULL;
CREATE INDEX provisioning_outbox_code_idx ON provisioning_outbox (code_id, door_id);

-- How far access-service has applied each tenant's lock-gateway device events, and
-- which replica follows them now.
CREATE TABLE device_event_cursors (
    tenant_id   TEXT PRIMARY KEY,
    cursor      BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until TIMESTAMPTZ,
    update_time TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TRIGGER access_codes_notify AFTER INSERT OR UPDATE OR DELETE ON access_codes
    FOR EACH ROW EXECUTE FUNCTION notify_access_change();
CREATE TRIGGER access_code_doors_notify AFTER INSERT OR UPDATE OR DELETE ON access_code_doors
    FOR EACH ROW EXECUTE FUNCTION notify_access_change();
