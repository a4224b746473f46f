"""Only src/proxy/abi/ may call the proxy-wasm SDK functions that can panic.

proxy-wasm 0.2.x's `hostcalls::*` end in `status => panic!(...)` for any status they do not
expect, and the `Context`/`HttpContext`/`RootContext` helpers call them (most with `.unwrap()`).
A panic aborts the Wasm VM and Envoy then fails every request, so the filter makes its host
calls through `src/proxy/abi/`, which maps every status to an error. This test reads the SDK source
the workspace builds against (found with `cargo metadata`), lists every `hostcalls` function
that contains `panic!`, `unwrap`, `expect` or `unreachable!` or decodes host bytes unchecked,
and every trait helper that calls `hostcalls`, and fails when any other file in src/ calls one.
"""
import json
import re
import subprocess
from pathlib import Path

from keygate_testkit.paths import ROOT

ALLOWED_DIR = "src/proxy/abi/"

# Calls still to move to `abi`. An entry here must still match a call (the test fails on a
# stale one): delete it once the call is gone.
PENDING = {}

# Functions proxy-wasm 0.2.5 is known to panic in (each has a `status => panic!` arm): the lists
# are derived from the SDK source, and must at least hold these, or the derivation broke.
KNOWN_PANICKING = {
    "set_map_value",
    "set_property",
    "get_shared_data",
    "set_shared_data",
    "get_map_bytes",
    "get_current_time",
    "dispatch_http_call",
    "send_http_response",
    "define_metric",
    "log",
}
CONTEXT_TRAITS = ("Self", "Context", "HttpContext", "RootContext", "StreamContext")


def host_triple():
    info = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, timeout=60, cwd=ROOT).stdout
    return next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("host:"))


def sdk_source_dir():
    # Filtered to the host: offline, cargo has only the packages a host build downloaded, and
    # the lockfile also names packages of other platforms (Redox, WASI 0.2) it never fetches.
    result = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--offline", "--filter-platform", host_triple()],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    packages = json.loads(result.stdout)["packages"]
    manifests = [p["manifest_path"] for p in packages if p["name"] == "proxy-wasm"]
    assert len(manifests) == 1, manifests
    return Path(manifests[0]).parent / "src"


def functions(source):
    """(name, body) of every `fn` with a body in `source`, braces matched."""
    found = []
    for match in re.finditer(r"\bfn\s+(\w+)", source):
        start = match.end()
        brace = source.find("{", start)
        semicolon = source.find(";", start)
        if brace < 0 or (0 <= semicolon < brace):
            continue
        depth = 0
        for index in range(brace, len(source)):
            if source[index] == "{":
                depth += 1
            elif source[index] == "}":
                depth -= 1
                if depth == 0:
                    found.append((match.group(1), source[brace : index + 1]))
                    break
    return found


def panicking_hostcalls(sdk):
    source = (sdk / "hostcalls.rs").read_text()
    # The public functions come before the private `mocks`, `tests` and `utils` modules.
    public = source[: source.index("\nmod utils")]
    names = set()
    for name, body in functions(public):
        if not re.search(rf"\npub fn {name}\b", public):
            continue
        if re.search(r"panic!|unreachable!|\.unwrap\(\)|\.expect\(|deserialize_map", body):
            names.add(name)
    return names


def unwrapping_helpers(sdk):
    """Trait helpers whose default body calls a hostcall (each of which can panic)."""
    names = set()
    for name, body in functions((sdk / "traits.rs").read_text()):
        if "hostcalls::" in body:
            names.add(name)
    return names


def code_lines(text):
    """Line number and code of each line, comments dropped."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("//"):
            continue
        cut = line.find("//")
        if cut >= 0 and line[:cut].count('"') % 2 == 0:
            line = line[:cut]
        yield number, line


def offending_calls(text, hostcalls, helpers):
    """(line, what) for every call in `text` of a function that can panic."""
    calls = []
    for number, line in code_lines(text):
        for name in re.findall(r"\bhostcalls::(\w+)", line):
            if name in hostcalls:
                calls.append((number, f"hostcalls::{name}"))
        for group in re.findall(r"\bhostcalls::\{([^}]*)\}", line):
            for name in re.findall(r"\w+", group):
                if name in hostcalls:
                    calls.append((number, f"hostcalls::{name}"))
        if re.search(r"\bhostcalls::\*|\bhostcalls\s+as\s+\w+", line):
            calls.append((number, "hostcalls glob or alias"))
        if re.search(r"\bproxy_wasm::set_log_level\b", line):
            # Installs the SDK's logger, whose `log` unwraps every `proxy_log` status.
            calls.append((number, "proxy_wasm::set_log_level"))
        for name in re.findall(r"\.\s*(\w+)\s*\(", line):
            if name in helpers:
                calls.append((number, f".{name}()"))
        traits = "|".join(CONTEXT_TRAITS)
        for name in re.findall(rf"\b(?:{traits})::(\w+)\s*\(", line):
            if name in helpers:
                calls.append((number, f"{name}()"))
    return calls


def test_the_derived_lists_hold_what_we_know_panics():
    sdk = sdk_source_dir()
    hostcalls = panicking_hostcalls(sdk)
    assert KNOWN_PANICKING <= hostcalls, KNOWN_PANICKING - hostcalls
    helpers = unwrapping_helpers(sdk)
    assert {"set_http_request_header", "get_http_request_header", "send_http_response"} <= helpers
    assert {"dispatch_http_call", "get_shared_data", "set_tick_period"} <= helpers


def test_no_file_but_abi_calls_an_sdk_function_that_can_panic():
    sdk = sdk_source_dir()
    hostcalls = panicking_hostcalls(sdk)
    helpers = unwrapping_helpers(sdk)
    offending = []
    pending_seen = set()
    for path in sorted((ROOT / "src").rglob("*.rs")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(ALLOWED_DIR):
            continue
        for number, what in offending_calls(path.read_text(), hostcalls, helpers):
            if (relative, what) in PENDING:
                pending_seen.add((relative, what))
            else:
                offending.append(f"{relative}:{number}: {what}")
    assert not offending, (
        "these can panic and kill the Wasm VM; call the src/proxy/abi/ wrapper instead:\n"
        + "\n".join(offending)
    )
    stale = set(PENDING) - pending_seen
    assert not stale, f"no longer called, delete from PENDING: {sorted(stale)}"


def test_the_scan_catches_each_form_of_call():
    hostcalls = {"set_map_value", "get_shared_data", "log"}
    helpers = {"set_http_request_header", "get_shared_data"}
    source = "\n".join(
        [
            "use proxy_wasm::hostcalls;",
            "    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, n, None);",
            "    proxy_wasm::hostcalls::get_shared_data(key)",
            "use proxy_wasm::hostcalls::{log, get_current_time};",
            "use proxy_wasm::hostcalls::*;",
            "    self.set_http_request_header(\"x\", None);",
            "    Context::get_shared_data(self, key)",
            "    proxy_wasm::set_log_level(LogLevel::Info);",
            "    // hostcalls::set_map_value in a comment",
            "    abi::get_shared_data(key)",
            "    let url = \"http://x\"; abi::log(level, m)",
        ]
    )
    found = offending_calls(source, hostcalls, helpers)
    assert found == [
        (2, "hostcalls::set_map_value"),
        (3, "hostcalls::get_shared_data"),
        (4, "hostcalls::log"),
        (5, "hostcalls glob or alias"),
        (6, ".set_http_request_header()"),
        (7, "get_shared_data()"),
        (8, "proxy_wasm::set_log_level"),
    ], found
