-- Tenants and their settings. Tenant ids come from the `tenant_id` claim of callers.
CREATE TABLE tenants (
    tenant_id           TEXT PRIMARY KEY CHECK (length(tenant_id) BETWEEN 1 AND 128),
    door_access_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    default_time_zone   TEXT NOT NULL DEFAULT 'UTC',
    version             BIGINT NOT NULL DEFAULT 1,
    update_time         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A place with doors. Ids are UUIDv7, so keyset pages follow creation order.
CREATE TABLE properties (
    id          UUID PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    time_zone   TEXT NOT NULL,
    address     TEXT NOT NULL DEFAULT '',
    version     BIGINT NOT NULL DEFAULT 1,
    request_id  TEXT,
    create_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A retried create with the same request id finds the first result.
    CONSTRAINT properties_request_id_key UNIQUE (tenant_id, request_id)
);

CREATE INDEX properties_tenant_id_idx ON properties (tenant_id, id);
