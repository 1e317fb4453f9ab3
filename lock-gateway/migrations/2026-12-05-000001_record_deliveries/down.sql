DROP INDEX IF EXISTS device_events_delivery_key;
ALTER TABLE device_events DROP COLUMN IF EXISTS delivery_key;
