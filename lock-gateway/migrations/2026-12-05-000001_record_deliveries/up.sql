-- Which delivery of a callback brought a record: a keyed digest of the record, the
-- cloud's serverDate to the millisecond and its place among records alike in that
-- callback. A delivery stored once is a redelivery; another delivery of a record alike
-- is another record (see events::MaskedRecord). NULL for everything else.
ALTER TABLE device_events ADD COLUMN delivery_key BYTEA;

CREATE UNIQUE INDEX device_events_delivery_key
    ON device_events (tenant_id, delivery_key) WHERE delivery_key IS NOT NULL;
