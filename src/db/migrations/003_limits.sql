-- 003: every limit in one table (project budgets, user quotas, run caps),
-- exempt job types, and exempt flags in the ledger.

-- One row per scope base: 'project:<p>', 'user-day:<u>', 'user-week:<u>',
-- 'run:<p>/<r>'. Redis holds a copy of each row next to the counters.
CREATE TABLE limits (
  scope               text PRIMARY KEY,
  limit_gpu_ms        bigint NOT NULL CHECK (limit_gpu_ms >= 0),
  -- hard: hold at the limit; soft: admit past it (warned) up to grace_pct more.
  policy              text NOT NULL DEFAULT 'hard' CHECK (policy IN ('hard', 'soft')),
  grace_pct           integer CHECK (grace_pct BETWEEN 0 AND 100),
  -- none: one-off; day/week/month: counters start at zero each period.
  period              text NOT NULL DEFAULT 'none' CHECK (period IN ('none', 'day', 'week', 'month')),
  rollover            boolean NOT NULL DEFAULT false,
  rollover_cap_gpu_ms bigint CHECK (rollover_cap_gpu_ms >= 0),
  set_at              timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);

INSERT INTO limits (scope, limit_gpu_ms, set_at, updated_at)
  SELECT 'project:' || project, limit_gpu_ms, updated_at, updated_at FROM budgets;
DROP TABLE budgets;

-- Job types admitted without counting against any limit (tracked separately).
CREATE TABLE exempt_job_types (
  job_type  text PRIMARY KEY,
  added_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE ledger ADD COLUMN exempt boolean NOT NULL DEFAULT false;
