-- 019: a key for each person. A key is `gk_<id>_<secret>`; only the SHA-256
-- of the secret is kept (the key is answered once, at creation). `projects`
-- NULL means every project. A revoked or expired key authenticates nothing.
CREATE TABLE api_keys (
  id            text PRIMARY KEY,
  person        text NOT NULL,
  role          text NOT NULL CHECK (role IN ('admin', 'manager', 'submitter', 'viewer')),
  projects      text[] CHECK (projects IS NULL OR cardinality(projects) BETWEEN 1 AND 100),
  secret_sha256 bytea NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  created_by    text NOT NULL,
  expires_at    timestamptz,
  revoked_at    timestamptz,
  revoked_by    text,
  last_used_at  timestamptz
);
CREATE INDEX api_keys_person ON api_keys (person);

-- How the actor of an audit row was known: 'key:<id>' or 'oidc' (authenticated),
-- 'token' (an environment token: the name is what the caller declared).
-- NULL: the system itself (scheduler, rebuild start-up), or a row from before.
ALTER TABLE audit ADD COLUMN via text;
