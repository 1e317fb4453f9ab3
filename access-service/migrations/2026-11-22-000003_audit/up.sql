-- The audit log: append-only, one SHA-256 hash chain per tenant. Each row's hash covers
-- a canonical encoding of every column and the previous row's hash (see
-- src/audit/chain.rs). audit_heads holds each chain's last sequence and hash; appenders
-- lock it, so rows are chained in sequence order.

CREATE TABLE audit_log (
    tenant_id     TEXT NOT NULL,
    sequence      BIGINT NOT NULL CHECK (sequence > 0),
    time          TIMESTAMPTZ NOT NULL,
    actor         TEXT NOT NULL DEFAULT '',
    action        TEXT NOT NULL,
    door_id       TEXT NOT NULL DEFAULT '',
    door_name     TEXT NOT NULL DEFAULT '',
    door_type     TEXT NOT NULL DEFAULT '',
    door_location TEXT NOT NULL DEFAULT '',
    user_id       TEXT NOT NULL DEFAULT '',
    user_name     TEXT NOT NULL DEFAULT '',
    user_email    TEXT NOT NULL DEFAULT '',
    user_role     TEXT NOT NULL DEFAULT '',
    method        TEXT NOT NULL DEFAULT '',
    success       BOOLEAN NOT NULL,
    reason_code   TEXT NOT NULL DEFAULT '',
    reason        TEXT NOT NULL DEFAULT '',
    rule_id       TEXT NOT NULL DEFAULT '',
    rule_version  BIGINT NOT NULL DEFAULT 0,
    client_ip     TEXT NOT NULL DEFAULT '',
    request_id    TEXT NOT NULL DEFAULT '',
    target_type   TEXT NOT NULL DEFAULT '',
    target_id     TEXT NOT NULL DEFAULT '',
    -- Kept as text: the hash covers these exact bytes.
    metadata      TEXT NOT NULL DEFAULT '{}',
    flagged       BOOLEAN NOT NULL DEFAULT FALSE,
    prev_hash     BYTEA NOT NULL,
    hash          BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, sequence)
);
CREATE INDEX audit_log_time_idx ON audit_log (tenant_id, time);
CREATE INDEX audit_log_door_idx ON audit_log (tenant_id, door_id, sequence);
CREATE INDEX audit_log_user_idx ON audit_log (tenant_id, user_id, sequence);
CREATE INDEX audit_log_failures_idx ON audit_log (tenant_id, time) WHERE NOT success;

CREATE TABLE audit_heads (
    tenant_id TEXT PRIMARY KEY,
    sequence  BIGINT NOT NULL,
    hash      BYTEA NOT NULL
);

-- Where a purge cut the chain: the remaining rows verify from this sequence and hash.
CREATE TABLE audit_checkpoints (
    tenant_id     TEXT NOT NULL,
    sequence      BIGINT NOT NULL,
    hash          BYTEA NOT NULL,
    purged_before TIMESTAMPTZ NOT NULL,
    purged_rows   BIGINT NOT NULL,
    time          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, sequence)
);

-- The only way rows leave the log. Runs with its owner's rights, so the service's own
-- role needs no DELETE on audit_log. Removes the oldest rows before p_before (a prefix
-- of the chain) and records the checkpoint first.
CREATE FUNCTION purge_audit_log(p_tenant TEXT, p_before TIMESTAMPTZ)
RETURNS TABLE (purged BIGINT, checkpoint_sequence BIGINT, checkpoint_hash BYTEA)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    v_first_kept BIGINT;
    v_last       BIGINT;
    v_hash       BYTEA;
    v_count      BIGINT;
BEGIN
    -- Appenders hold this row while chaining; purging waits for them.
    PERFORM 1 FROM audit_heads WHERE tenant_id = p_tenant FOR UPDATE;
    SELECT min(l.sequence) INTO v_first_kept
        FROM audit_log l WHERE l.tenant_id = p_tenant AND l.time >= p_before;
    IF v_first_kept IS NULL THEN
        SELECT max(l.sequence) INTO v_last FROM audit_log l WHERE l.tenant_id = p_tenant;
    ELSE
        v_last := v_first_kept - 1;
    END IF;
    SELECT l.hash INTO v_hash FROM audit_log l WHERE l.tenant_id = p_tenant AND l.sequence = v_last;
    IF v_hash IS NULL THEN
        RETURN QUERY SELECT 0::BIGINT, 0::BIGINT, ''::BYTEA;
        RETURN;
    END IF;
    INSERT INTO audit_checkpoints (tenant_id, sequence, hash, purged_before, purged_rows)
        SELECT p_tenant, v_last, v_hash, p_before,
               (SELECT count(*) FROM audit_log l WHERE l.tenant_id = p_tenant AND l.sequence <= v_last);
    DELETE FROM audit_log l WHERE l.tenant_id = p_tenant AND l.sequence <= v_last;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN QUERY SELECT v_count, v_last, v_hash;
END;
$$;

-- The role access-service acts as (SET ROLE on every pooled connection): full rights on
-- its tables except UPDATE, DELETE and TRUNCATE of the audit log and its checkpoints.
DO $$
BEGIN
    CREATE ROLE latchkey_access_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END;
$$;
DO $$
BEGIN
    EXECUTE format('GRANT latchkey_access_app TO %I', current_user);
EXCEPTION WHEN OTHERS THEN NULL;
END;
$$;
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO latchkey_access_app', current_schema());
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO latchkey_access_app', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO latchkey_access_app', current_schema());
END;
$$;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, audit_checkpoints FROM latchkey_access_app;
GRANT EXECUTE ON FUNCTION purge_audit_log(TEXT, TIMESTAMPTZ) TO latchkey_access_app;
