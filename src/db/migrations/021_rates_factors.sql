-- 021: the rate card and usage factors (docs/design.md#units-rates-and-usage-factors).
-- gpu_rates is append-only history: a GPU type's rate at an instant is the
-- row with the latest effective_from not after it (the newest set_at among
-- equal ones), so a job keeps the rate it was admitted with and a price is
-- never rewritten. gpu_type '*' is the default rate (the API's 'default').
-- Bounds: MAX_UNITS_MILLI_PER_HOUR and MAX_USD_MICRO_PER_HOUR in
-- src/accounting/pricing.ts.
CREATE TABLE gpu_rates (
  id              bigserial PRIMARY KEY,
  gpu_type        text NOT NULL CHECK (length(gpu_type) BETWEEN 1 AND 128),
  units_milli     bigint NOT NULL CHECK (units_milli BETWEEN 0 AND 1000000000),
  usd_micro       bigint NOT NULL CHECK (usd_micro BETWEEN 0 AND 1000000000),
  effective_from  timestamptz NOT NULL,
  set_at          timestamptz NOT NULL DEFAULT now(),
  set_by          text
);
CREATE INDEX gpu_rates_type ON gpu_rates (gpu_type, effective_from, set_at, id);

-- Rows are never edited or removed: a wrong price is fixed by a new row.
CREATE FUNCTION gpu_rates_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'gpu_rates is append-only: add a row instead';
END $$;
CREATE TRIGGER gpu_rates_append_only BEFORE UPDATE OR DELETE ON gpu_rates
  FOR EACH ROW EXECUTE FUNCTION gpu_rates_append_only();

-- A job type's usage factor in thousandths: 1000 (no row) counts fully,
-- 0 is exempt (admitted, tracked apart, never counted), up to x100.
CREATE TABLE usage_factors (
  job_type      text PRIMARY KEY,
  factor_milli  integer NOT NULL CHECK (factor_milli BETWEEN 0 AND 100000),
  set_at        timestamptz NOT NULL DEFAULT now()
);

-- Exempt job types were factor 0 all along.
INSERT INTO usage_factors (job_type, factor_milli, set_at)
  SELECT job_type, 0, added_at FROM exempt_job_types;
DROP TABLE exempt_job_types;
