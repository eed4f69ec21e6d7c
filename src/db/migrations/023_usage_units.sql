-- 023: the usage rollups sum what ended jobs were charged in every unit:
-- charged_gpu_ms (GPU-ms times the usage factor; 0 for exempt jobs),
-- units_milli and usd_micro, corrections included (negative when they give
-- back). Rollups are derived data: their rows from before rates are filled
-- in as what they meant (counted GPU-ms, no units, no dollars). The ledger
-- itself is never edited.
ALTER TABLE usage_daily ADD COLUMN charged_gpu_ms bigint NOT NULL DEFAULT 0, ADD COLUMN units_milli bigint NOT NULL DEFAULT 0, ADD COLUMN usd_micro bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_by_day ADD COLUMN charged_gpu_ms bigint NOT NULL DEFAULT 0, ADD COLUMN units_milli bigint NOT NULL DEFAULT 0, ADD COLUMN usd_micro bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_by_period ADD COLUMN charged_gpu_ms bigint NOT NULL DEFAULT 0, ADD COLUMN units_milli bigint NOT NULL DEFAULT 0, ADD COLUMN usd_micro bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_monthly ADD COLUMN charged_gpu_ms bigint NOT NULL DEFAULT 0, ADD COLUMN units_milli bigint NOT NULL DEFAULT 0, ADD COLUMN usd_micro bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_weekly ADD COLUMN charged_gpu_ms bigint NOT NULL DEFAULT 0, ADD COLUMN units_milli bigint NOT NULL DEFAULT 0, ADD COLUMN usd_micro bigint NOT NULL DEFAULT 0;
UPDATE usage_daily SET charged_gpu_ms = actual_gpu_ms WHERE NOT exempt;
UPDATE usage_by_day SET charged_gpu_ms = actual_gpu_ms WHERE NOT exempt;
UPDATE usage_by_period SET charged_gpu_ms = actual_gpu_ms WHERE NOT exempt;
UPDATE usage_monthly SET charged_gpu_ms = actual_gpu_ms WHERE NOT exempt;
UPDATE usage_weekly SET charged_gpu_ms = actual_gpu_ms WHERE NOT exempt;
