-- 017: submission rate limits (token buckets), one row per bucket scope:
-- 'user:<u>' or 'project:<p>'. Redis holds a copy of each row beside the
-- bucket's state (src/redis/lua/includes/rate.lua); the state itself is not
-- kept here: after a rebuild a bucket starts full.
CREATE TABLE rate_limits (
  scope            text PRIMARY KEY CHECK (scope ~ '^(user|project):[A-Za-z0-9._-]{1,128}$'),
  jobs_per_minute  integer NOT NULL CHECK (jobs_per_minute BETWEEN 1 AND 1000000),
  burst            integer NOT NULL CHECK (burst BETWEEN 1 AND 100000),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
