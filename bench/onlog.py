#!/usr/bin/env python3
"""`make bench-onlog`: what the filter's log-phase work costs per request (issue 25's budget:
at most 1 µs of Envoy CPU). A/B in one run, both Envoys on the same 1,000 keys and control
service, measured in interleaved rounds with `bench/run.py`'s load and accounting (wrk; Envoy
CPU µs per request; the median of the rounds' paired differences). The baseline:

- by default this very build with `usage.response_detail: false`: the log phase switched off
  (no status read, no log-phase bookkeeping) and everything else the same, so the difference
  is the log phase's work and nothing else;
- or BENCH_BASELINE_WASM, another build (`BENCH_BASELINE_REV=59e9bad make bench-onlog` builds
  the one before the usage detail; it differs in everything that landed since, too). Both
  builds then run without what that baseline predates (`oauth`).

Cases: an unlimited key and a limited one (limits never reached), each answered 200 by the
direct-response upstream, so every request runs the log phase.

Environment: BENCH_BASELINE_WASM, BENCH_ROUNDS [5], BENCH_DURATION [8] and the rest of
bench/run.py's settings. Writes target/bench/onlog.json.
"""
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import run

BASELINE_WASM = os.environ.get("BENCH_BASELINE_WASM", "")


def main():
    baseline_wasm = Path(BASELINE_WASM).resolve() if BASELINE_WASM else None
    if baseline_wasm is not None and not baseline_wasm.is_file():
        sys.exit(f"bench-onlog: BENCH_BASELINE_WASM {BASELINE_WASM} is not a file")
    run.SETTINGS["rounds"] = int(os.environ.get("BENCH_ROUNDS", "5"))
    work = Path(tempfile.mkdtemp(prefix="keygate-onlog-"))
    bins = work / "bin"
    bins.mkdir()
    current = Path(shutil.copy2(run.WASM, bins / "keygate.wasm"))
    if baseline_wasm is None:
        # This build, its log phase switched off.
        runs = {"current": (current, {}), "baseline": (current, {"usage": {"response_detail": False}})}
        dropped = ()
    else:
        # The same configuration for both builds, so without what the baseline predates
        # (OAuth access tokens: not on an API key's request path).
        runs = {"current": (current, {}), "baseline": (Path(shutil.copy2(baseline_wasm, bins / "baseline.wasm")), {})}
        dropped = ("oauth",)
    run.CONTROL = Path(shutil.copy2(run.CONTROL, bins / "bench-control"))
    try:
        keys = run.KeySet(1000, work)
        workers = run.SETTINGS["concurrency"]
        proxies = {}
        for name, (wasm, overrides) in runs.items():
            run.WASM = wasm
            proxies[name] = run.start_keygate(f"keygate-{name}", keys, work, workers, dropped=dropped,
                                              plugin_overrides=overrides)
        cases = []
        for name, proxy in proxies.items():
            for kind, secret in (("unlimited", keys.secrets[0]), ("limited", keys.limited_secret)):
                cases.append({"name": f"{name}-{kind}", "kind": "keygate", "keys": 1000, "proxy": proxy,
                              "key": secret, "expect": 200})
        for case in cases:
            got = run.status(case["proxy"], case["key"])
            if got != case["expect"]:
                raise RuntimeError(f"{case['name']}: expected {case['expect']}, got {got}")
        results = {case["name"]: case for case in run.measure_cases(cases)}
        report = {"settings": run.SETTINGS, "cases": results, "log_phase_us": {}}
        for kind in ("unlimited", "limited"):
            base, this = results[f"baseline-{kind}"], results[f"current-{kind}"]
            # Each round measures both builds back to back: the median of those paired
            # differences resists the machine's drift better than a difference of medians.
            paired = sorted(b["cpu_us_per_req"] - a["cpu_us_per_req"] for a, b in zip(base["runs"], this["runs"]))
            cost = paired[len(paired) // 2]
            report["log_phase_us"][kind] = {"paired_median": round(cost, 2),
                                            "of_medians": round(this["cpu_us_per_req"] - base["cpu_us_per_req"], 2),
                                            "paired": [round(x, 1) for x in paired]}
            print(f"{kind:>9} key: {base['cpu_us_per_req']:.1f} → {this['cpu_us_per_req']:.1f} Envoy CPU µs/request "
                  f"(paired median {cost:+.1f} µs over {len(paired)} rounds; {base['rps']:.0f} → {this['rps']:.0f} "
                  f"req/s)  budget ≤ 1 µs: {'met' if cost <= 1 else 'NOT met'}")
        run.OUT.mkdir(parents=True, exist_ok=True)
        (run.OUT / "onlog.json").write_text(json.dumps(report, indent=2))
    finally:
        run.PROCS.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
