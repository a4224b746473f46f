"""OAuth 2.0 client credentials end to end, with a real OAuth client (Authlib) and a real JOSE
verifier (joserfc): the control service issues ES256 access tokens for a key, Envoy's own
jwt_authn verifies them against the published key set, and Keygate applies the key's policy to
them. A token is never worth more than its key, and refused tokens get RFC 6750's challenge."""
import base64
import json
import time

import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from keygate_testkit.control import ControlService
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.waiting import wait_until

SEALING_KEY = base64.b64encode(bytes(range(32))).decode()
ISSUER = "http://127.0.0.1:10000"  # the shipped issuer (envoy/envoy.yaml and the service's default)
FAST = {"refresh_interval": "30s", "long_poll_wait": "20s", "timeout": "2s"}


def oauth_service(*extra_args):
    return ControlService(extra_env={"KEYGATE_OAUTH_SEALING_KEY": SEALING_KEY},
                          extra_args=["--trusted-proxies", "127.0.0.1", *extra_args]).start()


@pytest.fixture(scope="module")
def control():
    service = oauth_service()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def proxy(upstream, control):
    envoy = Envoy(upstream.port, control.port, plugin_config(control=FAST))
    yield envoy
    envoy.close()


def at_edge(proxy, key, path="/v1/models"):
    """Waits until the proxy holds the new key (its snapshot), so what follows tests tokens."""
    proxy.wait_for_status(path, key["key"], 200, timeout=10)


def client_for(key, proxy, **kwargs):
    return OAuth2Session(client_id=key["id"], client_secret=key["key"], **kwargs)


def fetch(client, proxy):
    return client.fetch_token(proxy.url("/oauth/token"), grant_type="client_credentials")


def payload(token):
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_the_discovery_documents_are_served_on_the_api_port(proxy):
    metadata = requests.get(proxy.url("/.well-known/oauth-authorization-server"), timeout=5)
    assert metadata.status_code == 200, metadata.text
    assert metadata.json()["issuer"] == ISSUER
    assert metadata.json()["token_endpoint"] == ISSUER + "/oauth/token"
    assert metadata.json()["grant_types_supported"] == ["client_credentials"]
    assert set(metadata.json()["token_endpoint_auth_methods_supported"]) == {"client_secret_basic",
                                                                              "client_secret_post"}
    keys = requests.get(proxy.url("/.well-known/jwks.json"), timeout=5).json()["keys"]
    assert len(keys) == 1
    assert {keys[0]["kty"], keys[0]["crv"], keys[0]["alg"], keys[0]["use"]} == {"EC", "P-256", "ES256", "sig"}
    assert "d" not in keys[0], "the private part is never published"


def test_a_token_from_authlib_verifies_and_works_through_envoy(proxy, control):
    key = control.create_key(name="oauth client", scopes=["list_models", "check_status"])
    at_edge(proxy, key)
    client = client_for(key, proxy, scope="list_models")
    token = fetch(client, proxy)
    assert token["token_type"] == "Bearer" and token["expires_in"] == 900 and token["scope"] == "list_models"
    access_token = token["access_token"]
    assert key["key"] not in access_token and key["key"] not in json.dumps(payload(access_token))
    # RFC 9068, checked by a JOSE library against the published keys.
    keys = KeySet.import_key_set(requests.get(proxy.url("/.well-known/jwks.json"), timeout=5).json())
    decoded = jwt.decode(access_token, keys, algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt" and decoded.header["alg"] == "ES256"
    claims = decoded.claims
    assert claims["iss"] == ISSUER and claims["aud"] == ISSUER
    assert claims["sub"] == key["id"] and claims["client_id"] == key["id"]
    assert claims["scope"] == "list_models" and claims["exp"] - claims["iat"] == 900 and claims["jti"]
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": ISSUER}).validate(claims)

    answer = client.get(proxy.url("/v1/models"), timeout=5)
    assert answer.status_code == 200, answer.text
    forwarded = answer.json()["headers"]
    assert forwarded["x-keygate-key-id"] == key["id"]
    # The upstream sees what the token may use, not the key's scopes.
    assert forwarded["x-keygate-scopes"] == "list_models"
    assert forwarded["x-keygate-credential"] == "access-token"
    assert "authorization" not in {name.lower() for name in forwarded}, "the token stays at the edge"
    # Only the Authorization header carries a token: one in the URL is not read (it would reach
    # the upstream and the logs).
    in_url = requests.get(proxy.url(f"/v1/models?access_token={access_token}"), timeout=5)
    assert in_url.status_code == 401 and in_url.json()["error"]["code"] == "UNAUTHORIZED"
    # The key holds check_status, the token does not: narrowed, refused with RFC 6750's answer.
    refused = client.get(proxy.url("/v1/jobs/1"), timeout=5)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "OPERATION_NOT_ALLOWED"
    assert "access token" in refused.json()["error"]["message"]
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    # Usage is counted for the key.
    def counted():
        usage = control.admin("GET", f"/v1/keys/{key['id']}/usage").json()
        return usage["totals"]["allowed"] >= 1
    wait_until(counted, timeout=20, what="usage of the token's requests")


def test_client_secret_post_and_the_keys_own_scopes(proxy, control):
    key = control.create_key(name="post client", scopes=["check_status"])
    at_edge(proxy, key, "/v1/jobs/7")
    client = client_for(key, proxy, token_endpoint_auth_method="client_secret_post")
    token = fetch(client, proxy)
    assert token["scope"] == "check_status"
    assert client.get(proxy.url("/v1/jobs/7"), timeout=5).status_code == 200
    assert client.get(proxy.url("/v1/models"), timeout=5).status_code == 403


def test_refused_requests_get_rfc_6749_errors(proxy, control):
    key = control.create_key(name="narrow", scopes=["list_models"])
    with pytest.raises(OAuthError) as widened:
        fetch(client_for(key, proxy, scope="submit_job"), proxy)
    assert widened.value.error == "invalid_scope"
    with pytest.raises(OAuthError) as wrong:
        fetch(OAuth2Session(client_id=key["id"], client_secret=key["key"][:-1] + "x"), proxy)
    assert wrong.value.error == "invalid_client"
    raw = requests.post(proxy.url("/oauth/token"), data={"grant_type": "password"},
                        auth=(key["id"], key["key"]), timeout=5)
    assert raw.status_code == 400 and raw.json()["error"] == "unsupported_grant_type"
    assert raw.headers["cache-control"] == "no-store"
    unauthenticated = requests.post(proxy.url("/oauth/token"), data={"grant_type": "client_credentials"}, timeout=5)
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"] == "invalid_client"


def test_a_token_is_never_worth_more_than_its_key(proxy, control):
    key = control.create_key(name="revoked later")
    client = client_for(key, proxy)
    fetch(client, proxy)
    proxy_wait = wait_until(lambda: client.get(proxy.url("/v1/models"), timeout=5).status_code == 200,
                            timeout=10, what="the new key at the edge")
    assert proxy_wait
    started = time.monotonic()
    assert control.admin("PATCH", f"/v1/keys/{key['id']}", json={"active": False}).status_code == 200

    def refused():
        answer = client.get(proxy.url("/v1/models"), timeout=5)
        # A tuple: a refused Response is falsy.
        return (answer,) if answer.status_code == 401 else None
    (answer,) = wait_until(refused, timeout=5, what="the revoked key's token refused")
    print(f"revocation: a live token of a revoked key refused after {time.monotonic() - started:.2f} s")
    assert answer.json()["error"]["code"] == "API_KEY_INACTIVE"
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    # And no new token for it.
    with pytest.raises(OAuthError) as refused_again:
        fetch(client_for(key, proxy), proxy)
    assert refused_again.value.error == "invalid_client"


def test_tokens_jwt_authn_refuses_are_answered_as_tokens(proxy, control):
    key = control.create_key(name="tampered")
    at_edge(proxy, key)
    token = fetch(client_for(key, proxy), proxy)["access_token"]
    header, body, signature = token.split(".")
    forged_claims = dict(payload(token), scope="submit_job")
    forged_body = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).decode().rstrip("=")
    for bad in [f"{header}.{forged_body}.{signature}", f"{header}.{body}.{signature[:-4]}AAAA"]:
        answer = proxy.get("/v1/models", headers={"authorization": f"Bearer {bad}"})
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "INVALID_API_KEY"
        assert "access token" in answer.json()["error"]["message"]
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    # An API key in the same header still works exactly as before.
    assert proxy.get("/v1/models", key["key"]).status_code == 200


def test_failed_authentications_are_limited_per_client_and_per_address(upstream):
    service = oauth_service()
    envoy = Envoy(upstream.port, service.port, plugin_config(control=FAST))
    try:
        key = service.create_key(name="guessed")
        wrong = OAuth2Session(client_id=key["id"], client_secret="pk_live_wrong")
        for _ in range(10):
            with pytest.raises(OAuthError):
                fetch(wrong, envoy)
        # Past the limit even the right secret waits: guessing gets nothing more.
        throttled = requests.post(envoy.url("/oauth/token"), data={"grant_type": "client_credentials"},
                                  auth=(key["id"], key["key"]), timeout=5)
        assert throttled.status_code == 429 and 0 < int(throttled.headers["retry-after"]) <= 60
        assert throttled.json()["error"] == "invalid_client"
        # Per address: Envoy appends the real peer to X-Forwarded-For, so a client naming
        # other addresses is still counted as itself.
        other = service.create_key(name="bystander id")
        for i in range(20):
            answer = requests.post(envoy.url("/oauth/token"), data={"grant_type": "client_credentials"},
                                   auth=(f"key_guess{i}", "pk_live_wrong"),
                                   headers={"x-forwarded-for": f"203.0.113.{i}"}, timeout=5)
            assert answer.status_code == 401, answer.text
        blocked = requests.post(envoy.url("/oauth/token"), data={"grant_type": "client_credentials"},
                                auth=(other["id"], other["key"]), timeout=5)
        assert blocked.status_code == 429, blocked.text
        metrics = requests.get(service.url("/metrics"), timeout=5).text
        assert "keygate_control_oauth_client_auth_failures_total 30" in metrics
        assert "keygate_control_oauth_throttled_total 2" in metrics
    finally:
        envoy.close()
        service.stop()


def test_signing_keys_rotate_with_overlap(upstream):
    # Rotation every 4 s, successors published 2 s ahead of signing: more than the 1 s Envoy
    # keeps the key set (the documented rule: at least jwt_authn's cache_duration).
    service = oauth_service("--oauth-key-rotation", "4s", "--oauth-publish-ahead", "2s")
    envoy = Envoy(upstream.port, service.port, plugin_config(control=FAST), jwks_cache_duration="1s")
    try:
        key = service.create_key(name="long-lived client")
        at_edge(envoy, key)
        client = client_for(key, envoy)
        first = fetch(client, envoy)["access_token"]
        first_kid = json.loads(base64.urlsafe_b64decode(first.split(".")[0] + "=="))["kid"]
        assert client.get(envoy.url("/v1/models"), timeout=5).status_code == 200

        def rotated():
            token = fetch(client_for(key, envoy), envoy)["access_token"]
            kid = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
            return token if kid != first_kid else None
        second = wait_until(rotated, timeout=15, interval=0.5, what="a token signed by the successor key")
        kids = {k["kid"] for k in requests.get(envoy.url("/.well-known/jwks.json"), timeout=5).json()["keys"]}
        assert first_kid in kids, "the old key stays published while its tokens live"
        for token in [first, second]:
            answer = envoy.get("/v1/models", headers={"authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
        # The private keys are sealed: nothing in the database opens without the sealing key.
        stored = service.stored_bytes()
        assert b"BEGIN" not in stored and SEALING_KEY.encode() not in stored
    finally:
        envoy.close()
        service.stop()
