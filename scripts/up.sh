#!/usr/bin/env bash
# Quick start: install what a fresh machine lacks, start a local Redis if none
# answers at REDIS_URL, then run every role plus a simulated GPU worker in one
# process (embedded Postgres unless DATABASE_URL is set).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
ensure_redis
export GATEKEEPER_ROLES="${GATEKEEPER_ROLES:-gatekeeper,reconciler,scheduler,webhooks,api,gpu-sim}"
exec npm start
