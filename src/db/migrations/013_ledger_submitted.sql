-- 013: a reserve row keeps its job's submission time (BullMQ's timestamp of
-- the intake job, epoch ms). With the job id it is the job's identity: a
-- queue whose id counter restarted hands out ids used before, and the
-- reserve script tells the jobs apart by it (src/redis/lua/reserve.lua), so
-- a rebuild of Redis must restore it. NULL: not known (rows from before, or
-- a caller that gave none).
ALTER TABLE ledger ADD COLUMN submitted_ms bigint;
