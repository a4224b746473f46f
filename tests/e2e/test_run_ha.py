"""`make run-ha` (scripts/run-ha.sh): a local PostgreSQL, two control-service replicas on it and
Envoy with both in its keygate_control cluster. It starts and serves; a replica killed with
SIGKILL is survived (Envoy syncs through the other) and restarted; Ctrl-C stops everything,
PostgreSQL included; the cluster is kept for the next run; PostgreSQL exiting stops everything.

run-ha.sh runs on free ports in a temporary directory, with the binaries the rest of the suite
uses (KEYGATE_WASM, KEYGATE_CONTROL_BIN, KEYGATE_ENVOY)."""
import os
import signal
import subprocess
import time

import pytest
import requests

from keygate_testkit.paths import ADMIN_TOKEN, CONTROL_BIN, ENVOY_BIN, ROOT, SYNC_TOKEN, WASM
from keygate_testkit.ports import free_port
from keygate_testkit.waiting import wait_until

START_SECONDS = 90
STOP_SECONDS = 30
COMPONENTS = ("postgres", "control-1", "control-2", "upstream", "envoy")


class RunHa:
    """scripts/run-ha.sh in its own process group, its output in a file."""

    def __init__(self, run_dir, output_path):
        self.dir = run_dir
        self.api_port, self.admin_port, self.upstream_port = free_port(), free_port(), free_port()
        self.control_ports = [free_port(), free_port()]
        self.postgres_port, self.redis_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("KEYGATE_DB", "KEYGATE_DATABASE_URL")}
        env.update(
            KEYGATE_RUN_DIR=str(self.dir),
            KEYGATE_API_PORT=str(self.api_port),
            KEYGATE_ENVOY_ADMIN_PORT=str(self.admin_port),
            KEYGATE_CONTROL_PORT=str(self.control_ports[0]),
            KEYGATE_CONTROL_PORT_2=str(self.control_ports[1]),
            KEYGATE_UPSTREAM_PORT=str(self.upstream_port),
            KEYGATE_POSTGRES_PORT=str(self.postgres_port),
            KEYGATE_REDIS_PORT=str(self.redis_port),
            KEYGATE_WASM=str(WASM),
            KEYGATE_CONTROL_BIN=str(CONTROL_BIN),
            KEYGATE_ENVOY=str(ENVOY_BIN),
            KEYGATE_ADMIN_TOKEN=ADMIN_TOKEN,
            KEYGATE_SYNC_TOKEN=SYNC_TOKEN,
            KEYGATE_RUN_RESTART_DELAY_MS="500",
        )
        self.output_path = output_path
        self.output = open(output_path, "wb")
        self.proc = subprocess.Popen(
            [str(ROOT / "scripts/run-ha.sh")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A shell ignores SIGINT if it starts with it ignored (as a background job's children
            # do), and then no trap can catch the Ctrl-C these tests send: start it as a
            # terminal would, whatever launched pytest.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            self.wait_for_output("Ctrl-C stops everything.", START_SECONDS)
        except AssertionError:
            self.close()
            raise

    def text(self):
        return self.output_path.read_text(errors="replace")

    def wait_for_output(self, needle, timeout):
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.proc.poll() is not None and needle not in self.text():
                raise AssertionError(f"run-ha.sh exited ({self.proc.returncode}) without {needle!r}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} from run-ha.sh within {timeout}s:\n{self.text()}")
            time.sleep(0.05)

    def wait_for_exit(self):
        try:
            return self.proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"run-ha.sh still running after {STOP_SECONDS}s:\n{self.text()}") from None

    def pid(self, name):
        return int((self.dir / f"{name}.pid").read_text())

    def pids(self):
        return {name: self.pid(name) for name in COMPONENTS}

    def control_url(self, replica, path):
        return f"https://127.0.0.1:{self.control_ports[replica]}{path}"

    @property
    def ca(self):
        """The development CA run-ha.sh made (scripts/dev-pki.sh): the replicas serve HTTPS."""
        return str(self.dir / "pki/ca.pem")

    def admin(self, replica, method, path, **kwargs):
        return requests.request(
            method, self.control_url(replica, path), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10,
            verify=self.ca, **kwargs
        )

    def create_key(self, replica):
        created = self.admin(replica, "POST", "/v1/keys", json={"name": "run-ha.sh", "scopes": ["list_models"]})
        assert created.status_code == 201, created.status_code
        return created.json()

    def envoy_status(self, key):
        return requests.get(
            f"http://127.0.0.1:{self.api_port}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10
        ).status_code

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.output.close()


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def control_hosts(run):
    """health_flags of each replica in Envoy's keygate_control cluster, by port."""
    text = requests.get(f"http://127.0.0.1:{run.admin_port}/clusters", timeout=5).text
    flags = {}
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == "keygate_control" and parts[2] == "health_flags":
            flags[int(parts[1].rsplit(":", 1)[1])] = parts[3]
    return flags


@pytest.fixture
def stopped_runs():
    runs = []
    yield runs
    for run in runs:
        run.close()


def test_run_ha_serves_survives_a_replica_and_ctrl_c_stops_everything(tmp_path, stopped_runs):
    run = RunHa(tmp_path / "run", tmp_path / "run.out")
    stopped_runs.append(run)
    # Envoy's first health check of each replica may time out while its workers still load the
    # filter (a 1 s timeout on a loaded machine): both replicas must be healthy soon after.
    healthy = {port: "healthy" for port in run.control_ports}
    wait_until(lambda: control_hosts(run) == healthy, timeout=10, what="both replicas healthy in Envoy")
    created = run.create_key(0)
    wait_until(lambda: run.envoy_status(created["key"]) == 200, timeout=15, what="the new key to reach Envoy")
    # The other replica sees the same key.
    assert run.admin(1, "GET", f"/v1/keys/{created['id']}").json()["name"] == "run-ha.sh"
    # Both replicas share their fleet counts through the run's Redis.
    for n in (0, 1):
        metrics = requests.get(run.control_url(n, "/metrics"), timeout=5, verify=run.ca).text
        assert 'keygate_control_fleet_backend{backend="redis"} 1' in metrics
        wait_until(lambda: "keygate_control_fleet_redis_up 1" in requests.get(
            run.control_url(n, "/metrics"), timeout=5, verify=run.ca).text, timeout=10,
            what=f"replica {n + 1} flushing to Redis")

    killed = run.pid("control-1")
    os.kill(killed, signal.SIGKILL)
    run.wait_for_output(
        f"control-service replica 1 was killed by SIGKILL (see {run.dir / 'control-1.log'}); the other replica serves",
        timeout=10,
    )
    later = run.create_key(1)
    wait_until(lambda: run.envoy_status(later["key"]) == 200, timeout=15, what="a key made on replica 2 to reach Envoy")
    assert run.admin(1, "PATCH", f"/v1/keys/{created['id']}", json={"active": False}).status_code == 200
    wait_until(lambda: run.envoy_status(created["key"]) == 401, timeout=5, what="the revocation to reach Envoy")
    run.wait_for_output("control-service replica 1 restarted", timeout=15)
    assert run.pid("control-1") != killed
    wait_until(lambda: requests.get(run.control_url(0, "/healthz"), timeout=1, verify=run.ca).ok, timeout=15, what="replica 1 back")

    pids = run.pids()
    # A terminal's Ctrl-C goes to the whole foreground process group.
    os.killpg(run.proc.pid, signal.SIGINT)
    assert run.wait_for_exit() == 0, run.text()
    assert "stopping..." in run.text()
    for name, pid in pids.items():
        wait_until(lambda: gone(pid), timeout=5, what=f"the {name} process to be stopped")
    assert not list(run.dir.glob("*.pid"))

    # The next run keeps the cluster, and so the keys; PostgreSQL exiting stops everything.
    again = RunHa(tmp_path / "run", tmp_path / "again.out")
    stopped_runs.append(again)
    assert "creating a PostgreSQL cluster" in run.text() and "creating a PostgreSQL cluster" not in again.text()
    wait_until(lambda: again.envoy_status(later["key"]) == 200, timeout=15, what="the kept key to reach Envoy")
    assert again.envoy_status(created["key"]) == 401
    others = again.pids()
    os.kill(others.pop("postgres"), signal.SIGKILL)
    assert again.wait_for_exit() == 1, again.text()
    assert f"PostgreSQL was killed by SIGKILL (see {again.dir / 'postgres.log'})" in again.text()
    for name, pid in others.items():
        wait_until(lambda: gone(pid), timeout=15, what=f"the {name} process to be stopped")
