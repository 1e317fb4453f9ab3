DROP INDEX IF EXISTS audit_log_ip_failures_idx;
DROP INDEX IF EXISTS audit_log_user_failures_idx;
