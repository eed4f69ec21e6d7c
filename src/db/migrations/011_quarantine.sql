-- 011: stream entries that no store could take (a poison entry), set aside
-- so that every entry after them still flows. One row per entry. The entry is
-- kept exactly as read: a JSON array [field, value, ...] in text (JSON
-- escapes what text cannot hold, a NUL among them). The drift audit counts
-- the amounts of ledger entries kept here, so it stays exact; an admin
-- replays an entry after a fix (replayed_at, replayed_by).
CREATE TABLE quarantine (
  id              bigserial PRIMARY KEY,
  stream          text NOT NULL CHECK (stream IN ('ledger', 'events')),
  stream_id       text NOT NULL,
  entry           text NOT NULL,
  error           text NOT NULL,
  sqlstate        text,
  quarantined_at  timestamptz NOT NULL DEFAULT now(),
  replayed_at     timestamptz,
  replayed_by     text,
  UNIQUE (stream, stream_id)
);
CREATE INDEX quarantine_waiting ON quarantine (stream, id) WHERE replayed_at IS NULL;
