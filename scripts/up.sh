#!/usr/bin/env bash
# Quick start: install what a fresh machine lacks, start a local Redis if none
# answers at REDIS_URL, then run every role plus a simulated GPU worker in one
# process (embedded Postgres under DATA_DIR unless DATABASE_URL is set).
# Ctrl-C or SIGTERM stops it all (scripts/lib.sh says how) and prints how to
# start over. `bash scripts/up.sh reset` wipes its state instead of starting.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export DATA_DIR="${DATA_DIR:-./.data}" QUEUE_PREFIX="${QUEUE_PREFIX:-bull}"
export GATEKEEPER_ROLES="${GATEKEEPER_ROLES:-gatekeeper,reconciler,scheduler,webhooks,api,gpu-sim}"

say_reset() {
  if [ -n "${DATABASE_URL:-}" ]; then local db="the Postgres at DATABASE_URL"; else local db="the embedded Postgres in $DATA_DIR/pglite"; fi
  echo "stopped. What it kept stays for the next start: $db, and the Redis keys $QUEUE_PREFIX:* and gk:{$QUEUE_PREFIX}:* at $REDIS_URL."
  echo "To start over: bash scripts/up.sh reset"
}

trap_signals
ensure_deps
ensure_redis
if [ "${1:-}" = reset ]; then
  # The embedded Postgres lives in DATA_DIR/pglite; DATA_DIR also holds the demo's and Redis' data.
  DATA_DIR="$DATA_DIR/pglite" reset_state
  exit 0
fi
# node itself, not `npm start`: one process gets the signal and `wait` gets its exit code (same flags as package.json).
spawn_group node --max-semi-space-size=64 --import tsx src/main.ts
server=$GK_LAST
status=0
wait "$server" || status=$?
exit "$status"
