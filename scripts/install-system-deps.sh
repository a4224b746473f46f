#!/usr/bin/env bash
# Installs the Debian packages `make test` and `make oci` need and a fresh machine lacks:
#   curl            make run's readiness checks
#   docker-compose  validates envoy/docker-compose.yaml (`docker-compose config`; no engine needed)
#   skopeo          checks and copies the OCI image of keygate.wasm (make oci, pushing it)
#   postgresql      the second backend: tests start throwaway clusters (initdb + pg_ctl)
#   prometheus      promtool checks and unit-tests envoy/prometheus/keygate-rules.yaml; the
#                   server scrapes a test Envoy for the Grafana dashboard's queries
#   chromium        the headless browser the web console's tests drive through Playwright
#                   (tests/e2e/test_console.py; Playwright's own browser download is never used)
# Idempotent: installs only what is missing; does nothing (and needs no root) when all is there.
# Non-interactive, for CI running as root: .ci/run calls it.
set -euo pipefail

packages=(curl docker-compose skopeo prometheus postgresql chromium)
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages present: ${packages[*]}"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing: ${missing[*]}"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
