DROP INDEX IF EXISTS callback_inbox_processed_idx;
