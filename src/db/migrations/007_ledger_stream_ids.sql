-- 007: each ledger row remembers the stream entry it came from, so the drift
-- audit can compare Redis at one stream position with exactly the ledger rows
-- up to that position, while admissions go on. Rows from before: NULL (older).
ALTER TABLE ledger ADD COLUMN stream_ms bigint, ADD COLUMN stream_seq bigint;
