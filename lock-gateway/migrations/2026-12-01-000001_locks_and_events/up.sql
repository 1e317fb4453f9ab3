-- When each account is next due for its periodic lock sync. Replicas claim due accounts
-- with FOR UPDATE SKIP LOCKED and push this forward, so each sync runs once.
ALTER TABLE ttlock_accounts ADD COLUMN next_sync_time TIMESTAMPTZ NOT NULL DEFAULT now();

-- Locks as last read from TTLock, per account. Written only by syncs and device events.
CREATE TABLE locks (
    tenant_id          TEXT NOT NULL,
    account_id         UUID NOT NULL REFERENCES ttlock_accounts (id) ON DELETE CASCADE,
    lock_id            BIGINT NOT NULL,
    alias              TEXT NOT NULL DEFAULT '',
    name               TEXT NOT NULL DEFAULT '',
    mac                TEXT NOT NULL DEFAULT '',
    battery_percent    INTEGER NOT NULL DEFAULT -1,
    battery_time       TIMESTAMPTZ,
    has_gateway        BOOLEAN NOT NULL DEFAULT false,
    online             BOOLEAN NOT NULL DEFAULT false,
    remote_capable     BOOLEAN NOT NULL DEFAULT false,
    gateway_ids        BIGINT[] NOT NULL DEFAULT '{}',
    model              TEXT NOT NULL DEFAULT '',
    hardware           TEXT NOT NULL DEFAULT '',
    firmware           TEXT NOT NULL DEFAULT '',
    timezone_offset_ms BIGINT NOT NULL DEFAULT 0,
    -- Seconds after an unlock the lock throws its bolt again; 0 when it does not.
    auto_lock_secs     INTEGER NOT NULL DEFAULT 0,
    -- The bolt as the last unlock or lock event left it.
    bolt               TEXT NOT NULL DEFAULT 'UNKNOWN' CHECK (bolt IN ('LOCKED', 'UNLOCKED', 'UNKNOWN')),
    bolt_time          TIMESTAMPTZ,
    -- Lock-clock milliseconds of the newest record read from TTLock.
    records_until_ms   BIGINT,
    last_sync_time     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, account_id, lock_id)
);

-- Callbacks carry only TTLock's lock id.
CREATE INDEX locks_lock_id_idx ON locks (lock_id);

-- Every callback as it arrived, stored before it is acknowledged. Credentials inside are
-- masked; dedupe_key is a keyed digest of the raw body, so a redelivery is stored once.
CREATE TABLE callback_inbox (
    id           BIGSERIAL PRIMARY KEY,
    dedupe_key   BYTEA NOT NULL UNIQUE,
    notify_type  INTEGER,
    lock_id      BIGINT,
    payload      JSONB NOT NULL,
    receive_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set once published as device events, or found to name no known lock.
    process_time TIMESTAMPTZ,
    outcome      TEXT CHECK (outcome IN ('PUBLISHED', 'UNROUTED'))
);

CREATE INDEX callback_inbox_pending_idx ON callback_inbox (id) WHERE process_time IS NULL;
CREATE INDEX callback_inbox_unrouted_idx ON callback_inbox (lock_id) WHERE outcome = 'UNROUTED';

-- The last cursor of each tenant's events. Appends lock this row, so cursors are handed
-- out and committed in one order and a reader after cursor N never misses a later one.
CREATE TABLE device_event_heads (
    tenant_id   TEXT PRIMARY KEY,
    last_cursor BIGINT NOT NULL
);

CREATE TABLE device_events (
    tenant_id       TEXT NOT NULL,
    cursor          BIGINT NOT NULL,
    account_id      UUID,
    lock_id         BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    source          TEXT NOT NULL,
    success         BOOLEAN NOT NULL,
    credential      TEXT NOT NULL DEFAULT '',
    username        TEXT NOT NULL DEFAULT '',
    battery_percent INTEGER NOT NULL DEFAULT -1,
    record_type     INTEGER NOT NULL DEFAULT 0,
    passcode_id     BIGINT NOT NULL DEFAULT 0,
    gateway_id      BIGINT NOT NULL DEFAULT 0,
    occur_time      TIMESTAMPTZ NOT NULL,
    receive_time    TIMESTAMPTZ NOT NULL DEFAULT now(),
    detail          TEXT NOT NULL DEFAULT '',
    -- Keyed digest of what identifies a record, so one record read both from a callback
    -- and from the lock's records becomes one event.
    dedupe_key      BYTEA,
    PRIMARY KEY (tenant_id, cursor),
    CONSTRAINT device_events_dedupe_key UNIQUE (tenant_id, dedupe_key)
);
