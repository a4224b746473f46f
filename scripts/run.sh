#!/usr/bin/env bash
# `make run`: control service, demo upstream and Envoy with the Keygate filter, on the fixed
# local ports. Ctrl-C (or SIGTERM) stops all of it.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY=.venv/bin/envoy
CONTROL=target/release/keygate-control
RUN_DIR=.run
mkdir -p "$RUN_DIR"

dev_tokens=""
if [ -z "${KEYGATE_ADMIN_TOKEN:-}" ]; then
  export KEYGATE_ADMIN_TOKEN=dev-admin-token
  dev_tokens=1
fi
if [ -z "${KEYGATE_SYNC_TOKEN:-}" ]; then
  export KEYGATE_SYNC_TOKEN=dev-sync-token
  dev_tokens=1
fi

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  exit 0
}
trap stop INT TERM EXIT

# Polls a URL until it answers (any HTTP status), for at most $2 seconds.
wait_for() {
  local url=$1 seconds=$2 i
  for ((i = 0; i < seconds * 10; i++)); do
    if curl -s -o /dev/null "$url"; then return 0; fi
    sleep 0.1
  done
  echo "gave up waiting for $url" >&2
  return 1
}

"$CONTROL" serve --dev --listen 127.0.0.1:8081 --db "$RUN_DIR/keygate.db" > "$RUN_DIR/control.log" 2>&1 &
pids+=($!)
python3 scripts/demo_upstream.py --port 8082 > "$RUN_DIR/upstream.log" 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:8081/healthz 30
wait_for http://127.0.0.1:8082/ 30
"$ENVOY" -c envoy/envoy.yaml --concurrency 2 --log-level info > "$RUN_DIR/envoy.log" 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:9901/ready 60

cat <<MSG

Keygate is running.
  API (Envoy + Keygate)  http://127.0.0.1:10000
  Envoy admin            http://127.0.0.1:9901   (stats: /stats/prometheus | grep keygate)
  control service        http://127.0.0.1:8081
  demo upstream          http://127.0.0.1:8082
  logs                   $RUN_DIR/{envoy,control,upstream}.log
MSG
if [ -n "$dev_tokens" ]; then
  cat <<MSG
  development tokens     KEYGATE_ADMIN_TOKEN=$KEYGATE_ADMIN_TOKEN KEYGATE_SYNC_TOKEN=$KEYGATE_SYNC_TOKEN
                         (set both variables before 'make run' to choose your own)
MSG
fi
cat <<MSG

Try it:
  export KEYGATE_ADMIN_TOKEN=$KEYGATE_ADMIN_TOKEN
  $CONTROL keys create --name demo --scope list_models     # prints the key once
  curl -s http://127.0.0.1:10000/v1/models -H "Authorization: Bearer <the key>"
  curl -s http://127.0.0.1:10000/v1/models                 # 401 UNAUTHORIZED
  curl -s -X POST http://127.0.0.1:10000/v1/jobs -H "Authorization: Bearer <the key>"   # 403 OPERATION_NOT_ALLOWED
  $CONTROL keys revoke <key id>                            # then the key gets 401 API_KEY_INACTIVE

Ctrl-C stops everything.
MSG

# Exit (and stop the rest) as soon as any one of them exits.
wait -n "${pids[@]}"
echo "a component exited; see $RUN_DIR/*.log" >&2
