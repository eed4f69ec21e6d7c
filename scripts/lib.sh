# Shared by up.sh and demo.sh: install what a fresh machine lacks, and start a
# local Redis if none answers at REDIS_URL.
ensure_deps() {
  [ -d node_modules ] || npm ci --no-audit --no-fund
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing redis-server (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
}

ensure_redis() {
  if [ -z "${REDIS_URL:-}" ] && ! redis-cli -p 6379 ping >/dev/null 2>&1; then
    mkdir -p .data/redis
    # AOF on and noeviction: counters must survive a restart and never be evicted.
    redis-server --port 6379 --bind 127.0.0.1 --dir "$PWD/.data/redis" --appendonly yes \
      --maxmemory-policy noeviction --daemonize yes --logfile "$PWD/.data/redis/redis.log"
    echo "started redis-server on 127.0.0.1:6379 (data in .data/redis)"
  fi
}
