-- Doors, users, memberships and access rules. Every table is scoped by tenant_id, and
-- every change notifies `latchkey_access_changes` with the tenant id, so each replica's
-- in-memory snapshot of that tenant is rebuilt (delivered on commit).

CREATE TABLE doors (
    id              UUID PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    property_id     UUID NOT NULL REFERENCES properties (id),
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    door_type       TEXT NOT NULL CHECK (door_type IN ('ENTRANCE', 'FACILITY', 'ROOM', 'UNIT', 'GATE', 'OTHER')),
    location        TEXT NOT NULL DEFAULT '',
    -- NULL: the property's zone.
    time_zone       TEXT,
    active          BOOLEAN NOT NULL DEFAULT TRUE,
    lock_account_id UUID,
    lock_id         BIGINT,
    status          TEXT NOT NULL DEFAULT 'UNKNOWN'
                    CHECK (status IN ('UNKNOWN', 'LOCKED', 'UNLOCKED', 'OFFLINE', 'LOW_BATTERY')),
    status_time     TIMESTAMPTZ,
    version         BIGINT NOT NULL DEFAULT 1,
    request_id      TEXT,
    create_time     TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT doors_request_id_key UNIQUE (tenant_id, request_id),
    CONSTRAINT doors_lock_binding_check CHECK ((lock_account_id IS NULL) = (lock_id IS NULL))
);
CREATE INDEX doors_tenant_id_idx ON doors (tenant_id, id);
CREATE INDEX doors_property_id_idx ON doors (property_id);
-- One door per lock.
CREATE UNIQUE INDEX doors_lock_key ON doors (tenant_id, lock_account_id, lock_id) WHERE lock_id IS NOT NULL;

CREATE TABLE users (
    id          UUID PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    external_id TEXT,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email       TEXT NOT NULL DEFAULT '',
    roles       TEXT[] NOT NULL DEFAULT '{}',
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    version     BIGINT NOT NULL DEFAULT 1,
    request_id  TEXT,
    create_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT users_request_id_key UNIQUE (tenant_id, request_id),
    CONSTRAINT users_external_id_key UNIQUE (tenant_id, external_id)
);
CREATE INDEX users_tenant_id_idx ON users (tenant_id, id);

CREATE TABLE memberships (
    id          UUID PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status      TEXT NOT NULL CHECK (status IN ('ACTIVE', 'FROZEN', 'SUSPENDED', 'CANCELLED')),
    start_time  TIMESTAMPTZ NOT NULL,
    end_time    TIMESTAMPTZ,
    plan        TEXT NOT NULL DEFAULT '',
    version     BIGINT NOT NULL DEFAULT 1,
    request_id  TEXT,
    create_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT memberships_request_id_key UNIQUE (tenant_id, request_id),
    CONSTRAINT memberships_window_check CHECK (end_time IS NULL OR end_time > start_time)
);
CREATE INDEX memberships_user_id_idx ON memberships (tenant_id, user_id);

CREATE TABLE rules (
    id          UUID PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    door_id     UUID NOT NULL REFERENCES doors (id) ON DELETE CASCADE,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description TEXT NOT NULL DEFAULT '',
    roles       TEXT[] NOT NULL DEFAULT '{}',
    -- [{"day_of_week": 5, "start": "22:00", "end": "06:00"}, ...]; empty: any time.
    time_slots  JSONB NOT NULL DEFAULT '[]',
    valid_from  TIMESTAMPTZ,
    valid_until TIMESTAMPTZ,
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    version     BIGINT NOT NULL DEFAULT 1,
    request_id  TEXT,
    create_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT rules_request_id_key UNIQUE (tenant_id, request_id),
    CONSTRAINT rules_validity_check CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_until > valid_from)
);
CREATE INDEX rules_door_id_idx ON rules (tenant_id, door_id, id);

CREATE TABLE rule_users (
    rule_id   UUID NOT NULL REFERENCES rules (id) ON DELETE CASCADE,
    user_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    PRIMARY KEY (rule_id, user_id)
);
CREATE INDEX rule_users_user_id_idx ON rule_users (user_id);

CREATE FUNCTION notify_access_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Identical notifications in one transaction are delivered once.
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('latchkey_access_changes', OLD.tenant_id);
    ELSE
        PERFORM pg_notify('latchkey_access_changes', NEW.tenant_id);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tenants_notify AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION notify_access_change();
CREATE TRIGGER properties_notify AFTER INSERT OR UPDATE OR DELETE ON properties
    FOR EACH ROW EXECUTE FUNCTION notify_access_change();
CREATE TRIGGER doors_notify AFTER INSERT OR UPDATE OR DELETE ON doors
    FOR EACH ROW EXECUTE FUNCTION notify_access_change();
CREATE TRIGGER users_notify AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION notify_access_change();
CREATE TRIGGER memberships_notify AFTER INSERT OR UPDATE OR DELETE ON memberships
    FOR EACH ROW EXECUTE FUNCTION notify_access_change();
CREATE TRIGGER rules_notify AFTER INSERT OR UPDATE OR DELETE ON rules
    FOR EACH ROW EXECUTE FUNCTION notify_access_change();
CREATE TRIGGER rule_users_notify AFTER INSERT OR UPDATE OR DELETE ON rule_users
    FOR EACH ROW EXECUTE FUNCTION notify_access_change();
