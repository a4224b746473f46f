"""`keygate-control teams …` and `keygate-control webhooks …` against a live service: what an
operator types, what it prints, and the JSON it prints with --json."""

import json

import pytest

from keygate_testkit.api import make_token
from keygate_testkit.control import run_cli
from keygate_testkit.paths import ADMIN_TOKEN
from keygate_testkit.waiting import wait_until
from keygate_testkit.webhooks import Receiver


def cli(service, *args, token=ADMIN_TOKEN):
    return run_cli(*args, url=service.url(), token=token)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def test_teams_from_the_command_line(service, api, team):
    created = cli(service, "teams", "create", team, "--plan", "free", "--per-day", "50")
    assert created.returncode == 0, created.stderr
    assert f"Created team {team}." in created.stdout
    api.create(name="member", team=team)
    listed = cli(service, "teams", "list")
    line = next(line for line in listed.stdout.splitlines() if line.startswith(team))
    assert "free" in line and "0/50" in line, listed.stdout
    shown = json.loads(cli(service, "--json", "teams", "show", team).stdout)
    assert shown["key_count"] == 1 and shown["usage"]["per_day"] == 50 and shown["per_day"] == 50
    # Without its own daily quota the team shares its plan's; without a plan, none.
    updated = cli(service, "--json", "teams", "update", team, "--clear-per-day")
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["usage"]["per_day"] == 1000
    updated = cli(service, "--json", "teams", "update", team, "--clear-plan")
    assert json.loads(updated.stdout)["usage"]["per_day"] is None
    nothing = cli(service, "teams", "update", team)
    assert nothing.returncode != 0 and "nothing to change" in nothing.stderr
    refused = cli(service, "teams", "delete", team)
    assert refused.returncode != 0 and "1 key(s)" in refused.stderr
    # A team token reads its own team but cannot change it.
    admin = make_token(api, "admin", team)
    assert cli(service, "teams", "show", team, token=admin["token"]).returncode == 0
    forbidden = cli(service, "teams", "update", team, "--per-day", "1000000", token=admin["token"])
    assert forbidden.returncode != 0 and "only a token of no team" in forbidden.stderr
    spaced = cli(service, "--json", "teams", "create", "a team/with spaces")
    assert spaced.returncode == 0, spaced.stderr
    assert cli(service, "teams", "delete", "a team/with spaces").returncode == 0


def test_webhooks_from_the_command_line(service, receiver):
    created = cli(service, "webhooks", "create", receiver.url, "--event", "key.created", "--event", "key.deleted",
                  "--description", "ops")
    assert created.returncode == 0, created.stderr
    secret = next(word for word in created.stdout.split() if word.startswith("whsec_"))
    hook_id = next(word for word in created.stdout.split() if word.startswith("wh_")).rstrip(".")
    assert "shown once" in created.stdout
    listed = cli(service, "webhooks", "list")
    assert hook_id in listed.stdout and secret not in listed.stdout
    queued = cli(service, "webhooks", "test", hook_id)
    assert queued.returncode == 0 and "Queued test event msg_" in queued.stdout
    wait_until(lambda: receiver.events("webhook.test"), timeout=15, what="the test event")

    def delivered():
        log = json.loads(cli(service, "--json", "webhooks", "deliveries", hook_id).stdout)["deliveries"]
        return log if log and log[0]["status"] == "delivered" else None

    log = wait_until(delivered, timeout=15, what="the delivery logged")
    assert log[0]["type"] == "webhook.test" and log[0]["last_status"] == 204
    table = cli(service, "webhooks", "deliveries", hook_id)
    assert "webhook.test" in table.stdout and "delivered" in table.stdout
    rotated = cli(service, "webhooks", "rotate-secret", hook_id, "--grace-seconds", "60")
    assert rotated.returncode == 0 and "whsec_" in rotated.stdout and secret not in rotated.stdout
    disabled = cli(service, "--json", "webhooks", "update", hook_id, "--disable")
    assert json.loads(disabled.stdout)["enabled"] is False
    refused = cli(service, "webhooks", "test", hook_id)
    assert refused.returncode != 0 and "disabled" in refused.stderr
    bad = cli(service, "webhooks", "create", receiver.url, "--event", "key.exploded")
    assert bad.returncode != 0 and "unknown event type" in bad.stderr
    assert cli(service, "webhooks", "delete", hook_id).returncode == 0
    assert cli(service, "webhooks", "show", hook_id).returncode != 0
