-- 020: a held job's owner (or a manager of its project) asks for an override
-- or a budget raise; a manager or admin approves (the job is admitted as an
-- override: src/admin/held.ts) or denies with a reason the requester sees.
-- A request whose job left the held state some other way (released,
-- cancelled, overridden directly) is closed by itself, with a note.
-- `kind` is what was asked for; approving either admits this one job as an
-- override (a raise of the limit itself is a separate change, PUT budget).
-- project and user_name are the job's when asked: listings are scoped by them.
-- decided_at is when the request stopped being open, whichever way.
CREATE TABLE override_requests (
  id               bigserial PRIMARY KEY,
  job_id           text NOT NULL,
  project          text NOT NULL,
  user_name        text NOT NULL,
  kind             text NOT NULL CHECK (kind IN ('override', 'raise')),
  reason           text NOT NULL,
  state            text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'approved', 'denied', 'closed')),
  requested_by     text NOT NULL,
  requested_via    text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  decided_by       text,
  decided_via      text,
  decided_at       timestamptz,
  decision_reason  text,
  closed_note      text,
  CHECK ((state = 'open') = (decided_at IS NULL))
);
-- At most one open request per job: a second one is refused naming the first.
CREATE UNIQUE INDEX override_requests_open_job ON override_requests (job_id) WHERE state = 'open';
CREATE INDEX override_requests_project ON override_requests (project, state);
CREATE INDEX override_requests_user ON override_requests (user_name, state);
