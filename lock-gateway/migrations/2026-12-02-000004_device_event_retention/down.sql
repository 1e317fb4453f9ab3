DROP INDEX IF EXISTS device_events_receive_time_idx;
