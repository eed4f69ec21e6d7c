-- 008: a job id may come back after Redis forgot it (a custom id reused after
-- SETTLED_RETAIN_SECONDS, numeric ids restarting after a queue is obliterated).
-- That second admission is a different reservation: tell them apart by the
-- admission time, so its rows are kept instead of dropped as duplicates, while
-- the same entry delivered twice (same job, same admission) is still written once.
DROP INDEX ledger_reserve_once;
DROP INDEX ledger_end_once;
CREATE UNIQUE INDEX ledger_reserve_once ON ledger (job_id, admitted_at) NULLS NOT DISTINCT WHERE kind = 'reserve';
CREATE UNIQUE INDEX ledger_end_once ON ledger (job_id, admitted_at) NULLS NOT DISTINCT WHERE kind <> 'reserve';
