-- 001: budgets and the append-only ledger.
-- Amounts are integer GPU-milliseconds (bigint), never floats.

CREATE TABLE budgets (
  project      text PRIMARY KEY,
  limit_gpu_ms bigint NOT NULL CHECK (limit_gpu_ms >= 0),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per accounting event. Rows are only ever inserted.
-- reserve: a job's estimate was held; settle: it ran and its actual time
-- replaced the estimate; release: it never ran and the estimate was dropped.
CREATE TABLE ledger (
  id               bigserial PRIMARY KEY,
  kind             text NOT NULL CHECK (kind IN ('reserve', 'settle', 'release')),
  job_id           text NOT NULL,
  project          text NOT NULL,
  user_name        text NOT NULL,
  job_type         text,
  gpu_type         text,
  scopes           text[] NOT NULL,
  estimated_gpu_ms bigint NOT NULL CHECK (estimated_gpu_ms >= 0),
  actual_gpu_ms    bigint CHECK (actual_gpu_ms >= 0),
  admitted_at      timestamptz,
  at               timestamptz NOT NULL,
  note             text,
  recorded_at      timestamptz NOT NULL DEFAULT now()
);

-- Exactly once: one reserve and at most one end (settle or release) per job.
-- The ledger writer inserts with ON CONFLICT DO NOTHING, so a stream entry
-- delivered twice (writer crash before XACK) is written once.
CREATE UNIQUE INDEX ledger_reserve_once ON ledger (job_id) WHERE kind = 'reserve';
CREATE UNIQUE INDEX ledger_end_once ON ledger (job_id) WHERE kind <> 'reserve';
CREATE INDEX ledger_project_at ON ledger (project, at);
