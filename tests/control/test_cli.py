"""The `keygate-control keys` client against a running service."""

import json
import subprocess
import unicodedata

import pytest

from keygate_testkit.control import keys_cli as cli
from keygate_testkit.control import run_cli as control
from keygate_testkit.paths import ADMIN_TOKEN
from keygate_testkit.upstream import Upstream
from keygate_testkit.key_format import is_checksummed_key

RUN_DEADLINE_SECONDS = 20
NOT_KEYGATE = "did not answer like a Keygate control service"


def cli_json(service, *args):
    result = cli(service, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def columns(line):
    """How many terminal columns `line` takes (East Asian wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def test_create_prints_the_secret_once_and_list_shows_it_masked(service, team):
    result = cli(service, "create", "--name", "cli key", "--team", team, "--scope", "submit_job",
                 "--allow-ip", "10.0.0.0/8", "--plan", "pro", "--per-minute", "7", "--environment", "test")
    assert result.returncode == 0, result.stderr
    secret_lines = [line for line in result.stdout.splitlines() if line.startswith("Secret: ")]
    assert len(secret_lines) == 1
    secret = secret_lines[0].removeprefix("Secret: ")
    assert secret.startswith("pk_test_") and is_checksummed_key(secret)
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
    upstream = Upstream("--host", "127.0.0.1")
    yield upstream
    upstream.close()


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
    assert f"{impostor.url()} {NOT_KEYGATE} ({request_line}" in result.stderr, result.stderr
    assert "?" not in result.stderr and ADMIN_TOKEN not in result.stderr, result.stderr


@pytest.mark.parametrize("args", [
    ["--json", "keys", "list", "--team", "{team}"],
    ["keys", "--json", "list", "--team", "{team}"],
    ["keys", "list", "--json", "--team", "{team}"],
    ["--url", "{url}", "--token", "{token}", "--json", "keys", "list", "--team", "{team}"],
    ["keys", "--url", "{url}", "--token", "{token}", "list", "--json", "--team", "{team}"],
    ["keys", "list", "--team", "{team}", "--json", "--token", "{token}", "--url", "{url}"],
], ids=["json-first", "json-after-keys", "json-last", "all-first", "all-after-keys", "all-last"])
def test_global_options_go_before_or_after_the_subcommand(service, api, team, args):
    key = api.create(team=team)
    values = {"team": team, "url": service.url(), "token": ADMIN_TOKEN}
    args = [arg.format(**values) for arg in args]
    given_in_args = "--url" in args
    result = control(*args, url=None if given_in_args else service.url(),
                     token=None if given_in_args else ADMIN_TOKEN)
    assert result.returncode == 0, result.stderr
    assert [item["id"] for item in json.loads(result.stdout)["keys"]] == [key["id"]]


def test_client_options_are_refused_where_they_do_nothing(tmp_path):
    result = control("serve", "--token", "x", "--db", str(tmp_path / "k.db"))
    assert result.returncode != 0
    assert "--token is an option of the keys commands, not of serve" in result.stderr


@pytest.mark.parametrize("form", ["{host_port}", "{host_port}/", "http://{host_port}", "HTTP://{host_port}/"])
def test_url_without_a_scheme_means_http(service, api, team, form):
    key = api.create(team=team)
    url = form.format(host_port=service.url().removeprefix("http://"))
    result = control("keys", "list", "--team", team, "--url", url, "--json", token=ADMIN_TOKEN)
    assert result.returncode == 0, result.stderr
    assert [item["id"] for item in json.loads(result.stdout)["keys"]] == [key["id"]]
    from_env = control("keys", "list", "--team", team, "--json", url=url, token=ADMIN_TOKEN)
    assert from_env.returncode == 0, from_env.stderr


@pytest.mark.parametrize("url, problem", [
    ("ftp://127.0.0.1:1", "ftp:// is not supported"),
    ("http://", "host"),
    ("127.0.0.1:1?x=1", "must not have a query"),
])
def test_an_unusable_url_says_what_to_write(url, problem):
    result = control("keys", "list", "--url", url, token=ADMIN_TOKEN)
    assert result.returncode != 0 and result.stdout == ""
    assert problem in result.stderr, result.stderr
    assert "write http(s)://HOST:PORT, e.g. http://127.0.0.1:8081" in result.stderr, result.stderr


def test_a_limit_override_can_be_cleared(service, api, team):
    key = api.create(team=team, plan="pro", limits={"per_minute": 7, "per_day": 50, "per_month": 900})
    cleared = cli_json(service, "update", key["id"], "--clear-limit", "per_minute")
    assert cleared["limits"] == {"per_minute": None, "per_hour": None, "per_day": 50, "concurrent": None,
                                 "per_month": 900}
    assert cleared["effective_limits"]["per_minute"] == 300  # the plan's value again
    both = cli_json(service, "update", key["id"], "--clear-limit", "per-day", "--per-hour", "20")
    assert both["limits"] == {"per_minute": None, "per_hour": 20, "per_day": None, "concurrent": None,
                              "per_month": 900}
    replaced = cli_json(service, "update", key["id"], "--clear-limit", "all", "--concurrent", "3")
    assert replaced["limits"] == {"per_minute": None, "per_hour": None, "per_day": None, "concurrent": 3,
                                  "per_month": None}
    contradiction = cli(service, "update", key["id"], "--per-day", "5", "--clear-limit", "per_day")
    assert contradiction.returncode != 0
    assert "--per-day and --clear-limit per_day contradict each other" in contradiction.stderr
    unknown = cli(service, "update", key["id"], "--clear-limit", "per_second")
    assert unknown.returncode != 0 and "per_minute" in unknown.stderr


def listed_ids(service, *args):
    return [item["id"] for item in cli_json(service, "list", *args)["keys"]]


def test_list_filters_by_environment_and_status(service, api, team):
    live = api.create(team=team)
    test = api.create(team=team, environment="test")
    revoked = api.create(team=team)
    api.request("PATCH", f"/v1/keys/{revoked['id']}", json={"active": False})
    expired = api.create(team=team)
    # Rotating without grace expires the old key now.
    successor = api.request("POST", f"/v1/keys/{expired['id']}/rotate").json()
    assert listed_ids(service, "--team", team, "--environment", "test") == [test["id"]]
    assert listed_ids(service, "--team", team, "--status", "active") == [live["id"], test["id"], successor["id"]]
    assert listed_ids(service, "--team", team, "--status", "inactive") == [revoked["id"]]
    assert listed_ids(service, "--team", team, "--status", "expired") == [expired["id"]]
    table = cli(service, "list", "--team", team, "--status", "expired")
    assert table.returncode == 0, table.stderr
    assert expired["id"] in table.stdout and " expired " in table.stdout
    bad = cli(service, "list", "--status", "gone")
    assert bad.returncode != 0 and "active, inactive, expired" in bad.stderr


def test_list_pages_with_limit_and_cursor_or_all(service, api, team):
    ids = [api.create(name=f"page {i}", team=team)["id"] for i in range(5)]
    first = cli(service, "list", "--team", team, "--limit", "2")
    assert first.returncode == 0, first.stderr
    assert ids[0] in first.stdout and ids[1] in first.stdout and ids[2] not in first.stdout
    hint = [line for line in first.stdout.splitlines() if line.startswith("More keys follow: --cursor ")]
    assert len(hint) == 1, first.stdout
    cursor = hint[0].split()[4]
    assert listed_ids(service, "--team", team, "--limit", "2", "--cursor", cursor) == ids[2:4]
    everything = cli_json(service, "list", "--team", team, "--limit", "2", "--all")
    assert [item["id"] for item in everything["keys"]] == ids and everything["next_cursor"] is None
    assert listed_ids(service, "--team", team, "--limit", "2", "--cursor", cursor, "--all") == ids[2:]
    table = cli(service, "list", "--team", team, "--limit", "2", "--all")
    assert table.returncode == 0, table.stderr
    assert all(key_id in table.stdout for key_id in ids) and "More keys follow" not in table.stdout


def test_tables_fit_80_columns_with_long_names(service, api, team):
    long_team = team + "-" + "t" * (128 - len(team) - 1)
    keys = [
        api.create(name="n" * 128, team=long_team, plan="enterprise"),
        api.create(name="東" * 100, team=long_team, environment="test", plan="business"),
        api.create(name=("word " * 25).strip(), team=long_team, scopes=["submit_job", "check_status", "list_models"],
                   allowed_ips=[f"10.{i}.0.0/16" for i in range(30)], limits={"per_minute": 10**12}),
    ]
    api.request("PATCH", f"/v1/keys/{keys[0]['id']}", json={"active": False})
    listed = cli(service, "list", "--team", long_team)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 4, listed.stdout
    assert all(columns(line) <= 80 for line in lines), listed.stdout
    for key, line in zip(keys, lines[1:]):
        assert line.startswith(key["id"]) and f"{key['prefix']}…{key['last4']}" in line, line
        assert "…" in line.removeprefix(key["id"]).split(key["prefix"])[0], line  # the name was cut
    assert lines[1].rstrip().endswith("inactive  enterprise  -")
    for key in keys:
        shown = cli(service, "show", key["id"])
        assert shown.returncode == 0, shown.stderr
        assert all(columns(line) <= 80 for line in shown.stdout.splitlines()), shown.stdout
    # Nothing is lost in the detail view: long values wrap under their field.
    words = " ".join(cli(service, "show", keys[2]["id"]).stdout.split())
    assert keys[2]["name"] in words and "10.29.0.0/16" in words and "per_minute=1000000000000" in words


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_come_from_clap(shell, tmp_path):
    result = control("completion", shell)
    assert result.returncode == 0, result.stderr
    script = result.stdout
    for word in ["keygate-control", "keys", "completion", "clear-limit", "grace-seconds", "per_minute"]:
        assert word in script, (shell, word)
    if shell == "bash":
        path = tmp_path / "keygate-control.bash"
        path.write_text(script)
        syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True,
                                timeout=RUN_DEADLINE_SECONDS)
        assert syntax.returncode == 0, syntax.stderr
        # Sourced, it registers a completion for the command.
        registered = subprocess.run(["bash", "-c", f"source {path} && complete -p keygate-control"],
                                    capture_output=True, text=True, timeout=RUN_DEADLINE_SECONDS)
        assert registered.returncode == 0 and "keygate-control" in registered.stdout, registered.stderr
    assert control("completion", "tcsh").returncode != 0
