-- 012: every admin change carries a request id, so its audit row is written
-- once however it gets there: in the change's own transaction, or (when the
-- change was made in Redis and Postgres refused the row at that moment)
-- through the audit outbox stream, drained later. Rows from before: NULL.
ALTER TABLE audit ADD COLUMN request_id text;
CREATE UNIQUE INDEX audit_request_once ON audit (request_id);

-- The audit outbox is a stream like the others: an entry no store will take is quarantined.
ALTER TABLE quarantine DROP CONSTRAINT quarantine_stream_check;
ALTER TABLE quarantine ADD CONSTRAINT quarantine_stream_check CHECK (stream IN ('ledger', 'events', 'audit'));
