-- 015: usage_weekly, GPU-ms per week, project and user, so a report's edges
-- (the days outside its whole months) read a few weeks per pair instead of
-- every day (docs/benchmarks.md). A week here is cut at the first of a month
-- (it starts on a Monday or on the 1st), so whole weeks and whole months
-- compose any range but at most six days at each end. Keyed by week first,
-- names in byte order (COLLATE "C"), so one week is read in pair order and
-- stops at a page's end (src/db/usage-pairs.ts). Kept by the ledger writer in
-- the same statement as the other rollups.
CREATE TABLE usage_weekly (
  week              date NOT NULL,
  project           text COLLATE "C" NOT NULL,
  user_name         text COLLATE "C" NOT NULL,
  exempt            boolean NOT NULL,
  jobs              bigint NOT NULL,
  estimated_gpu_ms  bigint NOT NULL,
  actual_gpu_ms     bigint NOT NULL,
  PRIMARY KEY (week, project, user_name, exempt)
);

INSERT INTO usage_weekly
  SELECT greatest(date_trunc('week', day), date_trunc('month', day))::date, project, user_name, exempt,
         sum(jobs), sum(estimated_gpu_ms), sum(actual_gpu_ms)
  FROM usage_daily GROUP BY 1, 2, 3, 4;
