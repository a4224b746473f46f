"""Oversized, malformed and hostile bodies and paths on every endpoint that takes them: always
our JSON error (400, 404, 413 or 415), never a 5xx, never a hang."""

import http.client
import json
from urllib.parse import urlsplit

import pytest

from keygate_testkit.api import Api

REQUEST_TIMEOUT = 10
ADMIN_LIMIT = 64 * 1024
USAGE_LIMIT = 4 * 1024 * 1024


def usage_body(**report):
    return {"proxy_id": "p", "batch_id": "b", "reports": [{"key_id": "key_x", "hour": "2020-01-01T00:00:00Z",
                                                             "allowed": 1, **report}]}


def fleet_body(window=1):
    return {"proxy_id": "hostile-envoy", "bucket_ms": [1, 120_000, 3_600_000],
            "window_ms": [window, 3_600_000, 86_400_000],
            "keys": [{"key": "0" * 32, "limits": [10, None, None], "counts": [[[1, 1]], [], []]}]}


# Endpoint name → (method, path template, token, body limit, a body that gets past parsing,
# the same with a number field set to a placeholder, the same with a string field).
ENDPOINTS = {
    "create": ("POST", "/v1/keys", "admin", ADMIN_LIMIT,
               lambda n: {"name": "a", "limits": {"per_minute": n}}, lambda s: {"name": s}),
    "patch": ("PATCH", "/v1/keys/{id}", "admin", ADMIN_LIMIT,
              lambda n: {"limits": {"per_minute": n}}, lambda s: {"team": s}),
    "rotate": ("POST", "/v1/keys/{id}/rotate", "admin", ADMIN_LIMIT,
               lambda n: {"grace_seconds": n}, lambda s: {"grace_seconds": s}),
    "usage": ("POST", "/v1/usage", "sync", USAGE_LIMIT,
              lambda n: usage_body(allowed=n), lambda s: dict(usage_body(), proxy_id=s)),
    # The number is a window's length (1 ms buckets: above 64 is refused).
    "fleet-sync": ("POST", "/v1/ratelimits/sync", "sync", USAGE_LIMIT,
                   lambda n: fleet_body(window=n), lambda s: dict(fleet_body(), proxy_id=s)),
}

JSON = "application/json"
NUMBER = "__NUMBER__"


def number_body(endpoint, literal):
    """The endpoint's body with a raw JSON number literal where its number goes."""
    return json.dumps(ENDPOINTS[endpoint][4](NUMBER)).replace(f'"{NUMBER}"', literal).encode()


def string_body(endpoint, value):
    return json.dumps(ENDPOINTS[endpoint][5](value)).encode()


DEEP = b"[" * 10_000 + b"]" * 10_000

# (label, body builder taking the endpoint name, content type, status, error codes)
CASES = [
    ("truncated", lambda e: string_body(e, "abc")[:-3], JSON, 400, {"INVALID_JSON"}),
    ("trailing garbage", lambda e: number_body(e, "1") + b" {}", JSON, 400, {"INVALID_JSON"}),
    ("not json", lambda e: b"name=a", JSON, 400, {"INVALID_JSON"}),
    ("form content type", lambda e: string_body(e, "abc"), "application/x-www-form-urlencoded", 415,
     {"UNSUPPORTED_MEDIA_TYPE"}),
    ("text content type", lambda e: string_body(e, "abc"), "text/plain", 415, {"UNSUPPORTED_MEDIA_TYPE"}),
    ("multipart", lambda e: b"--x\r\n\r\n{}\r\n--x--", "multipart/form-data; boundary=x", 415,
     {"UNSUPPORTED_MEDIA_TYPE"}),
    ("top-level array", lambda e: b'["a"]', JSON, 400, {"VALIDATION_ERROR"}),
    ("top-level string", lambda e: b'"a"', JSON, 400, {"VALIDATION_ERROR"}),
    ("top-level number", lambda e: b"42", JSON, 400, {"VALIDATION_ERROR"}),
    ("top-level null", lambda e: b"null", JSON, 400, {"VALIDATION_ERROR"}),
    ("top-level true", lambda e: b"true", JSON, 400, {"VALIDATION_ERROR"}),
    # serde_json skips a top-level value without recursing, and stops at depth 128 otherwise.
    ("10,000 nested arrays", lambda e: DEEP, JSON, 400, {"VALIDATION_ERROR"}),
    ("10,000 nested arrays in a field", lambda e: b'{"name":' + DEEP + b"}", JSON, 400,
     {"INVALID_JSON", "VALIDATION_ERROR"}),
    ("10,000 nested objects", lambda e: b'{"a":' * 10_000 + b"1" + b"}" * 10_000, JSON, 400,
     {"INVALID_JSON", "VALIDATION_ERROR"}),
    ("unclosed nesting", lambda e: b'{"name":' + b"[" * 60_000, JSON, 400, {"INVALID_JSON", "VALIDATION_ERROR"}),
    ("escaped NUL in a string", lambda e: string_body(e, "a\x00b"), JSON, 400, {"VALIDATION_ERROR"}),
    ("raw NUL in a string", lambda e: string_body(e, "a\x01b").replace(b"\\u0001", b"\x00"), JSON, 400,
     {"INVALID_JSON"}),
    ("invalid UTF-8 in a string", lambda e: string_body(e, "a\x01b").replace(b"\\u0001", b"\xff\xfe"), JSON,
     400, {"INVALID_JSON"}),
    ("lone surrogate", lambda e: string_body(e, "a\x01b").replace(b"\\u0001", b"\\ud800"), JSON, 400,
     {"INVALID_JSON", "VALIDATION_ERROR"}),
    ("escape sequence in a string", lambda e: string_body(e, "\x1b[2J"), JSON, 400, {"VALIDATION_ERROR"}),
    ("huge integer", lambda e: number_body(e, "9" * 400), JSON, 400, {"INVALID_JSON", "VALIDATION_ERROR"}),
    ("huge exponent", lambda e: number_body(e, "1e400"), JSON, 400, {"INVALID_JSON", "VALIDATION_ERROR"}),
    ("above i64", lambda e: number_body(e, "9223372036854775808"), JSON, 400, {"VALIDATION_ERROR"}),
    ("above u64", lambda e: number_body(e, "18446744073709551616"), JSON, 400, {"VALIDATION_ERROR"}),
    ("negative", lambda e: number_body(e, "-1"), JSON, 400, {"VALIDATION_ERROR"}),
    ("negative zero float", lambda e: number_body(e, "-0.0"), JSON, 400, {"VALIDATION_ERROR"}),
    ("fraction", lambda e: number_body(e, "1.5"), JSON, 400, {"VALIDATION_ERROR"}),
    ("unknown field", lambda e: json.dumps(dict(ENDPOINTS[e][4](1), colour="red")).encode(), JSON, 400,
     {"VALIDATION_ERROR"}),
    ("duplicate field", lambda e: number_body(e, "1")[:-1] + b',"' + next(iter(ENDPOINTS[e][4](1))).encode()
     + b'":1}', JSON, 400, {"VALIDATION_ERROR", "INVALID_JSON"}),
]


def send(url, method, path, headers, body, timeout=REQUEST_TIMEOUT):
    """Exact bytes on the wire (no client-side normalisation of the path or body)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def key_id(service):
    return Api(service.url()).create(name="hostile target")["id"]


def call(api, key_id, endpoint, body, content_type=JSON, extra_headers=None):
    method, template, token, *_ = ENDPOINTS[endpoint]
    headers = {"Authorization": (api.admin if token == "admin" else api.sync)["Authorization"]}
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers.update(extra_headers or {})
    return send(api.url, method, template.format(id=key_id), headers, body)


def assert_json_error(result, status, codes):
    got_status, content_type, body = result
    assert got_status == status, (got_status, body[:300])
    assert content_type.startswith("application/json"), (content_type, body[:300])
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"} and error["code"] in codes, error
    return error


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_malformed_bodies_are_json_errors(api, key_id, endpoint, case):
    name, build, content_type, status, codes = case
    if name == "unknown field" and endpoint in ("usage", "fleet-sync"):
        # Wire messages from proxies are read tolerantly (test_usage.py::test_unknown_fields_are_ignored);
        # admin request bodies stay strict.
        result = call(api, key_id, endpoint, build(endpoint), content_type)
        assert result[0] == 200, result
        return
    assert_json_error(call(api, key_id, endpoint, build(endpoint), content_type), status, codes)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_oversized_bodies_are_413(api, key_id, endpoint):
    method, template, token, limit, *_ = ENDPOINTS[endpoint]
    path = template.format(id=key_id)
    padded = b'{"name":"' + b"x" * limit + b'"}'
    # requests reads the 413 even when the service stops reading the body early.
    response = api.request(method, path, token=token, data=padded, headers={"Content-Type": JSON},
                           timeout=REQUEST_TIMEOUT)
    error = assert_json_error((response.status_code, response.headers.get("content-type", ""), response.content),
                              413, {"PAYLOAD_TOO_LARGE"})
    assert str(limit // 1024 if limit < 1 << 20 else limit >> 20) in error["message"]
    # The same without a Content-Length: the limit holds for a chunked body too.
    chunks = (padded[i:i + 65536] for i in range(0, len(padded), 65536))
    response = api.request(method, path, token=token, data=chunks, headers={"Content-Type": JSON},
                           timeout=REQUEST_TIMEOUT)
    assert_json_error((response.status_code, response.headers.get("content-type", ""), response.content),
                      413, {"PAYLOAD_TOO_LARGE"})
    # A Content-Length that promises too much is refused without waiting for the body.
    headers = {"Authorization": (api.admin if token == "admin" else api.sync)["Authorization"],
               "Content-Length": str(limit * 100), "Content-Type": JSON}
    assert_json_error(send(api.url, method, path, headers, b"{}"), 413, {"PAYLOAD_TOO_LARGE"})


def test_json_content_type_variants_are_accepted(api, key_id):
    for content_type in [None, "application/json; charset=utf-8", "APPLICATION/JSON", "application/merge-patch+json"]:
        status, _, body = call(api, key_id, "patch", b'{"team":"variants"}', content_type)
        assert status == 200, (content_type, body)
    # An empty rotate body needs no JSON type (curl -X POST -d '' sends a form type).
    status, _, body = call(api, key_id, "rotate", b"", "application/x-www-form-urlencoded")
    assert status == 201, body


ODD_IDS = [
    "%00", "%00key", "key_%0A", "%FF%FE", "..", "..%2F..%2Fetc%2Fpasswd", "%2E%2E", "key%20x",
    "%25", "x" * 8192, "key_" + "%C3%A9" * 500, "'%20OR%201=1--", "%22%3E%3Cscript%3E",
]


@pytest.mark.parametrize("odd", ODD_IDS, ids=[odd[:20] for odd in ODD_IDS])
def test_odd_path_ids_are_json_404(api, odd):
    for method, suffix, body in [("GET", "", None), ("PATCH", "", b'{"team":"x"}'), ("DELETE", "", None),
                                 ("POST", "/rotate", None), ("GET", "/usage", None)]:
        headers = dict(api.admin, **({"Content-Type": JSON} if body else {}))
        result = send(api.url, method, f"/v1/keys/{odd}{suffix}", headers, body)
        assert_json_error(result, 404, {"NOT_FOUND"})


def test_dot_segments_do_not_escape_the_route(api):
    for path in ["/v1/keys/../keys", "/v1/keys/./x", "/v1/../v1/keys/x", "/v1/keys/x/../../snapshot"]:
        status, content_type, body = send(api.url, "GET", path, api.admin, None)
        assert status in (400, 404), (path, status, body)
        assert content_type.startswith("application/json"), (path, body)


def test_service_is_still_healthy(api):
    assert api.request("GET", "/healthz").status_code == 200
