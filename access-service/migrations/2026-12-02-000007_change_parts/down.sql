CREATE OR REPLACE FUNCTION notify_access_change() RETURNS trigger LANGUAGE plpgsql AS $$
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
