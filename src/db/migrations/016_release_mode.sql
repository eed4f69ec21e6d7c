-- 016: how a limit's held jobs leave: 'auto' (default), decided again by the
-- waker whenever room appears in the scope; 'manual', only by an admin's
-- release (or the scheduler when the period renews), for teams that want a
-- person to decide.
ALTER TABLE limits ADD COLUMN release_mode text NOT NULL DEFAULT 'auto' CHECK (release_mode IN ('auto', 'manual'));
