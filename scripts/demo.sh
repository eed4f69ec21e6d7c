#!/usr/bin/env bash
# `npm run demo`: everything in one process with simulated GPU workers, then a
# realistic mix of jobs (several projects and users, exempt regression tests,
# one 160-job batch) so budgets fill, warnings fire, jobs are held and
# released — watch it at http://127.0.0.1:${PORT:-3000}/dashboard and
# /admin/queues. Ctrl-C stops it. Its queues and keys use the prefix `demo`
# and are reset at each run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
ensure_redis
export QUEUE_PREFIX="${QUEUE_PREFIX:-demo}"
export DATA_DIR="${DATA_DIR:-./.data/demo}"
export GATEKEEPER_ROLES="gatekeeper,reconciler,scheduler,webhooks,api,gpu-sim"
export GATEKEEPER_ADMIN_TOKEN="${GATEKEEPER_ADMIN_TOKEN:-demo-admin-token-0123456789}"
export GATEKEEPER_VIEWER_TOKEN="${GATEKEEPER_VIEWER_TOKEN:-demo-viewer-token-0123456789}"
export SIM_JOB_MS="${SIM_JOB_MS:-1500}" SIM_CONCURRENCY="${SIM_CONCURRENCY:-24}"
export LOG_LEVEL="${LOG_LEVEL:-warn}"
# A fresh demo each time: its own keys and its own embedded database.
rm -rf "$DATA_DIR"
npx tsx scripts/demo-load.ts reset
npm start &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' INT TERM EXIT
npx tsx scripts/demo-load.ts
wait $server
