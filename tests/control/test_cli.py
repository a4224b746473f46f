"""The `keygate-control keys` client against a running service."""

import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import requests

from conftest import (ADMIN_TOKEN, REPO_ROOT, START_DEADLINE_SECONDS, STOP_DEADLINE_SECONDS, control_binary,
                      free_port)

RUN_DEADLINE_SECONDS = 20
NOT_KEYGATE = "did not answer like a Keygate control service"


def cli(service, *args, token=ADMIN_TOKEN):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
    env["KEYGATE_URL"] = service.url
    if token is not None:
        env["KEYGATE_ADMIN_TOKEN"] = token
    return subprocess.run([str(control_binary()), "keys", *args], env=env, capture_output=True,
                          text=True, timeout=RUN_DEADLINE_SECONDS)


def test_create_prints_the_secret_once_and_list_shows_it_masked(service, team):
    result = cli(service, "create", "--name", "cli key", "--team", team, "--scope", "submit_job",
                 "--allow-ip", "10.0.0.0/8", "--plan", "pro", "--per-minute", "7", "--environment", "test")
    assert result.returncode == 0, result.stderr
    secret_lines = [line for line in result.stdout.splitlines() if line.startswith("Secret: ")]
    assert len(secret_lines) == 1
    secret = secret_lines[0].removeprefix("Secret: ")
    assert secret.startswith("pk_test_") and len(secret) == 48
    assert "shown only once" in result.stdout
    listed = cli(service, "list", "--team", team)
    assert listed.returncode == 0, listed.stderr
    assert "cli key" in listed.stdout and f"pk_test_…{secret[-4:]}" in listed.stdout
    assert secret not in listed.stdout


def test_json_output_and_revoke_update_rotate_delete(service, team):
    created = cli(service, "--json", "create", "--name", "json key", "--team", team)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["key"].startswith("pk_live_") and "shown only once" in created.stderr
    listed = json.loads(cli(service, "list", "--team", team, "--json").stdout)
    assert [item["id"] for item in listed["keys"]] == [key["id"]] and "key" not in listed["keys"][0]
    revoked = cli(service, "revoke", key["id"])
    assert revoked.returncode == 0 and "Revoked" in revoked.stdout
    shown = json.loads(cli(service, "show", key["id"], "--json").stdout)
    assert shown["active"] is False
    updated = json.loads(cli(service, "update", key["id"], "--active", "true", "--per-day", "5",
                             "--name", "renamed", "--json").stdout)
    assert updated["active"] is True and updated["name"] == "renamed" and updated["limits"]["per_day"] == 5
    updated = json.loads(cli(service, "update", key["id"], "--per-minute", "3", "--json").stdout)
    assert updated["limits"]["per_day"] == 5 and updated["limits"]["per_minute"] == 3
    rotated = cli(service, "rotate", key["id"], "--grace-seconds", "60")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.count("Secret: pk_live_") == 1
    deleted = cli(service, "delete", key["id"])
    assert deleted.returncode == 0 and "Deleted" in deleted.stdout
    assert cli(service, "show", key["id"]).returncode != 0


def test_api_errors_print_the_message_and_fail(service):
    result = cli(service, "create", "--name", "bad", "--allow-ip", "10.0.0.0/33")
    assert result.returncode != 0
    assert 'allowed_ips[0]: invalid IP or CIDR "10.0.0.0/33"' in result.stderr
    result = cli(service, "list", token="wrong")
    assert result.returncode != 0 and "UNAUTHORIZED" in result.stderr
    result = cli(service, "list", token=None)
    assert result.returncode != 0 and "KEYGATE_ADMIN_TOKEN" in result.stderr


@pytest.fixture
def impostor():
    """The demo upstream on a free loopback port: answers any request with 200 and a JSON echo
    of it, so it looks like a service but is not Keygate."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo_upstream.py"), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while True:
            assert process.poll() is None, "demo upstream exited early"
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"demo upstream not up within {START_DEADLINE_SECONDS}s"
            time.sleep(0.05)
        yield SimpleNamespace(url=url)
    finally:
        process.terminate()
        process.wait(timeout=STOP_DEADLINE_SECONDS)


@pytest.mark.parametrize("args, request_line", [
    (["create", "--name", "k"], "POST /v1/keys → 200 application/json"),
    (["--json", "create", "--name", "k"], "POST /v1/keys → 200 application/json"),
    (["list", "--team", "a"], "GET /v1/keys → 200 application/json"),
    (["show", "key_abc"], "GET /v1/keys/key_abc → 200 application/json"),
    (["rotate", "key_abc"], "POST /v1/keys/key_abc/rotate → 200 application/json"),
    (["revoke", "key_abc"], "PATCH /v1/keys/key_abc → 200 application/json"),
    (["delete", "key_abc"], "DELETE /v1/keys/key_abc → 200 application/json"),
    (["usage", "key_abc"], "GET /v1/keys/key_abc/usage → 200 application/json"),
], ids=["create", "create-json", "list", "show", "rotate", "revoke", "delete", "usage"])
def test_a_server_that_is_not_keygate_is_refused(impostor, args, request_line):
    result = cli(impostor, *args)
    assert result.returncode != 0, result.stdout
    assert result.stdout == ""
    assert f"{impostor.url} {NOT_KEYGATE} ({request_line}" in result.stderr, result.stderr
    assert "?" not in result.stderr and ADMIN_TOKEN not in result.stderr, result.stderr
