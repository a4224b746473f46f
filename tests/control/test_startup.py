"""Start-up configuration: required tokens, --dev defaults, the ready line."""

import os
import subprocess

import pytest

from keygate_testkit.api import Api
from keygate_testkit.paths import control_binary
from keygate_testkit.ports import free_port

RUN_DEADLINE_SECONDS = 10


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
    env.update(extra)
    return env


@pytest.mark.parametrize("present,missing", [
    ({"KEYGATE_SYNC_TOKEN": "s"}, "KEYGATE_ADMIN_TOKEN"),
    ({"KEYGATE_ADMIN_TOKEN": "a"}, "KEYGATE_SYNC_TOKEN"),
    ({}, "KEYGATE_ADMIN_TOKEN"),
])
def test_missing_token_exits_naming_it(tmp_path, present, missing):
    result = subprocess.run(
        [str(control_binary()), "serve", "--listen", f"127.0.0.1:{free_port()}"],
        env=clean_env(KEYGATE_DB=str(tmp_path / "k.db"), **present),
        capture_output=True, text=True, timeout=RUN_DEADLINE_SECONDS,
    )
    assert result.returncode != 0
    assert missing in result.stderr


def test_identical_tokens_are_refused(tmp_path):
    result = subprocess.run(
        [str(control_binary()), "serve"],
        env=clean_env(KEYGATE_DB=str(tmp_path / "k.db"), KEYGATE_ADMIN_TOKEN="same", KEYGATE_SYNC_TOKEN="same"),
        capture_output=True, text=True, timeout=RUN_DEADLINE_SECONDS,
    )
    assert result.returncode != 0 and "must differ" in result.stderr


def test_dev_mode_prints_its_tokens_and_the_ready_line(tmp_path):
    port = free_port()
    db = tmp_path / "dev.db"
    process = subprocess.Popen(
        [str(control_binary()), "serve", "--dev", "--listen", f"127.0.0.1:{port}", "--db", str(db)],
        env=clean_env(KEYGATE_ADMIN_TOKEN="own-admin"), stdout=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        for _ in range(5):
            line = process.stdout.readline()
            lines.append(line)
            if "listening on" in line:
                break
        output = "".join(lines)
        assert "sync token is dev-sync-token" in output
        assert "own-admin" not in output
        assert f"keygate-control listening on http://127.0.0.1:{port} (db: {db})" in output
    finally:
        process.terminate()
        process.wait(timeout=RUN_DEADLINE_SECONDS)


def test_configured_scopes_are_the_allowed_ones(new_service):
    service = new_service(extra_env={"KEYGATE_SCOPES": "read, write"}).start()
    try:
        api = Api(service.url())
        assert api.create(scopes=["read", "write"])["scopes"] == ["read", "write"]
        response = api.request("POST", "/v1/keys", json={"name": "a", "scopes": ["submit_job"]})
        assert response.status_code == 400 and "scopes[0]" in response.json()["error"]["message"]
    finally:
        service.stop()
