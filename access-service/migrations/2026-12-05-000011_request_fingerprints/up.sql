-- What each create request id was first used for: a repeat of the same request replays
-- its result, the same id with a different request is refused. The fingerprint is a
-- keyed digest (HMAC under a key derived from ACCESS_CODE_KEY), since a request may
-- carry a chosen access code.
CREATE TABLE request_fingerprints (
    tenant_id    TEXT NOT NULL,
    operation    TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    fingerprint  BYTEA NOT NULL,
    create_time  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, operation, request_id)
);
