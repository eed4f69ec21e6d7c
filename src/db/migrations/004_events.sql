-- 004: the event log (alerts), webhooks, warning thresholds per limit.

-- Percents of a limit that raise THRESHOLD_CROSSED; NULL = the default (75, 90, 100).
ALTER TABLE limits ADD COLUMN thresholds integer[];

-- One row per event from the events stream (the stream id is unique) or
-- emitted by a process (dedupe_key makes a repeated emit a no-op).
CREATE TABLE events (
  id          bigserial PRIMARY KEY,
  stream_id   text UNIQUE,
  dedupe_key  text UNIQUE,
  type        text NOT NULL,
  version     integer NOT NULL,
  at          timestamptz NOT NULL,
  data        jsonb NOT NULL,
  acked_at    timestamptz,
  acked_by    text
);
CREATE INDEX events_type_at ON events (type, at);
CREATE INDEX events_unacked ON events (at) WHERE acked_at IS NULL;

-- Where events are delivered. The secret signs each request (HMAC-SHA256);
-- it is shown once, when the webhook is created, and never logged.
CREATE TABLE webhooks (
  id          text PRIMARY KEY,
  url         text NOT NULL,
  secret      text NOT NULL,
  -- Event types delivered; empty means all.
  types       text[] NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now()
);
