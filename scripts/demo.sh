#!/usr/bin/env bash
# `npm run demo`: everything in one process with simulated GPU workers, then a
# realistic mix of jobs (several projects and users, exempt regression tests,
# one 160-job batch) so budgets fill, warnings fire, jobs are held and
# released — watch it at http://127.0.0.1:${PORT:-3000}/dashboard and
# /admin/queues. Its queues and keys use the prefix `demo` and its database
# is .data/demo; both are reset at each run. Ctrl-C or SIGTERM stops it all
# (scripts/lib.sh says how). `bash scripts/demo.sh reset` (or
# `npm run demo -- reset`) wipes its state instead of starting.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export QUEUE_PREFIX="${QUEUE_PREFIX:-demo}"
export DATA_DIR="${DATA_DIR:-./.data/demo}"
export GATEKEEPER_ROLES="gatekeeper,reconciler,scheduler,webhooks,api,gpu-sim"
export GATEKEEPER_ADMIN_TOKEN="${GATEKEEPER_ADMIN_TOKEN:-demo-admin-token-0123456789}"
export GATEKEEPER_VIEWER_TOKEN="${GATEKEEPER_VIEWER_TOKEN:-demo-viewer-token-0123456789}"
export SIM_JOB_MS="${SIM_JOB_MS:-1500}" SIM_CONCURRENCY="${SIM_CONCURRENCY:-24}"
export LOG_LEVEL="${LOG_LEVEL:-warn}"

say_reset() {
  echo "stopped. The demo's state ($DATA_DIR, the Redis keys $QUEUE_PREFIX:* and gk:{$QUEUE_PREFIX}:* at $REDIS_URL) is wiped at the next npm run demo${DATABASE_URL:+; the Postgres at DATABASE_URL is not}."
  echo "To wipe it now: bash scripts/demo.sh reset"
}

trap_signals
ensure_deps
ensure_redis
if [ "${1:-}" = reset ]; then
  reset_state
  exit 0
fi
# A fresh demo each time: its own keys and its own embedded database.
reset_state >/dev/null
# node itself, not `npm start` / `npx tsx`: one process per child gets the signal (same flags as package.json).
spawn_group node --max-semi-space-size=64 --import tsx src/main.ts
server=$GK_LAST
spawn_group node --import tsx scripts/demo-load.ts
load=$GK_LAST
status=0
wait -n "$server" "$load" || status=$?
if [ "$status" -eq 0 ] && ! kill -0 "$load" 2>/dev/null; then
  # The load is done; the demo runs on until Ctrl-C.
  wait "$server" || status=$?
fi
exit "$status"
