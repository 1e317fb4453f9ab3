-- The retention sweep deletes callbacks processed before its cutoff; unprocessed ones
-- are never in this index and never deleted.
CREATE INDEX callback_inbox_processed_idx ON callback_inbox (process_time)
    WHERE process_time IS NOT NULL;
