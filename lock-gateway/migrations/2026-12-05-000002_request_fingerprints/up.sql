-- The fingerprint of the request that claimed each request id: HMAC-SHA256 under the
-- gateway's digest key (gateway_secrets) of everything the request asked for, so the
-- same id sent with another request (another code, name, window, lock...) is refused
-- as REQUEST_ID_REUSED instead of answered with the first request's outcome. The code
-- and the credentials are part of what is digested, yet without the key no guess can
-- be tested against it, as one could against a plain hash of a 4 to 9 digit code.
-- NULL on claims made before: those are compared by their columns, as they were.
ALTER TABLE passcode_operations ADD COLUMN request_fingerprint BYTEA;
ALTER TABLE remote_operations ADD COLUMN request_fingerprint BYTEA;
ALTER TABLE ttlock_accounts ADD COLUMN request_fingerprint BYTEA;
