"""The control service's HTTP API as the tests speak it: a client with the right token for each
side, long polls seen held, error bodies, management tokens and usage reports."""
import threading
import time
import uuid
from datetime import datetime, timezone

import requests

from .paths import ADMIN_TOKEN, SYNC_TOKEN
from .waiting import wait_until

# How long a started long poll may take to be held by the service (generous: a loaded machine).
HOLD_SECONDS = 10


class Api:
    """Thin helper over requests with the right token for each side of the service."""

    def __init__(self, url: str):
        self.url = url
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        self.sync = {"Authorization": f"Bearer {SYNC_TOKEN}"}

    def request(self, method, path, token="admin", **kwargs):
        """`token` is "admin", "sync" or None (no Authorization header)."""
        headers = dict(kwargs.pop("headers", {}))
        if token == "admin":
            headers.update(self.admin)
        elif token == "sync":
            headers.update(self.sync)
        kwargs.setdefault("timeout", 10)
        return requests.request(method, f"{self.url}{path}", headers=headers, **kwargs)

    def create(self, **body):
        body.setdefault("name", "test key")
        response = self.request("POST", "/v1/keys", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def snapshot(self, token="sync", **params):
        return self.request("GET", "/v1/snapshot", token=token, params=params)


def error_of(response):
    """(code, message) of a JSON error body."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    error = response.json()["error"]
    return error["code"], error["message"]


def held_polls(api):
    """How many long polls the service holds right now (`GET /v1/snapshot/polls`)."""
    response = api.request("GET", "/v1/snapshot/polls", token="sync")
    assert response.status_code == 200, response.text
    return response.json()["held"]


class HeldPoll:
    """`GET /v1/snapshot?wait=…` in a thread, returned only once the service counts it as held,
    so a write made afterwards must wake it (it cannot have been read before the poll began)."""

    def __init__(self, api, wait, **params):
        self.response = None
        self.error = None
        self.answered_at = None
        self.held_before = held_polls(api)

        def poll():
            try:
                self.response = api.request("GET", "/v1/snapshot", token="sync",
                                            params=dict(params, wait=wait), timeout=wait + 10)
            except requests.RequestException as error:
                self.error = error
            self.answered_at = time.monotonic()

        self.thread = threading.Thread(target=poll, daemon=True)
        self.thread.start()

        def held():
            assert self.thread.is_alive(), f"the poll was answered before it was seen held: {self.outcome()}"
            return held_polls(api) > self.held_before

        wait_until(held, HOLD_SECONDS, interval=0.02, what="the service to hold the poll", retry_on=())

    def outcome(self):
        if self.response is not None:
            return f"{self.response.status_code} {self.response.text[:300]}"
        return repr(self.error)

    def answer(self, timeout):
        """The poll's response once it has come, within `timeout` seconds."""
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive(), f"the poll was not answered within {timeout}s"
        assert self.response is not None, f"the poll failed: {self.error!r}"
        return self.response


def call(api, method, path, token, **kwargs):
    """A request to `api`'s service with `token` (any secret) as the bearer token."""
    return requests.request(method, f"{api.url}{path}", headers={"Authorization": f"Bearer {token}"},
                            timeout=10, **kwargs)


def make_token(api, role, team=None, **extra):
    """A new management token of `role` (for `team`); the created record, its secret included."""
    body = {"name": f"{role}-{team}", "role": role, **extra}
    if team is not None:
        body["team"] = team
    response = api.request("POST", "/v1/tokens", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def iso(instant):
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def current_hour():
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def report(key_id, hour=None, allowed=0, **denied):
    """One key's usage report for an hour (this hour by default)."""
    return {"key_id": key_id, "hour": hour or iso(current_hour()), "allowed": allowed, "denied": denied}


def post_usage(api, reports, batch_id=None, token="sync", proxy_id="proxy-1"):
    body = {"proxy_id": proxy_id, "batch_id": batch_id or f"{proxy_id}-{uuid.uuid4().hex}",
            "reports": reports}
    return api.request("POST", "/v1/usage", token=token, json=body)


def accepted(api, reports, **kwargs):
    """POST /v1/usage that must be accepted; its answer."""
    response = post_usage(api, reports, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def current_position(api):
    """(epoch, version) of the service's snapshot now."""
    page = api.snapshot(limit=1).json()
    return page["epoch"], page["version"]


def outcomes(counts):
    """A usage bucket's or totals' request counts by outcome (`allowed`, `denied`, `total`),
    without the detail of what the upstream did, durations and routes."""
    return {name: counts[name] for name in ("allowed", "denied", "total")}


def key_usage(api, key_id, **params):
    """GET /v1/keys/{key_id}/usage with `params` (from, to, granularity), which must answer 200."""
    response = api.request("GET", f"/v1/keys/{key_id}/usage", params=params)
    assert response.status_code == 200, response.text
    return response.json()
