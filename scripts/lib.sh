# Shared by up.sh and demo.sh: install what a fresh machine lacks, start a
# local Redis if none answers, run the children, stop them all on Ctrl-C or
# SIGTERM, and say how to start over.
#
# Children (a Redis this script started, the server, the demo's load) each
# lead a process group of their own, so a Ctrl-C in the terminal reaches this
# script alone and it stops them in order, newest first: the server lets
# its current jobs finish while Redis still answers, then Redis writes its
# append-only file and exits. A second Ctrl-C kills whatever is left at once.
# Exit: 130 after Ctrl-C (SIGINT), 143 after SIGTERM, else the server's own.
#
# UP_REDIS_PORT (default 6379) and UP_REDIS_DIR (default .data/redis): where
# a Redis started here listens and keeps its data (tests use other ones).

UP_REDIS_PORT="${UP_REDIS_PORT:-6379}"
UP_REDIS_DIR="${UP_REDIS_DIR:-$PWD/.data/redis}"
GK_CHILDREN=()
GK_STOPPING=
GK_OWN_REDIS=

ensure_deps() {
  [ -d node_modules ] || npm ci --no-audit --no-fund
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing redis-server (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
}

# Start "$@" in the background, leading a process group of its own (job
# control on while it starts); its pid is in GK_LAST.
spawn_group() {
  set -m
  "$@" &
  GK_LAST=$!
  set +m
  GK_CHILDREN+=("$GK_LAST")
}

# Stop every child, newest first: SIGTERM to its group, wait for it, then
# kill anything its group still holds.
stop_children() {
  local i pid
  for ((i = ${#GK_CHILDREN[@]} - 1; i >= 0; i--)); do
    pid=${GK_CHILDREN[i]}
    kill -TERM -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  GK_CHILDREN=()
}

# The first SIGINT or SIGTERM stops the children and exits 128 + its number;
# another one while they stop kills them at once.
on_signal() {
  if [ -n "$GK_STOPPING" ]; then
    local pid
    for pid in "${GK_CHILDREN[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    return
  fi
  GK_STOPPING=1
  echo "$1: stopping (jobs running now finish first; $1 again to kill at once)" >&2
  stop_children
  trap - EXIT
  say_reset >&2
  exit "$2"
}

# Stop the children on every way out: a signal, the server exiting, a failed command.
trap_signals() {
  trap 'on_signal SIGINT 130' INT
  trap 'on_signal SIGTERM 143' TERM
  trap 'stop_children' EXIT
}

# A Redis for REDIS_URL: the one it names, one already answering on
# UP_REDIS_PORT, or one started here (AOF on, noeviction), stopped on exit.
ensure_redis() {
  if [ -n "${REDIS_URL:-}" ]; then return; fi
  export REDIS_URL="redis://127.0.0.1:$UP_REDIS_PORT"
  if redis-cli -p "$UP_REDIS_PORT" ping >/dev/null 2>&1; then return; fi
  mkdir -p "$UP_REDIS_DIR"
  # AOF on and noeviction: counters must survive a restart and never be evicted.
  spawn_group redis-server --port "$UP_REDIS_PORT" --bind 127.0.0.1 --dir "$UP_REDIS_DIR" --appendonly yes \
    --maxmemory-policy noeviction --logfile "$UP_REDIS_DIR/redis.log"
  GK_OWN_REDIS=$GK_LAST
  local i
  for ((i = 0; i < 100; i++)); do
    redis-cli -p "$UP_REDIS_PORT" ping >/dev/null 2>&1 && break
    kill -0 "$GK_OWN_REDIS" 2>/dev/null || { echo "redis-server did not start; see $UP_REDIS_DIR/redis.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "started redis-server on 127.0.0.1:$UP_REDIS_PORT (data in $UP_REDIS_DIR; it stops with this script)"
}

# Wipe one deployment's state: the embedded Postgres under DATA_DIR and its
# Redis keys (QUEUE_PREFIX) at REDIS_URL. A DATABASE_URL is left alone.
reset_state() {
  rm -rf "$DATA_DIR"
  node --import tsx scripts/reset-keys.ts
  echo "wiped $DATA_DIR and the Redis keys $QUEUE_PREFIX:* and gk:{$QUEUE_PREFIX}:* at $REDIS_URL"
  if [ -n "${DATABASE_URL:-}" ]; then echo "not touched: the Postgres at DATABASE_URL (its budgets, ledger and audit stay)"; fi
}
