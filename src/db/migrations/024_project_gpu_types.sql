-- 024: the GPU types a project may use (no row: any). Redis keeps a copy in
-- the 'gpu-allowed' hash, which the reserve script reads
-- (src/redis/lua/reserve.lua); a job for another type is rejected.
CREATE TABLE project_gpu_types (
  project     text PRIMARY KEY,
  allowed     text[] NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
