-- One row per remote lock or unlock request id: the first call claims it before TTLock
-- is asked, so a repeated id replays the first outcome and never actuates twice.
CREATE TABLE remote_operations (
    tenant_id   TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    operation   TEXT NOT NULL CHECK (operation IN ('UNLOCK', 'LOCK')),
    account_id  UUID NOT NULL,
    lock_id     BIGINT NOT NULL,
    -- NULL while the call is in flight (or ended without an answer).
    outcome     TEXT CHECK (outcome IN ('CONFIRMED', 'FAILED', 'UNCONFIRMED')),
    errcode     INTEGER NOT NULL DEFAULT 0,
    latency_ms  BIGINT NOT NULL DEFAULT 0,
    detail      TEXT NOT NULL DEFAULT '',
    create_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    finish_time TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, request_id)
);
