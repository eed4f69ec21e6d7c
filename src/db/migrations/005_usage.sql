-- 005: runs in the ledger, and a daily usage rollup for reports and the dashboard.

ALTER TABLE ledger ADD COLUMN run text;

-- One row per local day (GATEKEEPER_TIMEZONE when written), project, user,
-- job type, GPU type and exempt flag: the jobs that ended that day (settle or
-- release) and their hours. The ledger writer adds to it in the same
-- statement that inserts the ledger rows, so it counts each job once and
-- stays exact; reports over months read thousands of rows, not millions.
CREATE TABLE usage_daily (
  day               date NOT NULL,
  project           text NOT NULL,
  user_name         text NOT NULL,
  job_type          text NOT NULL DEFAULT '',
  gpu_type          text NOT NULL DEFAULT '',
  exempt            boolean NOT NULL DEFAULT false,
  jobs              bigint NOT NULL,
  estimated_gpu_ms  bigint NOT NULL,
  actual_gpu_ms     bigint NOT NULL,
  PRIMARY KEY (day, project, user_name, job_type, gpu_type, exempt)
);
CREATE INDEX usage_daily_project ON usage_daily (project, day);
CREATE INDEX usage_daily_user ON usage_daily (user_name, day);

-- Rows written before this migration, by UTC day.
INSERT INTO usage_daily
  SELECT (at AT TIME ZONE 'UTC')::date, project, user_name, coalesce(job_type, ''), coalesce(gpu_type, ''), exempt,
         count(*), sum(estimated_gpu_ms), sum(coalesce(actual_gpu_ms, 0))
  FROM ledger WHERE kind <> 'reserve' GROUP BY 1, 2, 3, 4, 5, 6;

-- The monthly export walks ended jobs by time.
CREATE INDEX ledger_end_at ON ledger (at, id) WHERE kind <> 'reserve';
