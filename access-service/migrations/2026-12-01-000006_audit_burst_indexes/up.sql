-- Live burst detection reads the latest failures of each user and address a batch holds;
-- these keep that a short range scan however many failures the tenant has.
CREATE INDEX IF NOT EXISTS audit_log_user_failures_idx
    ON audit_log (tenant_id, user_id, time) WHERE NOT success;
CREATE INDEX IF NOT EXISTS audit_log_ip_failures_idx
    ON audit_log (tenant_id, client_ip, time) WHERE NOT success;
