-- 010: what a period's effective limit holds beyond the limit itself
-- (limit + carry + adjust), kept in Postgres so that a rebuild of Redis
-- restores it exactly instead of recomputing it from later numbers.
-- Amounts are integer GPU-milliseconds.

-- The rollover a period started with. Redis computes it once, on the
-- period's first touch, from the previous period's numbers at that moment
-- (open reservations counting as spent), and never changes it; it is
-- recorded once it is fixed (the scheduler at each boundary, an adjustment).
-- The first value recorded wins.
CREATE TABLE period_carries (
  counter_id    text PRIMARY KEY,  -- '<scope>@<period label>'
  carry_gpu_ms  bigint NOT NULL CHECK (carry_gpu_ms >= 0),
  recorded_at   timestamptz NOT NULL
);

-- One row per `budget adjust` of a period (the audit log has it too, but in
-- decimal hours); the period's adjust is the sum of its rows.
CREATE TABLE period_adjustments (
  id            bigserial PRIMARY KEY,
  counter_id    text NOT NULL,     -- '<scope>@<period label>', or the scope of a one-off budget
  delta_gpu_ms  bigint NOT NULL,
  actor         text NOT NULL,
  at            timestamptz NOT NULL
);
CREATE INDEX period_adjustments_counter ON period_adjustments (counter_id);
