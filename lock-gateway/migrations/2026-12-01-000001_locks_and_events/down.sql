DROP TABLE device_events;
DROP TABLE device_event_heads;
DROP TABLE callback_inbox;
DROP TABLE locks;
ALTER TABLE ttlock_accounts DROP COLUMN next_sync_time;
