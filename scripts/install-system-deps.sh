#!/usr/bin/env bash
# Installs the Debian packages a make target needs and the machine lacks. `make test`, `make run`,
# `make run-ha`, `make bench` and `make oci` call it themselves with their group, so the README's
# commands work on a fresh machine; `make system-deps` installs every group.
#
#   scripts/install-system-deps.sh [GROUP...]     (no group: all of them)
#
# Groups and their packages:
#   run      curl            make run's readiness checks
#   run-ha   curl            as run
#            postgresql      the replicas' database (a cluster of the project's own, initdb + pg_ctl)
#            redis-server    the fleet's rate-limit counts the replicas share
#            openssl         the replicas' development certificate (scripts/dev-pki.sh)
#   test     curl            make run's readiness checks, exercised by the suite
#            docker-compose  validates envoy/docker-compose.yaml (`docker-compose config`; no engine)
#            skopeo          checks the OCI image of keygate.wasm (make oci)
#            postgresql      the second backend: tests start throwaway clusters
#            redis-server    the replicas' fleet counts: tests start throwaway servers
#            prometheus      promtool checks the alert rules; the server scrapes a test Envoy
#            chromium        the headless browser the console's tests drive through Playwright
#                            (Playwright's own browser download is never used)
#            binutils        nm: the native module's symbols against Envoy's exports
#            g++             libFuzzer's C++, which make lint compiles to check the fuzz targets
#   bench    wrk             the load generator of make bench
#   bench-fleet postgresql redis-server   make bench-fleet-sync, bench-usage and bench-fanout (replicas)
#   oci      skopeo          make oci reads the image it wrote
#
# Idempotent and quick: asks dpkg what is installed and does nothing (and needs no root) when all
# is there. Installs as root, or through sudo when it is present; otherwise it names the missing
# packages and the command that installs them, and fails.
set -euo pipefail

packages_of() {
  case $1 in
    run) echo curl ;;
    run-ha) echo curl postgresql redis-server openssl ;;
    test) echo curl docker-compose skopeo postgresql redis-server prometheus chromium binutils g++ ;;
    bench) echo wrk ;;
    bench-fleet) echo postgresql redis-server ;;
    oci) echo skopeo ;;
    *)
      echo "install-system-deps.sh: unknown group '$1' (groups: run run-ha test bench bench-fleet oci)" >&2
      return 1
      ;;
  esac
}

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(run run-ha test bench bench-fleet oci)

wanted=()
for group in "${groups[@]}"; do
  # Asked first, outside the loop's word list, where a failure would not stop the script.
  packages=$(packages_of "$group") || exit 2
  for package in $packages; do
    [[ " ${wanted[*]-} " == *" $package "* ]] || wanted+=("$package")
  done
done

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-system-deps.sh: this is not a Debian-like system (no dpkg-query)." >&2
  echo "  Keygate's ${groups[*]} needs these programs from your package manager: ${wanted[*]}" >&2
  exit 1
fi

missing=()
for package in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages present: ${wanted[*]}"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "Keygate needs these Debian packages for ${groups[*]}: ${missing[*]}" >&2
    echo "  this is not root and there is no sudo: as root, run" >&2
    echo "    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    echo "  (or: scripts/install-system-deps.sh ${groups[*]}), then run the make command again." >&2
    exit 1
  fi
  sudo=(sudo)
fi
echo "installing Debian packages for ${groups[*]}: ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
