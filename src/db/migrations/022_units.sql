-- 022: limits in a unit, and what each job was charged in every unit.
-- A limit's amount columns (limit_gpu_ms, rollover_cap_gpu_ms) hold the
-- integer of its unit: GPU-ms (gpuHours, every row before this), milli-units
-- (units) or micro-dollars (usd); see src/accounting/pricing.ts.
ALTER TABLE limits ADD COLUMN unit text NOT NULL DEFAULT 'gpuHours' CHECK (unit IN ('gpuHours', 'units', 'usd'));

-- A ledger row keeps the price its job was charged at (its GPU type's rate
-- at admission and its job type's usage factor) and the charges of its
-- estimate (every row) and of its actual GPU time (end rows). NULL on rows
-- written before rates: those were charged their GPU-ms (nothing when
-- exempt), no units and no dollars, which is what the queries read NULL as.
ALTER TABLE ledger
  ADD COLUMN rate_units_milli bigint CHECK (rate_units_milli >= 0),
  ADD COLUMN rate_usd_micro bigint CHECK (rate_usd_micro >= 0),
  ADD COLUMN factor_milli integer CHECK (factor_milli >= 0),
  ADD COLUMN est_charge_gpu_ms bigint CHECK (est_charge_gpu_ms >= 0),
  ADD COLUMN est_charge_units_milli bigint CHECK (est_charge_units_milli >= 0),
  ADD COLUMN est_charge_usd_micro bigint CHECK (est_charge_usd_micro >= 0),
  ADD COLUMN charge_gpu_ms bigint CHECK (charge_gpu_ms >= 0),
  ADD COLUMN charge_units_milli bigint CHECK (charge_units_milli >= 0),
  ADD COLUMN charge_usd_micro bigint CHECK (charge_usd_micro >= 0);
