-- 025: corrections, append-only. A credit, a refund or a re-rate is a new
-- ledger row of kind 'correction' that names what it corrects (`corrects`,
-- the id of a job's end row; none for a credit to a scope) and carries the
-- change of charge in every unit (charge_*, negative when it gives back),
-- the price the job is charged at from then on (rate_*, factor_milli), the
-- GPU-ms a refund covers (corrected_gpu_ms) and who made it (actor; the
-- reason is its note). Rows already written are never edited.
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check CHECK (kind IN ('reserve', 'settle', 'release', 'correction'));
ALTER TABLE ledger
  ADD COLUMN correction text CHECK (correction IN ('credit', 'refund', 're-rate')),
  ADD COLUMN corrects bigint REFERENCES ledger (id),
  ADD COLUMN corrected_gpu_ms bigint CHECK (corrected_gpu_ms >= 0),
  ADD COLUMN actor text;
ALTER TABLE ledger ADD CONSTRAINT ledger_correction_named CHECK ((kind = 'correction') = (correction IS NOT NULL));
ALTER TABLE ledger DROP CONSTRAINT ledger_charge_gpu_ms_check;
ALTER TABLE ledger DROP CONSTRAINT ledger_charge_units_milli_check;
ALTER TABLE ledger DROP CONSTRAINT ledger_charge_usd_micro_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_charges_check CHECK (
  kind = 'correction' OR (coalesce(charge_gpu_ms, 0) >= 0 AND coalesce(charge_units_milli, 0) >= 0 AND coalesce(charge_usd_micro, 0) >= 0));
-- One end per job: a correction is not one.
DROP INDEX ledger_end_once;
CREATE UNIQUE INDEX ledger_end_once ON ledger (job_id, admitted_at) NULLS NOT DISTINCT WHERE kind IN ('settle', 'release');
CREATE INDEX ledger_corrects ON ledger (corrects) WHERE corrects IS NOT NULL;
