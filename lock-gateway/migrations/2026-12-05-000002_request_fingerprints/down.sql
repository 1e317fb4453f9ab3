ALTER TABLE ttlock_accounts DROP COLUMN IF EXISTS request_fingerprint;
ALTER TABLE remote_operations DROP COLUMN IF EXISTS request_fingerprint;
ALTER TABLE passcode_operations DROP COLUMN IF EXISTS request_fingerprint;
