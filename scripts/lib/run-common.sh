# What scripts/run.sh (`make run`) and scripts/run-ha.sh (`make run-ha`) share: sourced by each
# once it stands in the repository root, after it has set
#   script        its name in messages (scripts/run.sh)
#   make_target   the make target that runs it (run)
#   caller_dir    where the caller stood
#   RUN_DIR       its run folder unless KEYGATE_RUN_DIR says otherwise (.run)
# It checks the bash version, and sets ENVOY, CONTROL, WASM and RUN_DIR (a path from the
# environment is relative to where the caller stands; a default, to the repo), and API_PORT,
# ADMIN_PORT, UPSTREAM_PORT and MAX_RESTARTS from the environment. The functions below are the
# rest of the common part; `fail` calls the script's own `stop`.

if ((BASH_VERSINFO[0] < 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] < 1))); then
  echo "$script needs bash 5.1 or later (wait -n -p); this is $BASH_VERSION" >&2
  exit 1
fi

# A path from the environment is relative to where the caller stands; a default, to the repo.
from_caller() {
  case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$caller_dir/$1" ;;
  esac
}
ENVOY=.venv/bin/envoy
CONTROL=target/release/keygate-control
WASM=target/wasm32-wasip1/release/keygate.wasm
if [ -n "${KEYGATE_ENVOY:-}" ]; then ENVOY=$(from_caller "$KEYGATE_ENVOY"); fi
if [ -n "${KEYGATE_CONTROL_BIN:-}" ]; then CONTROL=$(from_caller "$KEYGATE_CONTROL_BIN"); fi
if [ -n "${KEYGATE_WASM:-}" ]; then WASM=$(from_caller "$KEYGATE_WASM"); fi
if [ -n "${KEYGATE_RUN_DIR:-}" ]; then RUN_DIR=$(from_caller "$KEYGATE_RUN_DIR"); fi
# GitHub's secret scanning public keys (docs/security.md, "Leaked keys"): passed on to the
# control service, which reads it from the environment, as a path from where the caller stands.
if [ -n "${KEYGATE_SECRET_SCANNING_KEYS:-}" ]; then
  KEYGATE_SECRET_SCANNING_KEYS=$(from_caller "$KEYGATE_SECRET_SCANNING_KEYS")
  export KEYGATE_SECRET_SCANNING_KEYS
fi
API_PORT=${KEYGATE_API_PORT:-10000}
ADMIN_PORT=${KEYGATE_ENVOY_ADMIN_PORT:-9901}
UPSTREAM_PORT=${KEYGATE_UPSTREAM_PORT:-8082}
MAX_RESTARTS=${KEYGATE_RUN_RESTARTS:-5}

# Exits unless every argument is a port or a count.
check_numbers() {
  local value
  for value in "$@"; do
    if ! [[ $value =~ ^[0-9]{1,5}$ ]]; then
      echo "$script: '$value' is not a port or count (see the variables at the top of the script)" >&2
      exit 1
    fi
  done
}

# Exits unless Envoy, the control binary and the filter are there.
check_binaries() {
  local file
  for file in "$ENVOY" "$CONTROL" "$WASM"; do
    if [ ! -e "$file" ]; then
      echo "$script: $file is missing: run 'make build venv' (or 'make $make_target')" >&2
      exit 1
    fi
  done
}

# Development tokens for what the caller's environment leaves unset; dev_tokens says if any.
dev_tokens=""
use_dev_tokens() {
  if [ -z "${KEYGATE_ADMIN_TOKEN:-}" ]; then
    export KEYGATE_ADMIN_TOKEN=dev-admin-token
    dev_tokens=1
  fi
  if [ -z "${KEYGATE_SYNC_TOKEN:-}" ]; then
    export KEYGATE_SYNC_TOKEN=dev-sync-token
    dev_tokens=1
  fi
  # Envoy enrolls with it for a credential of its own (docs/security.md, "Proxy identity").
  if [ -z "${KEYGATE_ENROLLMENT_TOKEN:-}" ]; then
    export KEYGATE_ENROLLMENT_TOKEN=kge_dev-enrollment-token
    dev_tokens=1
  fi
}

# OAuth 2.0 (docs/security.md): the key that seals the access-token signing keys. Unset, one is
# made once in the run directory (readable by this user only) and kept, so tokens and signing
# keys survive a restart; production takes it from a secret store instead.
use_sealing_key() {
  if [ -n "${KEYGATE_OAUTH_SEALING_KEY:-}" ]; then return; fi
  local file="$RUN_DIR/oauth-sealing-key"
  if [ ! -s "$file" ]; then
    (umask 077 && head -c 32 /dev/urandom | base64 >"$file.tmp" && mv "$file.tmp" "$file")
  fi
  KEYGATE_OAUTH_SEALING_KEY=$(cat "$file")
  export KEYGATE_OAUTH_SEALING_KEY
}

# The development tokens' lines of the banner, when they are in use.
print_dev_tokens() {
  if [ -n "$dev_tokens" ]; then
    cat <<MSG
  development tokens     KEYGATE_ADMIN_TOKEN=$KEYGATE_ADMIN_TOKEN KEYGATE_SYNC_TOKEN=$KEYGATE_SYNC_TOKEN
                         KEYGATE_ENROLLMENT_TOKEN=$KEYGATE_ENROLLMENT_TOKEN
                         (set the variables before 'make $make_target' to choose your own)
MSG
  fi
}

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# How a child ended, from its wait status.
ending() {
  local status=$1
  if ((status > 128)); then
    echo "was killed by SIG$(kill -l $((status - 128)) 2>/dev/null || echo "$((status - 128))")"
  else
    echo "exited with status $status"
  fi
}

fail() {
  say "$*"
  stop 1
}

# Polls a URL until it answers (any HTTP status), for at most $2 seconds. Returns 2 at once
# if one of the pids given after it has exited.
wait_for() {
  local url=$1 seconds=$2 i pid
  shift 2
  for ((i = 0; i < seconds * 10; i++)); do
    if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
    for pid in "$@"; do
      kill -0 "$pid" 2>/dev/null || return 2
    done
    sleep 0.1
  done
  return 1
}

# $RUN_DIR/envoy.yaml: the shipped Envoy configuration $1 with each text that is a key of the
# associative array named $2 replaced by its value.
write_envoy_config() {
  local source=$1 text placeholder
  local -n values=$2
  text=$(<"$source")
  local shipped i=0
  # Through placeholders, so that one replacement cannot be taken for another's original.
  for shipped in "${!values[@]}"; do
    if [[ $text != *"$shipped"* ]]; then
      echo "$script: $source no longer contains '$shipped'" >&2
      return 1
    fi
    placeholder="@@keygate-run-$i@@"
    text=${text//"$shipped"/"$placeholder"}
    i=$((i + 1))
  done
  i=0
  for shipped in "${!values[@]}"; do
    placeholder="@@keygate-run-$i@@"
    text=${text//"$placeholder"/"${values[$shipped]}"}
    i=$((i + 1))
  done
  printf '%s\n' "$text" >"$RUN_DIR/envoy.yaml"
}
