-- Keys the gateway makes for itself, sealed like TTLock secrets: the digest key that
-- de-duplicates records and callbacks lives here so that it outlives rotations of the
-- encryption key.
CREATE TABLE gateway_secrets (
    name        TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,
    sealed      BYTEA NOT NULL,
    update_time TIMESTAMPTZ NOT NULL DEFAULT now()
);
