-- The retention sweep forgets request ids by age; these keep each sweep a range scan
-- over what it deletes however many claims are kept.
CREATE INDEX remote_operations_create_time_idx ON remote_operations (create_time);
CREATE INDEX passcode_operations_create_time_idx ON passcode_operations (create_time);
