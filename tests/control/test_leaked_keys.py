"""Leaked keys against a live service: GitHub's secret scanning partner endpoint (reports signed
with ECDSA P-256 by a key pair the tests make with the `cryptography` package, as GitHub signs
them), reports by hand (`POST /v1/keys/leaked`), the policy, and `keys check` offline.
Through Envoy: tests/e2e/test_leaked_keys_envoy.py."""

import json
import secrets
import time

import pytest

from keygate_testkit.api import Api, error_of, make_token
from keygate_testkit.control import keys_cli, run_cli
from keygate_testkit.paths import ADMIN_TOKEN
from keygate_testkit.key_format import BASE62, checksum, find_keys, is_checksummed_key, with_wrong_checksum
from keygate_testkit.secret_scanning import (TOKEN_TYPE, GitHubSigner, post_report, report_body, token_hash,
                                             write_keys)
from keygate_testkit.waiting import wait_until
from keygate_testkit.webhooks import Receiver


@pytest.fixture(scope="module")
def github():
    return GitHubSigner()


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory, github):
    return write_keys(tmp_path_factory.mktemp("scanning") / "github-keys.json", github)


@pytest.fixture(scope="module")
def scanning(new_service, keys_file):
    control = new_service({"KEYGATE_SECRET_SCANNING_KEYS": str(keys_file)}).start()
    yield control
    control.stop()


@pytest.fixture
def scan_api(scanning):
    return Api(scanning.url())


def random_key(environment="live"):
    body = f"pk_{environment}_" + "".join(secrets.choice(BASE62) for _ in range(40))
    return body + checksum(body)


def audit_of(api, key_id):
    return api.request("GET", "/v1/audit", params={"target": key_id}).json()["entries"]


def test_a_signed_report_revokes_a_live_key_and_answers_in_githubs_shape(scanning, scan_api, github):
    receiver = Receiver()
    try:
        hook = scan_api.request("POST", "/v1/webhooks", json={"url": receiver.url, "events": ["key.leaked"]})
        assert hook.status_code == 201, hook.text
        key = scan_api.create(name="pushed to github")
        bystander = scan_api.create(name="not leaked")
        never_issued = random_key()
        body = report_body(key["key"], never_issued, "ghp_not_ours_at_all")
        answer = post_report(scanning.url(), github, body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == [
            {"token_hash": token_hash(key["key"]), "token_type": TOKEN_TYPE, "label": "true_positive"},
            {"token_hash": token_hash(never_issued), "token_type": TOKEN_TYPE, "label": "false_positive"},
            {"token_hash": token_hash("ghp_not_ours_at_all"), "token_type": TOKEN_TYPE, "label": "false_positive"},
        ]
        shown = scan_api.request("GET", f"/v1/keys/{key['id']}").json()
        assert shown["active"] is False
        leak = shown["leak"]
        assert leak["scanner"] == "github" and leak["source"] == "content" and leak["token_type"] == TOKEN_TYPE
        assert leak["url"] == "https://github.com/octo/repo/blob/abc/.env" and leak["reported_at"].endswith("Z")
        assert scan_api.request("GET", f"/v1/keys/{bystander['id']}").json()["active"] is True
        entry = next(e for e in audit_of(scan_api, key["id"]) if e["action"] == "key.leak")
        assert entry["token_id"] == "github" and entry["changes"]["deactivated"] is True
        event = receiver.wait_for("key.leaked", where=lambda e: e["data"]["key_id"] == key["id"])[0]
        assert event["data"]["url"] == leak["url"] and event["data"]["deactivated"] is True
        # A leaked key cannot be turned back on; rotating gives its holder a successor.
        again = scan_api.request("PATCH", f"/v1/keys/{key['id']}", json={"active": True})
        assert again.status_code == 409 and "rotate" in error_of(again)[1]
        rotated = scan_api.request("POST", f"/v1/keys/{key['id']}/rotate", json={})
        assert rotated.status_code == 201
        successor = scan_api.request("GET", f"/v1/keys/{rotated.json()['id']}").json()
        assert successor["active"] is True and successor["leak"] is None
        # The reported secrets are nowhere: not in the database, the log or any webhook delivery.
        stored = scanning.stored_bytes()
        for secret in (key["key"], never_issued):
            assert secret.encode() not in stored
            assert secret not in scanning.log_text()
            assert all(secret.encode() not in delivery["body"] for delivery in receiver.deliveries)
    finally:
        receiver.close()


def test_unsigned_badly_signed_unknown_and_truncated_reports_change_nothing(scanning, scan_api, github):
    key = scan_api.create(name="target")
    body = report_body(key["key"])
    stranger = GitHubSigner(identifier=github.identifier)  # GitHub's identifier, another key
    cases = {
        "unsigned": {"Content-Type": "application/json"},
        "no signature": {"Content-Type": "application/json", "Github-Public-Key-Identifier": github.identifier},
        "bad signature": stranger.headers(body),
        "not base64": {**github.headers(body), "Github-Public-Key-Signature": "%%%"},
        "unknown identifier": {**github.headers(body), "Github-Public-Key-Identifier": "f" * 64},
        "signature of another body": github.headers(report_body(random_key())),
    }
    for case, headers in cases.items():
        answer = post_report(scanning.url(), github, body, headers=headers)
        assert answer.status_code == 401, (case, answer.text)
        assert error_of(answer)[0] == "INVALID_SIGNATURE", case
    # The signed body cut short: its signature no longer matches.
    truncated = body[:-10]
    answer = post_report(scanning.url(), github, truncated, headers=github.headers(body))
    assert answer.status_code == 401
    # A truncated body signed as it is: verified, then refused as not JSON.
    answer = post_report(scanning.url(), github, truncated)
    assert answer.status_code == 400 and error_of(answer)[0] == "INVALID_JSON"
    shown = scan_api.request("GET", f"/v1/keys/{key['id']}").json()
    assert shown["active"] is True and shown["leak"] is None
    assert not [e for e in audit_of(scan_api, key["id"]) if e["action"] == "key.leak"]


def test_ten_thousand_tokens_in_one_report(scanning, scan_api, github):
    # A test key (pk_test_) follows the same path as a live one.
    keys = [scan_api.create(name=f"bulk {i}", environment="test" if i == 1 else "live") for i in range(3)]
    strangers = [random_key("test" if i % 2 else "live") for i in range(9_997)]
    tokens = strangers[:5_000] + [key["key"] for key in keys] + strangers[5_000:]
    body = report_body(*tokens)
    assert len(body) < 4 * 1024 * 1024
    started = time.monotonic()
    answer = post_report(scanning.url(), github, body, timeout=60)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    labels = answer.json()
    assert len(labels) == 10_000
    positives = {entry["token_hash"] for entry in labels if entry["label"] == "true_positive"}
    assert positives == {token_hash(key["key"]) for key in keys}
    assert [entry["token_hash"] for entry in labels] == [token_hash(token) for token in tokens]
    print(f"10,000 tokens answered in {elapsed:.2f} s")
    assert elapsed < 30, f"10,000 tokens took {elapsed:.1f} s"
    for key in keys:
        assert scan_api.request("GET", f"/v1/keys/{key['id']}").json()["active"] is False


def test_an_oversized_report_is_refused_before_it_is_read(scanning, github):
    body = report_body(*[random_key() for _ in range(1)]) + b" " * (4 * 1024 * 1024)
    answer = post_report(scanning.url(), github, body)
    assert answer.status_code == 413 and error_of(answer)[0] == "PAYLOAD_TOO_LARGE"
    # Without a trusted key identifier, not even the size matters: refused before the body.
    stranger = {"Content-Type": "application/json", "Github-Public-Key-Identifier": "f" * 64,
                "Github-Public-Key-Signature": "MEUCIQ=="}
    answer = post_report(scanning.url(), github, body, headers=stranger)
    assert answer.status_code == 401 and error_of(answer)[0] == "INVALID_SIGNATURE"


def test_the_keys_file_is_re_read_when_github_rotates_its_key(new_service, tmp_path):
    old, new = GitHubSigner(), GitHubSigner()
    keys_file = write_keys(tmp_path / "keys.json", old)
    control = new_service({"KEYGATE_SECRET_SCANNING_KEYS": str(keys_file)}).start()
    try:
        body = report_body(random_key())
        assert post_report(control.url(), old, body).status_code == 200
        assert post_report(control.url(), new, body).status_code == 401
        write_keys(keys_file, new)
        wait_until(lambda: post_report(control.url(), new, body).status_code == 200, timeout=10,
                   what="the new key accepted")
        assert post_report(control.url(), old, body).status_code == 401
        # A broken file keeps the keys read before.
        keys_file.write_text("{not json")
        time.sleep(1.2)  # the file is checked at most once a second; nothing to await but time
        assert post_report(control.url(), new, body).status_code == 200
        wait_until(lambda: "the keys read before stay in use" in control.log_text(), timeout=10,
                   what="the refused file logged")
    finally:
        control.stop()


def test_without_keys_configured_every_report_is_refused(service, api):
    key = api.create(name="unguarded")
    signer = GitHubSigner()
    answer = post_report(service.url(), signer, report_body(key["key"]))
    assert answer.status_code == 401 and "not configured" in error_of(answer)[1]
    assert api.request("GET", f"/v1/keys/{key['id']}").json()["active"] is True


def test_a_bad_keys_file_stops_the_service_from_starting(new_service, tmp_path):
    bad = tmp_path / "keys.json"
    bad.write_text(json.dumps({"public_keys": [{"key_identifier": "x", "key": "not a pem"}]}))
    control = new_service({"KEYGATE_SECRET_SCANNING_KEYS": str(bad)})
    with pytest.raises(Exception):
        control.start()
    assert "--secret-scanning-keys" in control.log_text()
    control.stop()


def test_reporting_a_leak_by_hand(api, team):
    key = api.create(name="in a ticket", team=team)
    answer = api.request("POST", "/v1/keys/leaked",
                         json={"key": key["key"], "url": "https://tickets.example/42", "source": "ticket"})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["policy"] == "revoke" and report["deactivated"] is True
    assert report["key"]["active"] is False and report["key"]["leak"]["scanner"] == "manual"
    assert "key" not in report["key"], "never the secret"
    # Again: recorded already, nothing more to deactivate.
    again = api.request("POST", "/v1/keys/leaked", json={"key": key["key"]}).json()
    assert again["deactivated"] is False and again["key"]["leak"]["url"] == "https://tickets.example/42"
    # Unknown keys, other teams' keys and bad bodies.
    assert api.request("POST", "/v1/keys/leaked", json={"key": random_key()}).status_code == 404
    theirs = api.create(name="theirs", team=f"{team}-other")
    editor = make_token(api, "editor", team)
    as_editor = {"Authorization": f"Bearer {editor['token']}"}
    hidden = api.request("POST", "/v1/keys/leaked", token=None, headers=as_editor, json={"key": theirs["key"]})
    assert hidden.status_code == 404, hidden.text
    assert api.request("GET", f"/v1/keys/{theirs['id']}").json()["active"] is True
    ours = api.create(name="ours", team=team)
    mine = api.request("POST", "/v1/keys/leaked", token=None, headers=as_editor, json={"key": ours["key"]})
    assert mine.status_code == 200 and mine.json()["deactivated"] is True, mine.text
    for body, field in [({}, "key"), ({"key": ""}, "key"), ({"key": "k", "url": "u" * 2049}, "url"),
                        ({"key": "k", "extra": 1}, "extra")]:
        refused = api.request("POST", "/v1/keys/leaked", json=body)
        assert refused.status_code == 400 and field in error_of(refused)[1], (body, refused.text)


def test_notify_records_and_alerts_but_the_key_keeps_working(new_service):
    control = new_service({"KEYGATE_LEAKED_KEY_POLICY": "notify"}).start()
    try:
        key = control.create_key(name="noisy")
        answer = control.admin("POST", "/v1/keys/leaked", json={"key": key["key"]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["policy"] == "notify" and answer.json()["deactivated"] is False
        shown = control.admin("GET", f"/v1/keys/{key['id']}").json()
        assert shown["active"] is True and shown["leak"]["scanner"] == "manual"
        entries = control.admin("GET", "/v1/audit", params={"target": key["id"]}).json()["entries"]
        leak = next(entry for entry in entries if entry["action"] == "key.leak")
        assert leak["changes"]["policy"] == "notify" and leak["changes"]["deactivated"] is False
    finally:
        control.stop()


def valid_key():
    return random_key("test")


@pytest.mark.parametrize("case", ["valid", "one character changed", "old format", "wrong environment prefix",
                                  "not a key"])
def test_keys_check_offline(case):
    key = valid_key()
    given, valid, expected = {
        "valid": (key, True, ["Format:      checksummed", "Environment: test", "Checksum:    valid"]),
        "one character changed": (with_wrong_checksum(key), False, ["Checksum:    invalid"]),
        "old format": ("pk_live_" + "a" * 40, True, ["Format:      legacy", "Checksum:    none"]),
        "wrong environment prefix": (key.replace("pk_test_", "pk_live_", 1), False, ["Environment: live",
                                                                                      "Checksum:    invalid"]),
        "not a key": ("sk_live_abc", False, ["Format:      unknown"]),
    }[case]
    # No URL and no token: nothing is sent anywhere.
    result = run_cli("keys", "check", given)
    assert (result.returncode == 0) == valid, result
    for line in expected:
        assert line in result.stdout, result.stdout
    assert given not in result.stdout + result.stderr or len(given) < 12, "the key is shown redacted"
    as_json = run_cli("--json", "keys", "check", given)
    assert json.loads(as_json.stdout)["valid"] is valid


def test_keys_check_reads_the_key_from_stdin():
    key = valid_key()
    result = run_cli("keys", "check", "-", input=key + "\n")
    assert result.returncode == 0 and "Checksum:    valid" in result.stdout, result


def test_keys_leaked_from_the_command_line(service, api):
    key = api.create(name="cli leak")
    result = run_cli("keys", "leaked", "-", "--found-at", "https://paste.example/1", url=service.url(),
                     token=ADMIN_TOKEN, input=key["key"] + "\n")
    assert result.returncode == 0, result.stderr
    assert f"Deactivated {key['id']}" in result.stdout and f"keys rotate {key['id']}" in result.stdout
    shown = keys_cli(service, "--json", "show", key["id"])
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["active"] is False
    assert json.loads(shown.stdout)["leak"]["url"] == "https://paste.example/1"
    assert key["key"] not in result.stdout + result.stderr


def test_issued_keys_are_found_by_the_documented_regex_and_checksum(api):
    key = api.create(name="scanner food")["key"]
    text = f"OPENAI_BASE_URL=x\nKEYGATE_KEY={key}\nother=pk_live_{'a' * 46}\n"
    assert find_keys(text) == [key]
    assert is_checksummed_key(key)
