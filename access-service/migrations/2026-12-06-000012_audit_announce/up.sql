-- Announces every run appended to a tenant's audit log on `latchkey_audit`, with the
-- tenant as the payload: each append moves the tenant's chain head once, and the
-- announcement is delivered at commit, after the rows are visible. Event streams on
-- every replica read the new rows from there. PostgreSQL folds a transaction's
-- identical announcements into one.
CREATE FUNCTION announce_audit_append() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('latchkey_audit', NEW.tenant_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER audit_heads_announce
    AFTER INSERT OR UPDATE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION announce_audit_append();
