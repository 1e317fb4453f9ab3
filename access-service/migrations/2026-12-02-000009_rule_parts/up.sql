-- A rule's change names the rule after its door, `rules:<door>/<rule>:<tenant>`, so a
-- replica reads that rule again by id instead of every rule of its door. Replicas of
-- the release before read such a payload as "every rule changed" and reread the
-- tenant's rules: correct, only dearer, while a rolling upgrade runs beside them.
CREATE OR REPLACE FUNCTION notify_access_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_row  RECORD;
    v_part TEXT;
    v_door TEXT := '';
BEGIN
    IF TG_OP = 'DELETE' THEN
        v_row := OLD;
    ELSE
        v_row := NEW;
    END IF;
    -- Identical notifications in one transaction are delivered once.
    PERFORM pg_notify('latchkey_access_changes', v_row.tenant_id);
    CASE TG_TABLE_NAME
        WHEN 'tenants', 'properties', 'doors' THEN v_part := 'doors';
        WHEN 'users' THEN v_part := 'users';
        WHEN 'memberships' THEN v_part := 'memberships';
        WHEN 'access_codes', 'access_code_doors' THEN v_part := 'codes';
        WHEN 'rules' THEN
            v_part := 'rules';
            v_door := v_row.door_id::TEXT || '/' || v_row.id::TEXT;
            IF TG_OP = 'UPDATE' THEN
                IF OLD.door_id IS DISTINCT FROM NEW.door_id THEN
                    PERFORM pg_notify('latchkey_access_parts',
                                      'rules:' || OLD.door_id::TEXT || '/' || OLD.id::TEXT
                                      || ':' || OLD.tenant_id);
                END IF;
            END IF;
        WHEN 'rule_users' THEN
            v_part := 'rules';
            SELECT door_id::TEXT || '/' || id::TEXT INTO v_door FROM rules WHERE id = v_row.rule_id;
            -- The row's rule always exists while the row does; when this transaction
            -- cannot see it, the rule was deleted here and its own trigger named its door.
            IF NOT FOUND THEN
                RETURN NULL;
            END IF;
        ELSE
            v_part := 'all';
    END CASE;
    PERFORM pg_notify('latchkey_access_parts', v_part || ':' || v_door || ':' || v_row.tenant_id);
    RETURN NULL;
END;
$$;
