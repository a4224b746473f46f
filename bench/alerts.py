"""What alerts cost the control service, measured on a real `keygate-control serve` (SQLite, this
machine), so docs/webhooks.md can state it as numbers:

1. The minute sweep (`key.expiring` / `key.expired`) with N keys expiring within the notice: its
   cost should follow N (the keys near expiry, read through the expiry index), not all keys.
   Each service is restarted on its database; the first sweep at start logs its duration.
2. A usage report for one key of a team with a shared quota of M keys: the report re-marks the
   team's live keys, so its cost should follow M. Median latency of POST /v1/usage (one report,
   one key) over BENCH_POSTS posts, against a key of no team measured in the same run.

    make bench-alerts                 # or: KEYGATE_CONTROL_BIN=... .venv/bin/python bench/alerts.py
    BENCH_EXPIRING=1000,4000,16000 BENCH_TEAM_SIZES=10,100,1000,4000 BENCH_POSTS=40 make bench-alerts
"""

import datetime
import os
import re
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import requests

from keygate_testkit.control import ControlService
from keygate_testkit.paths import ADMIN_TOKEN, SYNC_TOKEN
from keygate_testkit.waiting import wait_until

EXPIRING = [int(n) for n in os.environ.get("BENCH_EXPIRING", "1000,4000,16000").split(",")]
TEAM_SIZES = [int(n) for n in os.environ.get("BENCH_TEAM_SIZES", "10,100,1000,4000").split(",")]
POSTS = int(os.environ.get("BENCH_POSTS", "40"))
SWEEP_LINE = re.compile(r"alert sweep: (\d+) keys near expiry checked, (\d+) alerts raised, ([\d.]+) ms")


def create_keys(service, count, **fields):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    ids = []
    for index in range(count):
        response = session.post(service.url("/v1/keys"), json={"name": f"k{index}", **fields}, timeout=30)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def first_sweep(service):
    match = wait_until(lambda: SWEEP_LINE.search(service.log_text()), timeout=60, what="the first alert sweep")
    return int(match.group(1)), float(match.group(3))


def sweep_cost(count):
    directory = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    database = directory / "keygate.db"
    expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    service = ControlService(database, directory / "fill.log").start()
    try:
        create_keys(service, count, expires_at=expires)
        create_keys(service, count // 4)  # keys that never expire: the sweep must not read them
    finally:
        service.stop()
    times = []
    for run in range(3):
        restarted = ControlService(database, directory / f"sweep-{run}.log").start()
        try:
            checked, took = first_sweep(restarted)
        finally:
            restarted.stop()
        assert checked == count, (checked, count)
        times.append(took)
    return statistics.median(times)


def post_latency(service, key_id, label):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {SYNC_TOKEN}"
    hour = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:00:00Z")
    took = []
    for _ in range(POSTS):
        body = {"proxy_id": f"bench-{label}", "batch_id": uuid.uuid4().hex,
                "reports": [{"key_id": key_id, "hour": hour, "allowed": 1}]}
        started = time.perf_counter()
        response = session.post(service.url("/v1/usage"), json=body, timeout=30)
        took.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return statistics.median(took)


def team_report_cost(sizes):
    service = ControlService().start()
    rows = []
    try:
        lone = create_keys(service, 1, plan="enterprise")[0]
        for size in sizes:
            team = f"team-{size}"
            created = service.admin("POST", "/v1/teams", json={"name": team, "per_day": 10**9})
            assert created.status_code == 201, created.text
            key = create_keys(service, size, team=team, plan="enterprise")[0]
            baseline = post_latency(service, lone, f"lone-{size}")
            in_team = post_latency(service, key, team)
            rows.append((size, baseline, in_team))
    finally:
        service.stop()
    return rows


def main():
    print("Alert costs on this machine (SQLite; medians)")
    print()
    print("| keys expiring within 7 days | first sweep | per key |")
    print("|---|---|---|")
    for count in EXPIRING:
        took = sweep_cost(count)
        print(f"| {count:,} | {took:.1f} ms | {took * 1000 / count:.1f} µs |", flush=True)
    print()
    print("| keys in the team (shared quota) | report of a key of no team | report of a team key | extra per team key |")
    print("|---|---|---|---|")
    for size, baseline, in_team in team_report_cost(TEAM_SIZES):
        extra = (in_team - baseline) * 1000 / size
        print(f"| {size:,} | {baseline:.2f} ms | {in_team:.2f} ms | {extra:.1f} µs |", flush=True)


if __name__ == "__main__":
    main()
