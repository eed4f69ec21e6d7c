-- 018: caps on GPUs in flight (the sum of `gpus` of admitted jobs not yet
-- settled), per project ('gpus-project:<p>'), user ('gpus-user:<u>'),
-- project and GPU type ('gpus-type:<p>/<t>') and for everything
-- ('gpus-global:all'). A cap may take another value in a weekly window of
-- local time (GATEKEEPER_TIMEZONE): peak_days is a bit per weekday (1 Monday
-- ... 64 Sunday), peak_from and peak_to minutes of the day. Redis keeps a
-- copy in the 'caps' hash (src/redis/lua/includes/caps.lua).
CREATE TABLE gpu_caps (
  scope          text PRIMARY KEY,
  max_gpus       integer NOT NULL CHECK (max_gpus BETWEEN 0 AND 1000000),
  peak_max_gpus  integer CHECK (peak_max_gpus BETWEEN 0 AND 1000000),
  peak_days      smallint CHECK (peak_days BETWEEN 1 AND 127),
  peak_from      smallint CHECK (peak_from BETWEEN 0 AND 1439),
  peak_to        smallint CHECK (peak_to BETWEEN 1 AND 1440),
  release_mode   text NOT NULL DEFAULT 'auto' CHECK (release_mode IN ('auto', 'manual')),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  CHECK ((peak_max_gpus IS NULL) = (peak_days IS NULL) AND (peak_days IS NULL) = (peak_from IS NULL)
         AND (peak_from IS NULL) = (peak_to IS NULL) AND (peak_from IS NULL OR peak_from < peak_to))
);
