"""`make run` (scripts/run.sh) when a component dies: the control service is restarted while
Envoy serves from its snapshot, and Envoy or the upstream exiting stops everything. And the
demo upstream it starts: fast on keep-alive connections, with a working delay header.

run.sh runs on free ports in a temporary directory, with the binaries the rest of the suite
uses (KEYGATE_WASM, KEYGATE_CONTROL_BIN, KEYGATE_ENVOY)."""
import http.client
import json
import os
import signal
import statistics
import subprocess
import time

import pytest
import requests

from keygate_testkit.paths import ADMIN_TOKEN, CONTROL_BIN, ENVOY_BIN, ROOT, SYNC_TOKEN, WASM
from keygate_testkit.ports import free_port
from keygate_testkit.upstream import Upstream
from keygate_testkit.waiting import wait_until

START_SECONDS = 90
STOP_SECONDS = 30
# The filter retries the control service with a backoff capped at 30 s.
CATCH_UP_SECONDS = 45


class Run:
    """scripts/run.sh in its own process group, its output in a file."""

    def __init__(self, tmp_path, cwd=None, **env):
        self.dir = tmp_path / "run"
        self.api_port, self.admin_port = free_port(), free_port()
        self.control_port, self.upstream_port = free_port(), free_port()
        self.console_port = free_port()
        self.env = dict(
            os.environ,
            KEYGATE_RUN_DIR=str(self.dir),
            KEYGATE_API_PORT=str(self.api_port),
            KEYGATE_ENVOY_ADMIN_PORT=str(self.admin_port),
            KEYGATE_CONTROL_PORT=str(self.control_port),
            KEYGATE_UPSTREAM_PORT=str(self.upstream_port),
            KEYGATE_CONSOLE_PORT=str(self.console_port),
            KEYGATE_WASM=str(WASM),
            KEYGATE_CONTROL_BIN=str(CONTROL_BIN),
            KEYGATE_ENVOY=str(ENVOY_BIN),
            KEYGATE_ADMIN_TOKEN=ADMIN_TOKEN,
            KEYGATE_SYNC_TOKEN=SYNC_TOKEN,
        )
        self.env.update(env)
        self.output_path = tmp_path / "run.out"
        self.output = open(self.output_path, "wb")
        self.proc = subprocess.Popen(
            [str(ROOT / "scripts/run.sh")],
            env=self.env,
            cwd=cwd,
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
                raise AssertionError(f"run.sh exited ({self.proc.returncode}) without {needle!r}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} from run.sh within {timeout}s:\n{self.text()}")
            time.sleep(0.05)

    def wait_for_exit(self):
        try:
            return self.proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"run.sh still running after {STOP_SECONDS}s:\n{self.text()}") from None

    def pid(self, name):
        return int((self.dir / f"{name}.pid").read_text())

    def pids(self):
        return {name: self.pid(name) for name in ("control", "upstream", "envoy")}

    def log(self, name):
        return self.dir / f"{name}.log"

    def envoy_get(self, key):
        return requests.get(
            f"http://127.0.0.1:{self.api_port}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )

    def control_url(self, path):
        return f"http://127.0.0.1:{self.control_port}{path}"

    def create_key(self):
        created = requests.post(
            self.control_url("/v1/keys"),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            json={"name": "run.sh", "scopes": ["list_models"]},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        return created.json()

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


def control_is_down(run):
    try:
        requests.get(run.control_url("/healthz"), timeout=2)
    except requests.ConnectionError:
        return True
    return False


@pytest.fixture
def run(tmp_path):
    # The restart waits 3 s, so that the requests below surely fall in the outage.
    started = Run(tmp_path, KEYGATE_RUN_RESTART_DELAY_MS="3000", KEYGATE_RUN_RESTARTS="5")
    yield started
    started.close()


def test_envoy_serves_through_a_control_outage_and_the_control_service_comes_back(run):
    created = run.create_key()
    key, key_id = created["key"], created["id"]
    wait_until(lambda: run.envoy_get(key).status_code == 200, timeout=15, what="the new key to reach Envoy")
    # The Envoy enrolled with the development enrollment token and is in the fleet list.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    live = wait_until(lambda: [proxy for proxy in requests.get(run.control_url("/v1/proxies"), headers=admin,
                                                               timeout=5).json()["proxies"]
                               if proxy["state"] == "live"], timeout=10, what="make run's Envoy listed live")
    assert [proxy["name"] for proxy in live] == ["keygate-envoy"]
    killed = run.pid("control")

    os.kill(killed, signal.SIGKILL)
    run.wait_for_output(
        f"control service was killed by SIGKILL (see {run.log('control')}); "
        "Envoy keeps serving from its last snapshot; restarting it in 3s (restart 1 of 5)",
        timeout=10,
    )
    assert control_is_down(run)
    for _ in range(5):
        answer = run.envoy_get(key)
        assert answer.status_code == 200, answer.text
        assert answer.json()["headers"]["x-keygate-key-id"] == key_id
    assert control_is_down(run), "the control service came back too early for this to show anything"

    run.wait_for_output("control service is back", timeout=40)
    assert run.pid("control") != killed
    assert requests.get(run.control_url("/healthz"), timeout=5).ok
    revoke = subprocess.run(
        [str(CONTROL_BIN), "keys", "revoke", key_id],
        env=dict(run.env, KEYGATE_URL=run.control_url("")),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert revoke.returncode == 0, revoke.stderr
    started = time.monotonic()
    wait_until(
        lambda: run.envoy_get(key).status_code == 401, timeout=CATCH_UP_SECONDS, what="the revocation to reach Envoy"
    )
    print(f"revocation reached Envoy {time.monotonic() - started:.1f}s after the restarted service took it")
    assert run.envoy_get(key).json()["error"]["code"] == "API_KEY_INACTIVE"

    others = run.pids()
    os.kill(others.pop("envoy"), signal.SIGKILL)
    assert run.wait_for_exit() == 1, run.text()
    assert f"Envoy was killed by SIGKILL (see {run.log('envoy')})" in run.text()
    for name, pid in others.items():
        wait_until(lambda: gone(pid), timeout=5, what=f"the {name} process to be stopped")
    assert not list(run.dir.glob("*.pid"))


def test_the_upstream_exiting_stops_everything(run):
    others = run.pids()
    os.kill(others.pop("upstream"), signal.SIGKILL)
    assert run.wait_for_exit() == 1, run.text()
    assert f"the demo upstream was killed by SIGKILL (see {run.log('upstream')})" in run.text()
    for name, pid in others.items():
        wait_until(lambda: gone(pid), timeout=5, what=f"the {name} process to be stopped")


def test_ctrl_c_stops_everything(run):
    pids = run.pids()
    # A terminal's Ctrl-C goes to the whole foreground process group.
    os.killpg(run.proc.pid, signal.SIGINT)
    assert run.wait_for_exit() == 0, run.text()
    assert "stopping..." in run.text()
    for name, pid in pids.items():
        wait_until(lambda: gone(pid), timeout=5, what=f"the {name} process to be stopped")


def test_run_gives_up_on_a_control_service_that_keeps_exiting(tmp_path):
    marker = tmp_path / "started-once"
    flaky = tmp_path / "flaky-control"
    flaky.write_text(
        "#!/bin/sh\n"
        f"if [ -e '{marker}' ]; then echo 'refusing to start again' >&2; exit 3; fi\n"
        f": > '{marker}'\n"
        f"exec '{CONTROL_BIN}' \"$@\"\n"
    )
    flaky.chmod(0o755)
    run = Run(tmp_path, KEYGATE_CONTROL_BIN=str(flaky), KEYGATE_RUN_RESTARTS="2", KEYGATE_RUN_RESTART_DELAY_MS="100")
    try:
        envoy = run.pid("envoy")
        os.kill(run.pid("control"), signal.SIGKILL)
        assert run.wait_for_exit() == 1, run.text()
        text = run.text()
        assert "restarting it in 0.100s (restart 1 of 2)" in text
        assert "restarting it in 0.200s (restart 2 of 2)" in text
        assert f"control service exited with status 3 (see {run.log('control')}) after 2 restarts in a row; giving up" in text
        assert "refusing to start again" in run.log("control").read_text()
        wait_until(lambda: gone(envoy), timeout=5, what="Envoy to be stopped")
    finally:
        run.close()


def test_demo_upstream_answers_keep_alive_requests_fast(upstream):
    connection = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=10)
    try:
        connection.connect()
        socket_used = connection.sock
        latencies = []
        for i in range(200):
            started = time.perf_counter()
            connection.request("GET", f"/v1/models?i={i}")
            response = connection.getresponse()
            body = response.read()
            latencies.append(time.perf_counter() - started)
            assert response.status == 200 and not response.will_close
            assert connection.sock is socket_used, "the upstream closed the keep-alive connection"
        assert b'"path": "/v1/models?i=199"' in body
    finally:
        connection.close()
    median_ms = statistics.median(latencies) * 1000
    print(f"demo upstream keep-alive: median {median_ms:.3f} ms, max {max(latencies) * 1000:.3f} ms")
    # Nagle and delayed ACKs made this ~42 ms; a loaded 2-core machine stays far below 5 ms.
    assert median_ms < 5, f"median {median_ms:.1f} ms over 200 keep-alive requests"


def test_demo_upstream_reads_a_chunked_body_and_keeps_the_connection(upstream):
    connection = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=10)
    try:
        connection.request("POST", "/v1/jobs", body=iter([b"hello ", b"world"]), encode_chunked=True)
        first = connection.getresponse()
        assert first.status == 200 and not first.will_close
        assert json.loads(first.read())["headers"]["transfer-encoding"] == "chunked"
        socket_used = connection.sock
        connection.request("GET", "/after")
        second = connection.getresponse()
        assert second.status == 200, second.read()
        assert b'"path": "/after"' in second.read()
        assert connection.sock is socket_used
    finally:
        connection.close()


def timed_get(port, headers):
    started = time.monotonic()
    response = requests.get(f"http://127.0.0.1:{port}/", headers=headers, timeout=10)
    return response, time.monotonic() - started


def test_demo_upstream_delay_header(upstream):
    answer, elapsed = timed_get(upstream.port, {"x-demo-delay-ms": "300"})
    assert answer.status_code == 200 and elapsed >= 0.3, elapsed
    refused, _ = timed_get(upstream.port, {"x-demo-delay-ms": "soon"})
    assert refused.status_code == 400
    assert refused.json() == {"error": "x-demo-delay-ms: not a whole number of milliseconds"}

    custom = Upstream("--delay-header", "X-Hold-Ms")
    try:
        answer, elapsed = timed_get(custom.port, {"x-hold-ms": "300"})
        assert answer.status_code == 200 and elapsed >= 0.3, elapsed
        # The default header means nothing to this one: answered at once, however slow the
        # machine, well before 20 s.
        answer, elapsed = timed_get(custom.port, {"x-demo-delay-ms": "20000"})
        assert answer.status_code == 200 and elapsed < 10, elapsed
    finally:
        custom.close()


def test_demo_upstream_status_and_late_body_headers(upstream):
    failed, _ = timed_get(upstream.port, {"x-demo-status": "503"})
    assert failed.status_code == 503 and failed.json()["path"] == "/"
    odd, _ = timed_get(upstream.port, {"x-demo-status": "599"})
    assert odd.status_code == 599
    for bad in ["99", "600", "x"]:
        refused, _ = timed_get(upstream.port, {"x-demo-status": bad})
        assert refused.json() == {"error": "x-demo-status: not a status from 200 to 599"}, bad
    started = time.monotonic()
    with requests.get(
        f"http://127.0.0.1:{upstream.port}/", headers={"x-demo-body-delay-ms": "400"}, stream=True, timeout=10
    ) as late:
        assert late.status_code == 200
        headers_after = time.monotonic() - started
        assert late.json()["path"] == "/"
        assert time.monotonic() - started >= 0.4
    assert headers_after < 0.4, headers_after


def test_make_run_passes_the_secret_scanning_keys_on(tmp_path):
    """A relative KEYGATE_SECRET_SCANNING_KEYS is read from where the caller stands; a report
    signed by that key revokes a key of the running demo."""
    from keygate_testkit.secret_scanning import GitHubSigner, post_report, report_body, write_keys

    github = GitHubSigner()
    write_keys(tmp_path / "github-keys.json", github)
    started = Run(tmp_path, cwd=tmp_path, KEYGATE_SECRET_SCANNING_KEYS="github-keys.json")
    try:
        key = started.create_key()
        answer = post_report(started.control_url(""), github, report_body(key["key"]))
        assert answer.status_code == 200 and answer.json()[0]["label"] == "true_positive", answer.text
        wait_until(lambda: started.envoy_get(key["key"]).status_code == 401, timeout=CATCH_UP_SECONDS,
                   what="the leaked key refused by Envoy")
    finally:
        started.close()
