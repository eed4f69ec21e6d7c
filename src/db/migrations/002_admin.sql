-- 002: the audit log of admin actions, and override flags in the ledger.

-- One row per admin action: who (the actor the caller named, and the role of
-- the token used), what, on what, the state before and after, and why.
CREATE TABLE audit (
  id      bigserial PRIMARY KEY,
  at      timestamptz NOT NULL DEFAULT now(),
  actor   text NOT NULL,
  role    text NOT NULL,
  action  text NOT NULL,
  target  text NOT NULL,
  before  jsonb,
  after   jsonb,
  reason  text
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_target ON audit (target, at);

-- A reserve row for a job an admin admitted regardless of budget.
ALTER TABLE ledger ADD COLUMN override boolean NOT NULL DEFAULT false;
