-- One row per passcode write request id (create, change, delete): the first call claims
-- it before TTLock is asked, so a repeated id replays the first outcome and the lock is
-- written once. The code itself is never stored, not even hashed: a short code's hash
-- is as good as the code, and idempotency needs only the request id.
CREATE TABLE passcode_operations (
    tenant_id   TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    operation   TEXT NOT NULL CHECK (operation IN ('CREATE', 'CHANGE', 'DELETE')),
    account_id  UUID NOT NULL,
    lock_id     BIGINT NOT NULL,
    -- TTLock's keyboardPwdId: given for change and delete, learnt on a create's success.
    passcode_id BIGINT,
    -- NULL while the call is in flight (or ended without an answer).
    outcome     TEXT CHECK (outcome IN ('DONE', 'FAILED', 'UNCONFIRMED')),
    errcode     INTEGER NOT NULL DEFAULT 0,
    reason      TEXT NOT NULL DEFAULT '',
    retryable   BOOLEAN NOT NULL DEFAULT false,
    detail      TEXT NOT NULL DEFAULT '',
    latency_ms  BIGINT NOT NULL DEFAULT 0,
    create_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    finish_time TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, request_id)
);
