"""The `keygate-control keys` client against a running service."""

import json
import os
import subprocess

from conftest import ADMIN_TOKEN, control_binary

RUN_DEADLINE_SECONDS = 20


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
