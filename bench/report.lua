-- wrk script for `make bench`: sets the API key header once (no per-request Lua, so wrk stays
-- as cheap as possible on a machine it shares with Envoy) and prints the run as one JSON line.
-- BENCH_KEY: the key to send as `Authorization: Bearer …` (unset: no header).
-- BENCH_PATH: request path (default /v1/models).
local key = os.getenv("BENCH_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
wrk.path = os.getenv("BENCH_PATH") or "/v1/models"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.status,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
