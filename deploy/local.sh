#!/usr/bin/env bash
# Brings latchkey up on this machine with nothing to configure:
#   - PostgreSQL: $DATABASE_URL when given; else the server on 127.0.0.1:5432 when it
#     answers; else a private cluster made with the installed initdb/pg_ctl in
#     .local/pgdata, stopped again on exit.
#   - builds both binaries, migrates, starts lock-gateway and access-service, and prints
#     their addresses, an admin token and a grpcurl example. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
state="$root/.local"
mkdir -p "$state"

ACCESS_ADDR=${ACCESS_ADDR:-127.0.0.1:50051}
GATEWAY_ADDR=${GATEWAY_ADDR:-127.0.0.1:50061}
PRIVATE_PG_PORT=${PRIVATE_PG_PORT:-54329}
TENANT=${TENANT:-demo}
PROFILE=${PROFILE:-debug}
SHARED_PG_ADDR=${SHARED_PG_ADDR:-127.0.0.1:5432}

pids=()
private_pg=""
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$private_pg" ]; then
    echo "stopping the private PostgreSQL"
    run_pg pg_ctl -D "$private_pg" -m fast stop >/dev/null || true
  fi
}
trap cleanup EXIT INT TERM

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
run_pg() {
  local tool=$1; shift
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$(pg_bin)/$tool" "$@"; else "$(pg_bin)/$tool" "$@"; fi
}
port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# 1. PostgreSQL
if [ -n "${DATABASE_URL:-}" ]; then
  echo "using DATABASE_URL"
elif port_open "$SHARED_PG_ADDR"; then
  DATABASE_URL="postgres://postgres@$SHARED_PG_ADDR/latchkey"
  psql "postgres://postgres@$SHARED_PG_ADDR/postgres" -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = 'latchkey'" | grep -q 1 ||
    psql "postgres://postgres@$SHARED_PG_ADDR/postgres" -qc "CREATE DATABASE latchkey"
  echo "using the PostgreSQL on $SHARED_PG_ADDR"
else
  [ -n "$(pg_bin)" ] || { echo "no PostgreSQL found: install the postgresql package or set DATABASE_URL" >&2; exit 1; }
  private_pg="$state/pgdata"
  if [ ! -f "$private_pg/PG_VERSION" ]; then
    mkdir -p "$private_pg"
    [ "$(id -u)" = 0 ] && chown postgres "$private_pg"
    run_pg initdb -D "$private_pg" -U postgres --auth=trust >/dev/null
  fi
  [ "$(id -u)" = 0 ] && chown -R postgres "$private_pg"
  run_pg pg_ctl -D "$private_pg" -l "$private_pg/server.log" -w \
    -o "-p $PRIVATE_PG_PORT -c listen_addresses=127.0.0.1 -k $private_pg" start >/dev/null
  run_pg createdb -h 127.0.0.1 -p "$PRIVATE_PG_PORT" -U postgres latchkey 2>/dev/null || true
  DATABASE_URL="postgres://postgres@127.0.0.1:$PRIVATE_PG_PORT/latchkey"
  echo "started a private PostgreSQL in $private_pg on port $PRIVATE_PG_PORT"
fi
export DATABASE_URL

# 2. A JWT secret kept across runs, so tokens stay valid.
if [ -z "${JWT_SECRET:-}" ]; then
  [ -s "$state/jwt_secret" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/jwt_secret"
  JWT_SECRET=$(cat "$state/jwt_secret")
fi
export JWT_SECRET

# A key sealing TTLock credentials at rest, kept across runs like the JWT secret.
if [ -z "${GATEWAY_ENCRYPTION_KEY:-}" ]; then
  [ -s "$state/gateway_key" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/gateway_key"
  GATEWAY_ENCRYPTION_KEY=$(cat "$state/gateway_key")
fi
export GATEWAY_ENCRYPTION_KEY

# The key access codes are hashed and sealed with, kept across runs.
if [ -z "${ACCESS_CODE_KEY:-}" ]; then
  [ -s "$state/access_code_key" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/access_code_key"
  ACCESS_CODE_KEY=$(cat "$state/access_code_key")
fi
export ACCESS_CODE_KEY

# The callback receiver's secret path segment, kept across runs like the others.
if [ -z "${CALLBACK_SECRET:-}" ]; then
  [ -s "$state/callback_secret" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/callback_secret"
  CALLBACK_SECRET=$(cat "$state/callback_secret")
fi
export CALLBACK_SECRET
CALLBACK_ADDR=${CALLBACK_ADDR:-127.0.0.1:50062}
export CALLBACK_ADDR

# 3. Build and start.
if [ "$PROFILE" = release ]; then cargo build --release --workspace --bins; else cargo build --workspace --bins; fi
bin="$root/target/$PROFILE"

# With no real TTLock account to use, the TTLock simulator stands in for the cloud.
SIM_ADDR=${SIM_ADDR:-127.0.0.1:8089}
if [ -z "${NO_TTLOCK_SIM:-}" ]; then
  "$bin/ttlock-sim" --addr "$SIM_ADDR" --callback-url "http://$CALLBACK_ADDR/ttlock/callback/$CALLBACK_SECRET" \
    2>"$state/ttlock-sim.log" &
  pids+=($!)
fi
GRPC_ADDR=$GATEWAY_ADDR "$bin/lock-gateway" serve --migrate &
pids+=($!)
GRPC_ADDR=$ACCESS_ADDR LOCK_GATEWAY_URL="http://$GATEWAY_ADDR" "$bin/access-service" serve --migrate &
pids+=($!)
for addr in "$GATEWAY_ADDR" "$ACCESS_ADDR"; do
  for _ in $(seq 1 100); do port_open "$addr" && break; sleep 0.2; done
  port_open "$addr" || { echo "nothing listens on $addr" >&2; exit 1; }
done

token=$("$bin/access-service" token --tenant "$TENANT" --user admin --role ADMIN)
cat <<TXT

latchkey is up.
  access-service  $ACCESS_ADDR
  lock-gateway    $GATEWAY_ADDR   (SERVICE callers only; TTLock callbacks on http://$CALLBACK_ADDR)
  database        ${DATABASE_URL%%\?*}

Admin token for tenant "$TENANT" (12 hours):
  $token

Try it:
  grpcurl -plaintext -H "authorization: Bearer $token" \\
    -d '{"property": {"name": "Casa Azul", "time_zone": "Europe/Madrid"}}' \\
    $ACCESS_ADDR latchkey.access.v1.DirectoryService/CreateProperty
  grpcurl -plaintext $ACCESS_ADDR list

TTLock: ${NO_TTLOCK_SIM:+your own account (register it with the RegisterAccount call of lock-gateway)}${NO_TTLOCK_SIM:-the simulator on http://$SIM_ADDR; its seeded accounts are in .local/ttlock-sim.log}

Ctrl-C stops everything${private_pg:+, the private PostgreSQL included}.
TXT
wait -n "${pids[@]}"
