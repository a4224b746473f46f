"""The OAuth 2.0 token endpoint against a live service on both backends: off without a sealing
key, tokens issued and signing keys kept (sealed) across restarts, and a wrong sealing key
refused at start. The full flow through Envoy with Authlib: tests/e2e/test_oauth.py."""
import base64
import json

import pytest
import requests

SEALING_KEY = base64.b64encode(b"k" * 32).decode()
OTHER_SEALING_KEY = base64.b64encode(b"o" * 32).decode()


def token_request(control, key, **extra):
    return requests.post(control.url("/oauth/token"), timeout=10, data={
        "grant_type": "client_credentials", "client_id": key["id"], "client_secret": key["key"], **extra})


def kid_of(token):
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def test_oauth_is_off_without_a_sealing_key(service):
    for method, path in [("POST", "/oauth/token"), ("GET", "/.well-known/jwks.json"),
                         ("GET", "/.well-known/oauth-authorization-server")]:
        answer = requests.request(method, service.url(path), timeout=10)
        assert answer.status_code == 404, (path, answer.text)
        assert "KEYGATE_OAUTH_SEALING_KEY" in answer.json()["error"]["message"]


def test_signing_keys_are_sealed_and_kept_across_restarts(new_service):
    control = new_service({"KEYGATE_OAUTH_SEALING_KEY": SEALING_KEY}).start()
    try:
        key = control.create_key(name="client", scopes=["list_models"])
        first = token_request(control, key)
        assert first.status_code == 200, first.text
        assert first.headers["cache-control"] == "no-store"
        assert first.json()["scope"] == "list_models"
        widened = token_request(control, key, scope="submit_job")
        assert widened.status_code == 400 and widened.json()["error"] == "invalid_scope"
        (row,) = control.sql("SELECT kid, sealed_private FROM oauth_signing_keys")
        assert row[0] == kid_of(first.json()["access_token"])
        assert row[1].startswith("v1."), "stored sealed"
        assert key["key"].encode() not in control.stored_bytes()
        control.stop()
        control.start()
        again = token_request(control, key)
        assert again.status_code == 200, again.text
        assert kid_of(again.json()["access_token"]) == row[0], "the signing key survives a restart"
        control.stop()
        # Another sealing key cannot open it: the service says so at start instead of failing
        # every token request.
        control.extra_env["KEYGATE_OAUTH_SEALING_KEY"] = OTHER_SEALING_KEY
        with pytest.raises(RuntimeError) as refused:
            control.start()
        assert "sealed with another KEYGATE_OAUTH_SEALING_KEY" in str(refused.value)
    finally:
        control.stop()


def test_a_sealing_key_that_is_not_32_bytes_stops_the_service(new_service):
    control = new_service({"KEYGATE_OAUTH_SEALING_KEY": base64.b64encode(b"short").decode()})
    with pytest.raises(RuntimeError) as refused:
        control.start()
    assert "KEYGATE_OAUTH_SEALING_KEY" in str(refused.value) and "32" in str(refused.value)
    control.stop()
