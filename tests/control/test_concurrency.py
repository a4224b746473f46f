"""Hundreds of concurrent admin writes: nothing acknowledged is lost, the version moves exactly
once per acknowledged change, readers never see it go back, and nothing answers 5xx."""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from keygate_testkit.api import Api
from keygate_testkit.paths import ADMIN_TOKEN, SYNC_TOKEN

WRITERS = 24
READERS = 4
READER_MAX_POLLS = 5000
REQUEST_TIMEOUT = 20
RUN_DEADLINE_SECONDS = 60

HOT_KEYS = 12
ROTATED_KEYS = 20
DOOMED_KEYS = 18
CREATES = 120

# One PATCH per field per hot key, all in flight together: a read-modify-write race between
# them would lose some of these fields.
HOT_FIELDS = {
    "name": lambda i: f"renamed-{i}",
    "team": lambda i: f"moved-{i}",
    "plan": lambda i: "business",
    "limits": lambda i: {"per_minute": 100 + i, "per_month": 5000 + i},
    "active": lambda i: False,
    "allowed_ips": lambda i: [f"10.{i}.0.0/16"],
    "expires_at": lambda i: f"2099-01-{i + 1:02d}T00:00:00Z",
}


def operations(team, hot, rotated, doomed):
    """(kind, method, path, body) for 300 writes, interleaved so every kind runs at once."""
    ops = [("create", "POST", "/v1/keys", {"name": f"c{i}", "team": team}) for i in range(CREATES)]
    for i, key in enumerate(hot):
        ops += [("hot", "PATCH", f"/v1/keys/{key}", {field: value(i)}) for field, value in HOT_FIELDS.items()]
    ops += [("rotate", "POST", f"/v1/keys/{key}/rotate", {"grace_seconds": 60}) for key in rotated * 2]
    ops += [("delete", "DELETE", f"/v1/keys/{key}", None) for key in doomed * 2]
    ops += [("doomed-patch", "PATCH", f"/v1/keys/{key}", {"name": "late"}) for key in doomed + doomed[:2]]
    # Deterministic interleaving: spread each kind across the whole run.
    return [op for _, op in sorted(enumerate(ops), key=lambda pair: (pair[0] * 7919) % len(ops))]


EXPECTED = {
    "create": {201},
    "hot": {200},
    "rotate": {201},
    "delete": {204, 404},
    "doomed-patch": {200, 409, 404},
}
ACKNOWLEDGED = {"create": 201, "hot": 200, "rotate": 201, "delete": 204, "doomed-patch": 200}


def test_concurrent_admin_writes_lose_nothing(fresh_service):
    service = fresh_service.start()
    api = Api(service.url())
    team = "contended"
    hot = [api.create(name=f"hot{i}", team="hot")["id"] for i in range(HOT_KEYS)]
    rotated = [api.create(name=f"rot{i}", team="rot", plan="pro")["id"] for i in range(ROTATED_KEYS)]
    doomed = [api.create(name=f"doom{i}")["id"] for i in range(DOOMED_KEYS)]
    base = api.snapshot(limit=1).json()
    ops = operations(team, hot, rotated, doomed)
    assert len(ops) == 300

    local = threading.local()

    def session():
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        return local.session

    def run(op):
        kind, method, path, body = op
        response = session().request(method, f"{service.url()}{path}", json=body, timeout=REQUEST_TIMEOUT)
        return kind, path, body, response.status_code, response.json() if response.content else None

    writers_done = threading.Event()
    seen = {}

    def read(reader):
        """Long polls from the last version seen: every answer must be strictly newer."""
        versions, version = [], base["version"]
        with requests.Session() as reader_session:
            reader_session.headers["Authorization"] = f"Bearer {SYNC_TOKEN}"
            for _ in range(READER_MAX_POLLS):
                if writers_done.is_set():
                    break
                response = reader_session.get(
                    f"{service.url()}/v1/snapshot",
                    params={"since": version, "epoch": base["epoch"], "wait": 1, "limit": 1},
                    timeout=REQUEST_TIMEOUT,
                )
                assert response.status_code in (200, 304), response.text
                if response.status_code == 200:
                    page = response.json()
                    assert page["version"] > version, (reader, version, page["version"])
                    version = page["version"]
                    versions.append(version)
        seen[reader] = versions

    readers = [threading.Thread(target=read, args=(i,)) for i in range(READERS)]
    for reader in readers:
        reader.start()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        results = list(pool.map(run, ops, timeout=RUN_DEADLINE_SECONDS))
    elapsed = time.monotonic() - started
    writers_done.set()
    for reader in readers:
        reader.join(timeout=REQUEST_TIMEOUT)
        assert not reader.is_alive()

    statuses = Counter((kind, status) for kind, _, _, status, _ in results)
    print(f"\n300 concurrent admin writes over {WRITERS} threads in {elapsed:.2f}s "
          f"({300 / elapsed:.0f} writes/s); {dict(statuses)}")
    for kind, path, body, status, answer in results:
        assert status < 500, (kind, path, answer)
        assert status in EXPECTED[kind], (kind, path, body, status, answer)
    acknowledged = sum(1 for kind, _, _, status, _ in results if status == ACKNOWLEDGED[kind])

    # Exactly one DELETE of each doomed key won.
    deletes = Counter(path for kind, path, _, status, _ in results if kind == "delete" and status == 204)
    assert sorted(deletes.values()) == [1] * DOOMED_KEYS

    # The version moved once per acknowledged change, and no reader saw it go back.
    final = api.snapshot(limit=1).json()
    assert final["version"] == base["version"] + acknowledged
    assert len(seen) == READERS and any(seen.values())
    for versions in seen.values():
        assert versions == sorted(set(versions)) and all(v <= final["version"] for v in versions)

    # Every acknowledged change is visible.
    for kind, path, body, status, answer in results:
        if kind == "create":
            shown = api.request("GET", f"/v1/keys/{answer['id']}").json()
            assert shown == {k: v for k, v in answer.items() if k != "key"}
        elif kind == "rotate":
            shown = api.request("GET", f"/v1/keys/{answer['id']}").json()
            assert shown["rotated_from"] == path.split("/")[3] and shown["plan"] == "pro"
    for i, key in enumerate(hot):
        shown = api.request("GET", f"/v1/keys/{key}").json()
        for field, value in HOT_FIELDS.items():
            want = value(i)
            if field == "limits":
                want = {"per_minute": None, "per_hour": None, "per_day": None, "concurrent": None, **want}
            assert shown[field] == want, (key, field, shown)
    for key in doomed:
        assert api.request("GET", f"/v1/keys/{key}").status_code == 404
    delta = api.snapshot(since=base["version"], epoch=base["epoch"], limit=10000).json()
    changed = {record["id"] for record in delta["keys"]}
    created = {answer["id"] for kind, _, _, status, answer in results if kind in ("create", "rotate")}
    assert created | set(hot) | set(rotated) <= changed
    assert len(delta["deleted"]) == DOOMED_KEYS
    log = service.log_path.read_text()
    assert "database is locked" not in log and "internal error" not in log
