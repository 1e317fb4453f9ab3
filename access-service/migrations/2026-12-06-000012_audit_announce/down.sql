DROP TRIGGER audit_heads_announce ON audit_heads;
DROP FUNCTION announce_audit_append();
