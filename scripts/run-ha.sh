#!/usr/bin/env bash
# `make run-ha`: a local PostgreSQL, two control-service replicas on it, the demo upstream, and
# Envoy with the Keygate filter and both replicas in its keygate_control cluster
# (envoy/envoy-ha.yaml), on local ports. README: "Running several control replicas".
# The replicas serve HTTPS with a development CA's certificate (scripts/dev-pki.sh, made once in
# $KEYGATE_RUN_DIR/pki); Envoy trusts that CA and checks the name control.keygate.test.
#
# Redis (Debian's redis-server) holds the fleet's rate-limit counts the replicas share; it runs
# without persistence (the counts are rebuilt from the Envoys' next syncs).
#
# PostgreSQL is Debian's (package postgresql, `make system-deps`): its cluster is created with
# initdb in $KEYGATE_RUN_DIR/postgres on first start and kept between runs, as `make run` keeps
# its SQLite file (delete that folder to start afresh). It trusts local connections and listens
# on 127.0.0.1 only. As root, it runs as the `postgres` user (PostgreSQL refuses root).
#
# If a replica exits, the other one serves (Envoy leaves the dead one out) while this restarts it
# after KEYGATE_RUN_RESTART_DELAY_MS; it gives up, and stops everything, after KEYGATE_RUN_RESTARTS
# restarts of one replica. If PostgreSQL, Envoy or the demo upstream exits, everything stops and
# the exit status is 1. Ctrl-C (or SIGTERM) stops all of it.
#
# Environment, with its defaults:
#   KEYGATE_API_PORT=10000 KEYGATE_ENVOY_ADMIN_PORT=9901 KEYGATE_CONTROL_PORT=8081
#   KEYGATE_CONTROL_PORT_2=8091 KEYGATE_UPSTREAM_PORT=8082 KEYGATE_POSTGRES_PORT=5433
#   KEYGATE_REDIS_PORT=6380
#                                the ports, all on 127.0.0.1
#   KEYGATE_RUN_DIR=.run/ha      logs, pid files, the PostgreSQL cluster and the Envoy config used
#   KEYGATE_WASM, KEYGATE_CONTROL_BIN, KEYGATE_ENVOY
#                                the filter, control binary and Envoy: the `make build` outputs
#                                and .venv/bin/envoy
#   KEYGATE_RUN_RESTARTS=5       restarts of one replica before giving up
#   KEYGATE_RUN_RESTART_DELAY_MS=1000   the delay before a replica is restarted
#   KEYGATE_ADMIN_TOKEN, KEYGATE_ENROLLMENT_TOKEN   development tokens when unset; Envoy
#                                enrolls as keygate-envoy (the shared sync token is off here)
#   KEYGATE_OAUTH_SEALING_KEY     seals the OAuth signing keys; unset: made once in the run directory
set -euo pipefail
caller_dir=$PWD
cd "$(dirname "$0")/.."

script=scripts/run-ha.sh make_target=run-ha RUN_DIR=.run/ha
# shellcheck source=scripts/lib/run-common.sh
. scripts/lib/run-common.sh
CONTROL_PORTS=("${KEYGATE_CONTROL_PORT:-8081}" "${KEYGATE_CONTROL_PORT_2:-8091}")
PG_PORT=${KEYGATE_POSTGRES_PORT:-5433}
REDIS_PORT=${KEYGATE_REDIS_PORT:-6380}
RESTART_DELAY_MS=${KEYGATE_RUN_RESTART_DELAY_MS:-1000}
PG_USER=keygate
PG_DATABASE=keygate

check_numbers "$API_PORT" "$ADMIN_PORT" "${CONTROL_PORTS[@]}" "$UPSTREAM_PORT" "$PG_PORT" "$REDIS_PORT" "$MAX_RESTARTS" "$RESTART_DELAY_MS"
check_binaries
# Debian's server binaries are not on PATH: the newest /usr/lib/postgresql/<version>/bin.
PG_BIN=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -name postgres -path '*/bin/*' -printf '%h\n' 2>/dev/null | sort -V | tail -n 1)
if [ -z "$PG_BIN" ]; then
  echo "scripts/run-ha.sh: PostgreSQL is not installed (/usr/lib/postgresql/*/bin/postgres): run 'make system-deps'" >&2
  exit 1
fi
command -v redis-server >/dev/null ||
  { echo "scripts/run-ha.sh: Redis is not installed (redis-server): run 'make system-deps'" >&2; exit 1; }
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
PKI_DIR=$RUN_DIR/pki
command -v openssl >/dev/null ||
  { echo "scripts/run-ha.sh: the openssl command is needed for the replicas' development certificate" >&2; exit 1; }
scripts/dev-pki.sh "$PKI_DIR" >/dev/null
PG_DIR=$RUN_DIR/postgres
DATABASE_URL="postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DATABASE"

use_dev_tokens
# Both replicas seal and open the OAuth signing keys with the same key.
use_sealing_key
# The replicas get the database on their command line; a store from the caller's environment
# would conflict with it.
unset KEYGATE_DB KEYGATE_DATABASE_URL

# Runs PostgreSQL's programs as the `postgres` user when we are root. setpriv execs in place,
# so the pid of `"${as_pg[@]}" postgres … &` is the server's own.
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --); fi

# Every component runs in a session of its own (setsid, which execs in place: the pids are the
# components' own), so a terminal's Ctrl-C reaches this script alone, which then stops them in
# order: PostgreSQL last, after the replicas that use it.
postgres_pid="" redis_pid="" upstream_pid="" envoy_pid=""
control_pids=("" "")
restarts=(0 0)
# Pending restarts: the pid of a sleep, and which replica it restarts.
declare -A timers=()

# Stops what runs: Envoy, the replicas and the upstream first, PostgreSQL last (SIGINT: its
# fast shutdown, which does not wait for clients to leave).
stop() {
  local code=$1 pid
  trap '' INT TERM
  trap - EXIT
  if ((code == 0)); then echo; say "stopping..."; else say "stopping everything"; fi
  for pid in "${!timers[@]}"; do kill "$pid" 2>/dev/null || true; done
  local running=()
  for pid in "${control_pids[@]}" "$upstream_pid" "$envoy_pid"; do
    if [ -n "$pid" ]; then running+=("$pid"); fi
  done
  stop_pids TERM "${running[@]+"${running[@]}"}"
  if [ -n "$postgres_pid" ]; then stop_pids INT "$postgres_pid"; fi
  if [ -n "$redis_pid" ]; then stop_pids TERM "$redis_pid"; fi
  rm -f "$RUN_DIR"/{control-1,control-2,upstream,envoy,postgres,redis}.pid
  exit "$code"
}

# Sends signal $1 to the pids after it; what has not stopped within 10 s gets SIGKILL.
stop_pids() {
  local signal=$1 pid
  shift
  (($#)) || return 0
  kill "-$signal" "$@" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  for pid in "$@"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
      say "still running after 10 s, killed: $pid"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}
trap 'stop 0' INT TERM
trap 'stop $?' EXIT

# The shipped envoy/envoy-ha.yaml with this run's ports and filter.
declare -A envoy_values=(
  ["port_value: 10000"]="port_value: $API_PORT"
  ["port_value: 9901"]="port_value: $ADMIN_PORT"
  ["port_value: 8081"]="port_value: ${CONTROL_PORTS[0]}"
  ["port_value: 8091"]="port_value: ${CONTROL_PORTS[1]}"
  ["port_value: 8082"]="port_value: $UPSTREAM_PORT"
  ["filename: target/wasm32-wasip1/release/keygate.wasm"]="filename: $WASM"
  ["trusted_ca: { filename: .run/ha/pki/ca.pem }"]="trusted_ca: { filename: $PKI_DIR/ca.pem }"
)

start_postgres() {
  mkdir -p "$PG_DIR"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$PG_DIR"
    # The server user must reach its folder through every parent.
    local parent
    parent=$(dirname "$PG_DIR")
    while [ "$parent" != / ]; do
      if [ "$(($(stat -c '%#a' "$parent") & 1))" = 0 ]; then chmod o+x "$parent"; fi
      parent=$(dirname "$parent")
    done
  fi
  if [ ! -s "$PG_DIR/data/PG_VERSION" ]; then
    say "creating a PostgreSQL cluster in $PG_DIR/data"
    "${as_pg[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_USER" --auth=trust -E UTF8 --locale=C.UTF-8 \
      >"$RUN_DIR/initdb.log" 2>&1 || fail "initdb failed (see $RUN_DIR/initdb.log)"
  fi
  # TCP on 127.0.0.1 only, no Unix socket (no folder to share with the postgres user).
  setsid "${as_pg[@]}" "$PG_BIN/postgres" -D "$PG_DIR/data" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories= >>"$RUN_DIR/postgres.log" 2>&1 &
  postgres_pid=$!
  echo "$postgres_pid" >"$RUN_DIR/postgres.pid"
  local i
  for ((i = 0; i < 300; i++)); do
    if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 1; then break; fi
    kill -0 "$postgres_pid" 2>/dev/null || fail "PostgreSQL did not start (see $RUN_DIR/postgres.log)"
    sleep 0.1
  done
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 1 ||
    fail "PostgreSQL does not accept connections after 30 s (see $RUN_DIR/postgres.log)"
  local psql=("$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 -Atq)
  if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" ]; then
    "${psql[@]}" -c "CREATE DATABASE $PG_DATABASE" || fail "could not create the database $PG_DATABASE"
  fi
}

# Redis on 127.0.0.1 only, no persistence, in the foreground of its own session.
start_redis() {
  setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$RUN_DIR" >>"$RUN_DIR/redis.log" 2>&1 &
  redis_pid=$!
  echo "$redis_pid" >"$RUN_DIR/redis.pid"
  local i
  for ((i = 0; i < 300; i++)); do
    if [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; then return 0; fi
    kill -0 "$redis_pid" 2>/dev/null || fail "Redis did not start (see $RUN_DIR/redis.log)"
    sleep 0.1
  done
  fail "Redis does not answer after 30 s (see $RUN_DIR/redis.log)"
}

# Replica $1 (0 or 1) on its port; both migrate the schema at start, one at a time.
start_control() {
  local n=$1
  setsid "$CONTROL" serve --dev --listen "127.0.0.1:${CONTROL_PORTS[n]}" --database-url "$DATABASE_URL" \
    --redis-url "redis://127.0.0.1:$REDIS_PORT/0" --trusted-proxies 127.0.0.1 --no-shared-sync-token \
    --tls-cert "$PKI_DIR/control.pem" --tls-key "$PKI_DIR/control.key" >>"$RUN_DIR/control-$((n + 1)).log" 2>&1 &
  control_pids[n]=$!
  echo "${control_pids[n]}" >"$RUN_DIR/control-$((n + 1)).pid"
}

for name in control-1 control-2 upstream envoy redis; do : >"$RUN_DIR/$name.log"; done
: >>"$RUN_DIR/postgres.log"
write_envoy_config envoy/envoy-ha.yaml envoy_values
start_postgres
start_redis
start_control 0
start_control 1
setsid python3 scripts/demo_upstream.py --port "$UPSTREAM_PORT" >"$RUN_DIR/upstream.log" 2>&1 &
upstream_pid=$!
echo "$upstream_pid" >"$RUN_DIR/upstream.pid"
for n in 0 1; do
  CURL_CA_BUNDLE=$PKI_DIR/ca.pem wait_for "https://127.0.0.1:${CONTROL_PORTS[n]}/healthz" 30 "${control_pids[n]}" ||
    fail "control-service replica $((n + 1)) did not start (see $RUN_DIR/control-$((n + 1)).log)"
done
wait_for "http://127.0.0.1:$UPSTREAM_PORT/" 30 "$upstream_pid" ||
  fail "the demo upstream did not start (see $RUN_DIR/upstream.log)"
# No hot restart here, so no shared memory to clash with another Envoy on this machine.
setsid "$ENVOY" -c "$RUN_DIR/envoy.yaml" --concurrency 2 --log-level info --disable-hot-restart \
  --service-node keygate-envoy >"$RUN_DIR/envoy.log" 2>&1 &
envoy_pid=$!
echo "$envoy_pid" >"$RUN_DIR/envoy.pid"
wait_for "http://127.0.0.1:$ADMIN_PORT/ready" 60 "$envoy_pid" ||
  fail "Envoy did not start (see $RUN_DIR/envoy.log)"

cat <<MSG

Keygate is running with two control-service replicas on PostgreSQL.
  API (Envoy + Keygate)  http://127.0.0.1:$API_PORT
  Envoy admin            http://127.0.0.1:$ADMIN_PORT   (replicas' health: /clusters | grep keygate_control)
  control replicas       https://127.0.0.1:${CONTROL_PORTS[0]}  https://127.0.0.1:${CONTROL_PORTS[1]}   (either one; they share everything)
  their CA               $PKI_DIR/ca.pem   (KEYGATE_CA_CERT for the CLI, --cacert for curl)
  PostgreSQL             $DATABASE_URL   (cluster in $PG_DIR)
  Redis                  redis://127.0.0.1:$REDIS_PORT   (the fleet's rate-limit counts)
  demo upstream          http://127.0.0.1:$UPSTREAM_PORT
  logs                   $RUN_DIR/{envoy,control-1,control-2,postgres,redis,upstream}.log   (pids: $RUN_DIR/*.pid)
MSG
print_dev_tokens
cat <<MSG

Try it:
  export KEYGATE_ADMIN_TOKEN=$KEYGATE_ADMIN_TOKEN KEYGATE_CA_CERT=$PKI_DIR/ca.pem
  KEYGATE_URL=https://127.0.0.1:${CONTROL_PORTS[0]} $CONTROL keys create --name demo --scope list_models   # prints the key once
  curl -s http://127.0.0.1:$API_PORT/v1/models -H "Authorization: Bearer <the key>"
  kill -9 \$(cat $RUN_DIR/control-1.pid)      # Envoy goes on syncing through the other replica
  KEYGATE_URL=https://127.0.0.1:${CONTROL_PORTS[1]} $CONTROL keys revoke <key id>   # then the key gets 401 API_KEY_INACTIVE

Ctrl-C stops everything.
MSG

# A replica exiting is survived (and it is restarted); anything else exiting stops everything.
component_exited() {
  local pid=$1 status=$2 n
  if [ -n "${timers[$pid]+set}" ]; then
    n=${timers[$pid]}
    unset "timers[$pid]"
    echo "--- $(date '+%F %T') scripts/run-ha.sh restarts this replica ---" >>"$RUN_DIR/control-$((n + 1)).log"
    start_control "$n"
    say "control-service replica $((n + 1)) restarted (pid ${control_pids[n]}); Envoy takes it back once /healthz answers"
    return
  fi
  case $pid in
    "$postgres_pid")
      postgres_pid=""
      fail "PostgreSQL $(ending "$status") (see $RUN_DIR/postgres.log)"
      ;;
    "$redis_pid")
      redis_pid=""
      fail "Redis $(ending "$status") (see $RUN_DIR/redis.log)"
      ;;
    "$envoy_pid")
      envoy_pid=""
      fail "Envoy $(ending "$status") (see $RUN_DIR/envoy.log)"
      ;;
    "$upstream_pid")
      upstream_pid=""
      fail "the demo upstream $(ending "$status") (see $RUN_DIR/upstream.log)"
      ;;
  esac
  for n in 0 1; do
    if [ "$pid" = "${control_pids[n]}" ]; then
      control_pids[n]=""
      rm -f "$RUN_DIR/control-$((n + 1)).pid"
      if ((restarts[n] >= MAX_RESTARTS)); then
        fail "control-service replica $((n + 1)) $(ending "$status") (see $RUN_DIR/control-$((n + 1)).log) after $MAX_RESTARTS restarts; giving up"
      fi
      restarts[n]=$((restarts[n] + 1))
      sleep "$((RESTART_DELAY_MS / 1000)).$(printf '%03d' $((RESTART_DELAY_MS % 1000)))" &
      timers[$!]=$n
      say "control-service replica $((n + 1)) $(ending "$status") (see $RUN_DIR/control-$((n + 1)).log); the other replica serves; restarting it in ${RESTART_DELAY_MS} ms (restart ${restarts[n]} of $MAX_RESTARTS)"
      return
    fi
  done
  fail "lost track of the processes (wait answered '$pid')"
}

while true; do
  finished="" code=0
  watched=("$postgres_pid" "$upstream_pid" "$envoy_pid" "${!timers[@]}")
  for pid in "${control_pids[@]}"; do
    if [ -n "$pid" ]; then watched+=("$pid"); fi
  done
  # (stderr: bash would add its own "Killed" line for a child killed by a signal)
  wait -n -p finished "${watched[@]}" 2>/dev/null || code=$?
  component_exited "$finished" "$code"
done
