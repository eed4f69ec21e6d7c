-- 014: coarser rollups for surfaces at an organization's scale (docs/benchmarks.md).
-- usage_by_period: GPU-ms per project and per user per local week (Monday) and
-- month, so the dashboard ranks 10,000 scopes by this period's usage from one
-- row each. usage_monthly: per month, project and user, so a year's report by
-- project and user reads a dozen rows per pair instead of hundreds; its names
-- order byte by byte (COLLATE "C"), so a page of pairs is read along its key
-- and stops at the page's end (src/db/usage-pairs.ts).
-- Kept by the ledger writer in the same statement as the ledger rows and the
-- daily rollups, so all of them count each job once.
CREATE TABLE usage_by_period (
  kind           text NOT NULL CHECK (kind IN ('project', 'user')),
  period         text NOT NULL CHECK (period IN ('week', 'month')),
  start          date NOT NULL,
  name           text NOT NULL,
  exempt         boolean NOT NULL,
  jobs           bigint NOT NULL,
  actual_gpu_ms  bigint NOT NULL,
  PRIMARY KEY (kind, period, start, name, exempt)
);

CREATE TABLE usage_monthly (
  month             date NOT NULL,
  project           text COLLATE "C" NOT NULL,
  user_name         text COLLATE "C" NOT NULL,
  exempt            boolean NOT NULL,
  jobs              bigint NOT NULL,
  estimated_gpu_ms  bigint NOT NULL,
  actual_gpu_ms     bigint NOT NULL,
  PRIMARY KEY (project, user_name, month, exempt)
);

-- Every user's usage of one day, for ranking daily quotas.
CREATE INDEX usage_by_day_day ON usage_by_day (kind, day);

INSERT INTO usage_by_period
  SELECT kind, 'week', date_trunc('week', day)::date, name, exempt, sum(jobs), sum(actual_gpu_ms) FROM usage_by_day GROUP BY 1, 3, 4, 5
  UNION ALL
  SELECT kind, 'month', date_trunc('month', day)::date, name, exempt, sum(jobs), sum(actual_gpu_ms) FROM usage_by_day GROUP BY 1, 3, 4, 5;

INSERT INTO usage_monthly
  SELECT date_trunc('month', day)::date, project, user_name, exempt, sum(jobs), sum(estimated_gpu_ms), sum(actual_gpu_ms)
  FROM usage_daily GROUP BY 1, 2, 3, 4;
