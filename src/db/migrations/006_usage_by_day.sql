-- 006: a narrow rollup for the dashboard: GPU-ms per local day per project and
-- per user (the wide usage_daily has a row per project x user x job type x GPU
-- type, which a dashboard of hundreds of budgets would scan too much of).
-- Kept by the ledger writer in the same statement as the ledger rows.
CREATE TABLE usage_by_day (
  kind           text NOT NULL CHECK (kind IN ('project', 'user')),
  name           text NOT NULL,
  day            date NOT NULL,
  exempt         boolean NOT NULL,
  jobs           bigint NOT NULL,
  actual_gpu_ms  bigint NOT NULL,
  PRIMARY KEY (kind, name, day, exempt)
);

INSERT INTO usage_by_day
  SELECT 'project', project, day, exempt, sum(jobs), sum(actual_gpu_ms) FROM usage_daily GROUP BY project, day, exempt
  UNION ALL
  SELECT 'user', user_name, day, exempt, sum(jobs), sum(actual_gpu_ms) FROM usage_daily GROUP BY user_name, day, exempt;
