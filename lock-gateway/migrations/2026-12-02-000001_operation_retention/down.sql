DROP INDEX IF EXISTS passcode_operations_create_time_idx;
DROP INDEX IF EXISTS remote_operations_create_time_idx;
