"""Secrets never reach the disk; acknowledged writes survive kill -9."""

import hashlib
import time

from keygate_testkit.api import Api, HeldPoll

# Shutdown must answer a held poll at once, far inside its wait.
LONG_POLL_SECONDS = 30
PROMPT_SECONDS = 5


def test_secrets_are_never_stored(fresh_service):
    api = Api(fresh_service.start().url())
    secrets = [api.create(name=f"k{i}", environment="test" if i % 2 else "live")["key"] for i in range(5)]
    rotated = api.request("POST", f"/v1/keys/{api.request('GET', '/v1/keys').json()['keys'][0]['id']}/rotate")
    secrets.append(rotated.json()["key"])
    stored = fresh_service.stored_bytes()
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret[8:].encode() not in stored
        assert hashlib.sha256(secret.encode()).hexdigest().encode() in stored
    listing = api.request("GET", "/v1/keys").text + api.snapshot().text
    for secret in secrets:
        assert secret not in listing


def test_kill_9_right_after_201_keeps_the_key(fresh_service):
    api = Api(fresh_service.start().url())
    created = api.create(name="durable")
    patched = api.request("PATCH", f"/v1/keys/{created['id']}", json={"team": "kept"})
    assert patched.status_code == 200
    epoch = api.snapshot().json()["epoch"]
    fresh_service.stop(hard=True)
    api = Api(fresh_service.start().url())
    shown = api.request("GET", f"/v1/keys/{created['id']}")
    assert shown.status_code == 200 and shown.json()["team"] == "kept"
    snapshot = api.snapshot().json()
    assert snapshot["epoch"] == epoch and snapshot["version"] == 2
    assert created["id"] in {key["id"] for key in snapshot["keys"]}


def test_sigterm_stops_cleanly(fresh_service):
    fresh_service.start()
    fresh_service.proc.terminate()
    assert fresh_service.proc.wait(timeout=10) == 0
    assert "keygate-control stopped" in fresh_service.log_path.read_text()


def test_sigterm_answers_open_long_polls(fresh_service):
    api = Api(fresh_service.start().url())
    base = api.snapshot().json()
    poll = HeldPoll(api, LONG_POLL_SECONDS, since=base["version"], epoch=base["epoch"])
    stopped_at = time.monotonic()
    fresh_service.proc.terminate()
    assert fresh_service.proc.wait(timeout=LONG_POLL_SECONDS - 10) == 0
    response = poll.answer(timeout=10)
    assert response.status_code == 304, response.text
    assert poll.answered_at - stopped_at < PROMPT_SECONDS
