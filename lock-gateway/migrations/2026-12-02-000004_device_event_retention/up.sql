-- The retention sweep deletes device events received before its cutoff.
CREATE INDEX device_events_receive_time_idx ON device_events (receive_time);
