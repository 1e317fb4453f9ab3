-- Appends a run of one tenant's chained rows in one statement. The rows go in, and the
-- chain head moves to the last of them, only if the head is still the row the first one
-- links to; otherwise nothing is written and the result is FALSE. Called inside a
-- transaction that already holds the head (administrative changes, and the writer after
-- a conflict), it always appends; called on its own, it lets the writer chain rows after
-- the head it last wrote without first reading the head back, and lets the next batch
-- wait inside PostgreSQL for the one before it to commit.
CREATE OR REPLACE FUNCTION append_audit_rows(
    p_tenant_id     TEXT[],
    p_sequence      BIGINT[],
    p_time          TIMESTAMPTZ[],
    p_actor         TEXT[],
    p_action        TEXT[],
    p_door_id       TEXT[],
    p_door_name     TEXT[],
    p_door_type     TEXT[],
    p_door_location TEXT[],
    p_user_id       TEXT[],
    p_user_name     TEXT[],
    p_user_email    TEXT[],
    p_user_role     TEXT[],
    p_method        TEXT[],
    p_success       BOOLEAN[],
    p_reason_code   TEXT[],
    p_reason        TEXT[],
    p_rule_id       TEXT[],
    p_rule_version  BIGINT[],
    p_client_ip     TEXT[],
    p_request_id    TEXT[],
    p_target_type   TEXT[],
    p_target_id     TEXT[],
    p_metadata      TEXT[],
    p_flagged       BOOLEAN[],
    p_prev_hash     BYTEA[],
    p_hash          BYTEA[]
) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
DECLARE
    v_rows INT := cardinality(p_sequence);
BEGIN
    IF v_rows = 0 THEN
        RETURN TRUE;
    END IF;
    -- One tenant, consecutive sequences, each row linked to the one before it.
    IF NOT (p_tenant_id <@ ARRAY[p_tenant_id[1]]
            AND p_sequence[v_rows] - p_sequence[1] = v_rows - 1
            AND p_prev_hash[2:v_rows] = p_hash[1:v_rows - 1]) THEN
        RAISE EXCEPTION 'audit rows are not one linked run of one tenant'
            USING ERRCODE = 'data_exception';
    END IF;
    PERFORM 1 FROM audit_heads
        WHERE tenant_id = p_tenant_id[1]
          AND sequence = p_sequence[1] - 1
          AND hash = p_prev_hash[1]
        FOR UPDATE;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    INSERT INTO audit_log (tenant_id, sequence, time, actor, action, door_id, door_name,
        door_type, door_location, user_id, user_name, user_email, user_role, method,
        success, reason_code, reason, rule_id, rule_version, client_ip, request_id,
        target_type, target_id, metadata, flagged, prev_hash, hash)
    SELECT * FROM unnest(p_tenant_id, p_sequence, p_time, p_actor, p_action, p_door_id,
        p_door_name, p_door_type, p_door_location, p_user_id, p_user_name, p_user_email,
        p_user_role, p_method, p_success, p_reason_code, p_reason, p_rule_id,
        p_rule_version, p_client_ip, p_request_id, p_target_type, p_target_id, p_metadata,
        p_flagged, p_prev_hash, p_hash);
    UPDATE audit_heads SET sequence = p_sequence[v_rows], hash = p_hash[v_rows]
        WHERE tenant_id = p_tenant_id[1];
    RETURN TRUE;
END;
$$;

GRANT EXECUTE ON FUNCTION append_audit_rows(TEXT[], BIGINT[], TIMESTAMPTZ[], TEXT[], TEXT[],
    TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], BOOLEAN[], TEXT[],
    TEXT[], TEXT[], BIGINT[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], BOOLEAN[], BYTEA[],
    BYTEA[]) TO latchkey_access_app;
