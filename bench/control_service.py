"""A `keygate-control serve` for the control-service benchmarks (bench/replicas.py,
bench/fleet_sync.py): on a SQLite file (a Path) or a PostgreSQL URL, with bench tokens,
returned once it answers /healthz."""

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pgcluster import free_port  # noqa: E402

CONTROL = Path(os.environ.get("KEYGATE_CONTROL_BIN", ROOT / "target/release/keygate-control"))
ADMIN = "bench-admin-token"
SYNC = "bench-sync-token"
START_DEADLINE_SECONDS = 60


def log(message):
    print(message, file=sys.stderr, flush=True)


def control_env(database):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
    env.update(KEYGATE_ADMIN_TOKEN=ADMIN, KEYGATE_SYNC_TOKEN=SYNC)
    if isinstance(database, str):
        env["KEYGATE_DATABASE_URL"] = database
    else:
        env["KEYGATE_DB"] = str(database)
    return env


def serve(database, log_path):
    """Starts the service; returns the process and its URL."""
    port = free_port()
    process = subprocess.Popen([str(CONTROL), "serve", "--listen", f"127.0.0.1:{port}"],
                               env=control_env(database), stdout=open(log_path, "ab"),
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        assert process.poll() is None, Path(log_path).read_text()
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("control service did not start")


def stop(process):
    process.terminate()
    process.wait(timeout=30)
