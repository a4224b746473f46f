#!/usr/bin/env python3
"""Where Envoy's CPU goes with Keygate on the request path: `perf record` of one Envoy
(Keygate, N keys from the real control service) under wrk load, then `perf report` by shared
object and by symbol. V8's JIT code (the filter's Wasm) has no symbols: it shows as
`[unknown]`/`perf-*.map` frames, and everything else is Envoy's C++ (host calls included).

Usage: bench/profile.py [KEYS] [SECONDS]   (defaults 100000, 8). Needs perf. Loopback only.
Writes target/bench/profile-*.txt.
"""
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run


def main():
    keys = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    work = Path(tempfile.mkdtemp(prefix="keygate-profile-"))
    run.OUT.mkdir(parents=True, exist_ok=True)
    try:
        keyset = run.KeySet(keys, work)
        cases = {
            "keygate": run.start_keygate("profile-keygate", keyset, work, run.SETTINGS["concurrency"]),
            "bare": run.start_envoy("profile-bare", None, [], work, run.SETTINGS["concurrency"]),
        }
        for name, proxy in cases.items():
            data_path = work / f"perf-{name}.data"
            perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-o", str(data_path), "-p",
                                     str(proxy.proc.pid), "--", "sleep", str(seconds + 1)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            result = run.wrk(proxy, keyset.secrets[0], seconds)
            perf.wait(timeout=seconds + 60)
            header = (f"{name}: {result['rps']:.0f} req/s, Envoy CPU {result['envoy_cpu_pct']:.0f}%, "
                      f"{result['envoy_cpu_pct'] / 100 * result['duration_us'] / result['requests']:.1f} CPU µs/request\n")
            for sort, extra in (("dso", []), ("sym", ["--no-children"])):
                report = subprocess.run(["perf", "report", "-i", str(data_path), "--stdio", "--sort", sort,
                                         "-g", "none", "--percent-limit", "0.7", *extra],
                                        capture_output=True, text=True, timeout=300).stdout
                out = run.OUT / f"profile-{name}-{sort}.txt"
                out.write_text(header + report)
                print(header + "\n".join(line for line in report.splitlines()
                                         if line.strip() and not line.startswith("#"))[:6000], flush=True)
    finally:
        run.PROCS.stop_all()


if __name__ == "__main__":
    main()
