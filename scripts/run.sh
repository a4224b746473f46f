#!/usr/bin/env bash
# `make run`: control service, demo upstream and Envoy with the Keygate filter, on local ports.
#
# If the control service exits, Envoy keeps serving from its last key snapshot while this
# restarts it (1 s, 2 s, 4 s... apart; it gives up after KEYGATE_RUN_RESTARTS restarts in a row,
# and a service that ran for a minute starts a new row); the proxies catch up at their next
# refresh. If Envoy or the demo upstream exits, everything stops and the exit status is 1.
# Ctrl-C (or SIGTERM) stops all of it.
#
# Environment, with its defaults:
#   KEYGATE_API_PORT=10000 KEYGATE_ENVOY_ADMIN_PORT=9901 KEYGATE_CONTROL_PORT=8081
#   KEYGATE_UPSTREAM_PORT=8082 KEYGATE_CONSOLE_PORT=8083   the ports, all on 127.0.0.1
#   KEYGATE_RUN_DIR=.run         logs, pid files, the key database and the Envoy config used
#   KEYGATE_WASM, KEYGATE_CONTROL_BIN, KEYGATE_ENVOY
#                                the filter, control binary and Envoy: the `make build` outputs
#                                and .venv/bin/envoy
#   KEYGATE_RUN_RESTARTS=5       control-service restarts in a row before giving up
#   KEYGATE_RUN_RESTART_DELAY_MS=1000   the first restart's delay, doubled for each next one
#   KEYGATE_ADMIN_TOKEN, KEYGATE_SYNC_TOKEN, KEYGATE_ENROLLMENT_TOKEN
#                                development tokens when unset; Envoy enrolls with the last as
#                                keygate-envoy and shows up in GET /v1/proxies
#   KEYGATE_SECRET_SCANNING_KEYS  GitHub's secret scanning public keys (docs/security.md), unset:
#                                reports to /v1/secret-scanning/github are refused
#   KEYGATE_LEAKED_KEY_POLICY     revoke (default) or notify
#   KEYGATE_OAUTH_SEALING_KEY     seals the OAuth signing keys (docs/security.md, "OAuth 2.0");
#                                unset: made once in $KEYGATE_RUN_DIR/oauth-sealing-key
set -euo pipefail
caller_dir=$PWD
cd "$(dirname "$0")/.."

script=scripts/run.sh make_target=run RUN_DIR=.run
# shellcheck source=scripts/lib/run-common.sh
. scripts/lib/run-common.sh
CONTROL_PORT=${KEYGATE_CONTROL_PORT:-8081}
CONSOLE_PORT=${KEYGATE_CONSOLE_PORT:-8083}
FIRST_DELAY_MS=${KEYGATE_RUN_RESTART_DELAY_MS:-1000}
MAX_DELAY_MS=30000
# A control service that ran this long before exiting starts a new row of restarts.
STABLE_SECONDS=60

check_numbers "$API_PORT" "$ADMIN_PORT" "$CONTROL_PORT" "$UPSTREAM_PORT" "$CONSOLE_PORT" "$MAX_RESTARTS" "$FIRST_DELAY_MS"
check_binaries
mkdir -p "$RUN_DIR"
use_dev_tokens
use_sealing_key

control_pid="" upstream_pid="" envoy_pid="" timer_pid=""
stop() {
  local code=$1 pid finished
  trap '' INT TERM
  trap - EXIT
  if ((code == 0)); then echo; say "stopping..."; else say "stopping everything"; fi
  local running=()
  for pid in "$control_pid" "$upstream_pid" "$envoy_pid"; do
    if [ -n "$pid" ]; then running+=("$pid"); fi
  done
  if [ -n "$timer_pid" ]; then kill "$timer_pid" 2>/dev/null || true; fi
  if ((${#running[@]})); then
    kill -TERM "${running[@]}" 2>/dev/null || true
    # What has not stopped within 10 s gets SIGKILL.
    sleep 10 &
    timer_pid=$!
    while ((${#running[@]})); do
      finished=""
      wait -n -p finished "${running[@]}" "$timer_pid" 2>/dev/null || true
      if [ -z "$finished" ]; then break; fi
      if [ "$finished" = "$timer_pid" ]; then
        say "still running after 10 s, killed: ${running[*]}"
        kill -KILL "${running[@]}" 2>/dev/null || true
        wait "${running[@]}" 2>/dev/null || true
        timer_pid=""
        break
      fi
      local left=()
      for pid in "${running[@]}"; do
        if [ "$pid" != "$finished" ]; then left+=("$pid"); fi
      done
      running=("${left[@]+"${left[@]}"}")
    done
    if [ -n "$timer_pid" ]; then kill "$timer_pid" 2>/dev/null || true; fi
  fi
  rm -f "$RUN_DIR/control.pid" "$RUN_DIR/upstream.pid" "$RUN_DIR/envoy.pid"
  exit "$code"
}
trap 'stop 0' INT TERM
trap 'stop $?' EXIT

# The shipped envoy/envoy.yaml with this run's ports and filter.
declare -A envoy_values=(
  ["port_value: 10000"]="port_value: $API_PORT"
  ["port_value: 9901"]="port_value: $ADMIN_PORT"
  ["port_value: 8081"]="port_value: $CONTROL_PORT"
  ["port_value: 8082"]="port_value: $UPSTREAM_PORT"
  ["filename: target/wasm32-wasip1/release/keygate.wasm"]="filename: $WASM"
)

# --webhook-allow-private: webhooks may call a receiver on this machine (docs/webhooks.md).
# --trusted-proxies: Envoy on this machine names the client of /oauth/token in X-Forwarded-For.
start_control() {
  "$CONTROL" serve --dev --listen "127.0.0.1:$CONTROL_PORT" --console-listen "127.0.0.1:$CONSOLE_PORT" \
    --db "$RUN_DIR/keygate.db" --webhook-allow-private --trusted-proxies 127.0.0.1 \
    >>"$RUN_DIR/control.log" 2>&1 &
  control_pid=$!
  control_started=$SECONDS
  echo "$control_pid" >"$RUN_DIR/control.pid"
}

: >"$RUN_DIR/control.log"
: >"$RUN_DIR/upstream.log"
: >"$RUN_DIR/envoy.log"
write_envoy_config envoy/envoy.yaml envoy_values
start_control
python3 scripts/demo_upstream.py --port "$UPSTREAM_PORT" >"$RUN_DIR/upstream.log" 2>&1 &
upstream_pid=$!
echo "$upstream_pid" >"$RUN_DIR/upstream.pid"
wait_for "http://127.0.0.1:$CONTROL_PORT/healthz" 30 "$control_pid" ||
  fail "the control service did not start (see $RUN_DIR/control.log)"
wait_for "http://127.0.0.1:$UPSTREAM_PORT/" 30 "$upstream_pid" ||
  fail "the demo upstream did not start (see $RUN_DIR/upstream.log)"
# No hot restart here, so no shared memory to clash with another Envoy on this machine.
"$ENVOY" -c "$RUN_DIR/envoy.yaml" --concurrency 2 --log-level info --disable-hot-restart \
  --service-node keygate-envoy >"$RUN_DIR/envoy.log" 2>&1 &
envoy_pid=$!
echo "$envoy_pid" >"$RUN_DIR/envoy.pid"
wait_for "http://127.0.0.1:$ADMIN_PORT/ready" 60 "$envoy_pid" ||
  fail "Envoy did not start (see $RUN_DIR/envoy.log)"

cat <<MSG

Keygate is running.
  API (Envoy + Keygate)  http://127.0.0.1:$API_PORT
  Envoy admin            http://127.0.0.1:$ADMIN_PORT   (stats: /stats/prometheus | grep keygate)
  control service        http://127.0.0.1:$CONTROL_PORT
  web console            http://127.0.0.1:$CONSOLE_PORT/console/   (sign in with the admin token)
  demo upstream          http://127.0.0.1:$UPSTREAM_PORT
  logs                   $RUN_DIR/{envoy,control,upstream}.log   (pids: $RUN_DIR/*.pid)
MSG
print_dev_tokens
url_export=""
if [ "$CONTROL_PORT" != 8081 ]; then url_export=" KEYGATE_URL=http://127.0.0.1:$CONTROL_PORT"; fi
cat <<MSG

Try it:
  export KEYGATE_ADMIN_TOKEN=$KEYGATE_ADMIN_TOKEN${url_export}
  $CONTROL keys create --name demo --scope list_models     # prints the key once
  curl -s http://127.0.0.1:$API_PORT/v1/models -H "Authorization: Bearer <the key>"
  curl -s http://127.0.0.1:$API_PORT/v1/models                 # 401 UNAUTHORIZED
  curl -s -X POST http://127.0.0.1:$API_PORT/v1/jobs -H "Authorization: Bearer <the key>"   # 403 OPERATION_NOT_ALLOWED
  curl -s -u '<key id>:<the key>' -d grant_type=client_credentials http://127.0.0.1:$API_PORT/oauth/token
                                          # an OAuth access token for the key; use it as the Bearer
  $CONTROL keys revoke <key id>                            # then the key gets 401 API_KEY_INACTIVE
  kill \$(cat $RUN_DIR/control.pid)   # Envoy keeps serving; the control service is restarted

Ctrl-C stops everything.
MSG

# Envoy or the upstream exiting stops everything; the control service exiting is survived.
component_exited() {
  local pid=$1 status=$2
  case $pid in
    "$envoy_pid")
      envoy_pid=""
      fail "Envoy $(ending "$status") (see $RUN_DIR/envoy.log)"
      ;;
    "$upstream_pid")
      upstream_pid=""
      fail "the demo upstream $(ending "$status") (see $RUN_DIR/upstream.log)"
      ;;
    "$control_pid")
      control_pid=""
      rm -f "$RUN_DIR/control.pid"
      restart_control "$status"
      ;;
    *) fail "lost track of the processes (wait answered '$pid')" ;;
  esac
}

restarts=0
delay_ms=$FIRST_DELAY_MS
restart_control() {
  local status=$1 finished code delay
  if ((SECONDS - control_started >= STABLE_SECONDS)); then
    restarts=0
    delay_ms=$FIRST_DELAY_MS
  fi
  if ((restarts >= MAX_RESTARTS)); then
    fail "control service $(ending "$status") (see $RUN_DIR/control.log) after $restarts restarts in a row; giving up"
  fi
  restarts=$((restarts + 1))
  delay=$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))
  say "control service $(ending "$status") (see $RUN_DIR/control.log); Envoy keeps serving from its last snapshot; restarting it in ${delay%.000}s (restart $restarts of $MAX_RESTARTS)"
  sleep "$delay" &
  timer_pid=$!
  finished="" code=0
  wait -n -p finished "$timer_pid" "$upstream_pid" "$envoy_pid" 2>/dev/null || code=$?
  if [ "$finished" != "$timer_pid" ]; then
    kill "$timer_pid" 2>/dev/null || true
    timer_pid=""
    component_exited "$finished" "$code"
  fi
  timer_pid=""
  delay_ms=$((delay_ms * 2 > MAX_DELAY_MS ? MAX_DELAY_MS : delay_ms * 2))
  echo "--- $(date '+%F %T') scripts/run.sh restarts the control service ---" >>"$RUN_DIR/control.log"
  start_control
  code=0
  wait_for "http://127.0.0.1:$CONTROL_PORT/healthz" 30 "$control_pid" "$upstream_pid" "$envoy_pid" || code=$?
  case $code in
    0) say "control service is back (pid $control_pid); the proxies catch up at their next refresh" ;;
    1) say "the restarted control service does not answer /healthz after 30 s (see $RUN_DIR/control.log)" ;;
    *) ;; # it or another component exited: the main loop hears of it
  esac
}

while true; do
  finished="" code=0
  # (stderr: bash would add its own "Killed" line for a child killed by a signal)
  wait -n -p finished "$control_pid" "$upstream_pid" "$envoy_pid" 2>/dev/null || code=$?
  component_exited "$finished" "$code"
done
