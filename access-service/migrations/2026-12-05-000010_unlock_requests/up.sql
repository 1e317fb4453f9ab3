-- Unlock requests by request id: a repeated id answers the first call's result and
-- writes nothing new; an id reused for a different request is refused.
CREATE TABLE unlock_requests (
    tenant_id    TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    -- Keyed digest (HMAC under a key derived from ACCESS_CODE_KEY, as for creates) of the
    -- request as first made (operation, caller, door, user, address, reason): a repeat
    -- must match it.
    fingerprint  BYTEA NOT NULL,
    -- The encoded answer: first with the outcome not yet known, then final.
    response     BYTEA,
    finished     BOOLEAN NOT NULL DEFAULT false,
    create_time  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX unlock_requests_age_idx ON unlock_requests (create_time);
