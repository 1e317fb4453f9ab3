ALTER TABLE ttlock_accounts DROP COLUMN token_version, DROP COLUMN token_key_id;
DROP TABLE ttlock_pace;
DROP TABLE gateway_turns;
DROP TABLE gateway_turn_counters;
