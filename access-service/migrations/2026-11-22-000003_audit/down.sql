DROP FUNCTION purge_audit_log(TEXT, TIMESTAMPTZ);
DROP TABLE audit_checkpoints;
DROP TABLE audit_heads;
DROP TABLE audit_log;
