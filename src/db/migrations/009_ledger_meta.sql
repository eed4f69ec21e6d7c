-- 009: a reserve row keeps the job's meta exactly as the script wrote it into
-- the reservation (one JSON string: project, user, jobType, gpuType, gpus,
-- run), so a rebuild restores the reservation field for field, above all the
-- GPU count the wall-time fallback multiplies by. text, not jsonb: jsonb
-- reorders keys, and the rebuilt hash is to be the same bytes. Settle and
-- release rows leave it NULL (the reserve row has it); rows from before: NULL.
ALTER TABLE ledger ADD COLUMN meta text;
