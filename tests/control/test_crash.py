"""kill -9 in the middle of a stream of concurrent creates: every key whose 201 arrived is there
after the restart, unchanged, with its secret stored and listed nowhere, and the version did not
go back."""

import os
import random
import threading
import time

import requests

from keygate_testkit.api import Api
from keygate_testkit.paths import ADMIN_TOKEN, SYNC_TOKEN

WRITER_THREADS = 4
CREATES_PER_THREAD = 50
REQUEST_TIMEOUT = 10
KILL_DEADLINE_SECONDS = 60


def test_kill_9_mid_stream_loses_nothing_acknowledged(fresh_service):
    seed = int(os.environ.get("KEYGATE_CRASH_SEED", time.time_ns() % 1_000_000))
    kill_after = random.Random(seed).randint(20, WRITER_THREADS * CREATES_PER_THREAD - 20)
    print(f"\nseed {seed}: kill -9 after {kill_after} acknowledged creates")
    service = fresh_service.start()
    url = service.url()
    acknowledged, lock = [], threading.Lock()
    enough = threading.Event()
    versions_seen = [0]

    def write(thread):
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
            for i in range(CREATES_PER_THREAD):
                body = {"name": f"t{thread}-{i}", "team": f"crash-{thread}", "scopes": ["submit_job"],
                        "allowed_ips": [f"10.{thread}.{i}.0/24"], "plan": ["free", "pro", "business"][i % 3],
                        "limits": {"per_minute": i + 1}}
                try:
                    response = session.post(f"{url}/v1/keys", json=body, timeout=REQUEST_TIMEOUT)
                except requests.RequestException:
                    return  # the server is gone
                assert response.status_code == 201, response.text
                with lock:
                    acknowledged.append(response.json())
                    if len(acknowledged) >= kill_after:
                        enough.set()

    def read():
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {SYNC_TOKEN}"
            for _ in range(10_000):
                try:
                    response = session.get(f"{url}/v1/snapshot", params={"limit": 1}, timeout=REQUEST_TIMEOUT)
                except requests.RequestException:
                    return
                versions_seen[0] = max(versions_seen[0], response.json()["version"])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITER_THREADS)]
    threads.append(threading.Thread(target=read))
    for thread in threads:
        thread.start()
    assert enough.wait(KILL_DEADLINE_SECONDS), f"only {len(acknowledged)} creates acknowledged"
    service.stop(hard=True)
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT + 5)
        assert not thread.is_alive()
    with lock:
        before = list(acknowledged)
    assert len(before) >= kill_after

    api = Api(service.start().url())
    for created in before:
        shown = api.request("GET", f"/v1/keys/{created['id']}")
        assert shown.status_code == 200, (created["id"], shown.text)
        assert shown.json() == {k: v for k, v in created.items() if k != "key"}
    snapshot = api.snapshot(limit=10000).json()
    assert snapshot["version"] >= max(versions_seen[0], len(before))
    assert {created["id"] for created in before} <= {key["id"] for key in snapshot["keys"]}
    listed = api.request("GET", "/v1/keys", params={"limit": 1000}).text + api.snapshot(limit=10000).text
    stored = service.stored_bytes()
    for created in before:
        assert created["key"] not in listed
        assert created["key"].encode() not in stored and created["key"][8:].encode() not in stored
