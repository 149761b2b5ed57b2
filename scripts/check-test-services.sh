#!/usr/bin/env bash
# The tests talk to a real Redis and a real PostgreSQL (never mocks). Say
# clearly what is missing before a hundred tests fail on it.
set -uo pipefail
redis_addr=${TEST_REDIS_ADDR:-127.0.0.1:6379}
pg_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
ok=1
host=${redis_addr%:*}; port=${redis_addr##*:}
if ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  echo "Redis does not answer on $redis_addr."
  echo "  start one: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"
  echo "  or: docker compose up -d redis   (or set TEST_REDIS_ADDR=host:port)"
  ok=0
fi
if command -v pg_isready >/dev/null; then
  if ! pg_isready -q -d "$pg_url"; then
    echo "PostgreSQL does not answer at $pg_url."
    echo "  start it (Debian: pg_ctlcluster <version> main start) or: docker compose up -d postgres"
    echo "  (or set TEST_DATABASE_URL to a server where the user may CREATE DATABASE)"
    ok=0
  fi
fi
[ $ok = 1 ] || exit 1
