import { describe, expect, it } from "vitest";
import type { Proxy } from "../api/types";
import { health, lag, seen } from "./fleet";

function proxy(fields: Partial<Proxy>): Proxy {
  return {
    id: "prx_a", name: "edge-1", labels: {}, version: "0.3.0", credential: "enrollment",
    credential_last4: "abcd", enrolled_with: "enr_x", first_seen: null,
    created_at: "2026-12-07T00:00:00Z", enrolled_at: "2026-12-07T00:00:00Z",
    last_seen: "2026-12-07T00:01:00Z", snapshot_version: 7, lag_versions: 0, lag_seconds: 0,
    last_report: { at: null, failing_since: null }, last_sync: { at: null, failing_since: null },
    state: "live", revoked_at: null, ...fields,
  };
}

describe("fleet", () => {
  it("names the worst of a proxy's health", () => {
    expect(health(proxy({}))).toBe("live");
    expect(health(proxy({ lag_versions: 2, lag_seconds: 90 }))).toBe("lagging");
    expect(health(proxy({ last_sync: { at: null, failing_since: "2026-12-07T00:00:30Z" } }))).toBe("failing");
    expect(health(proxy({ state: "stale", lag_seconds: 900 }))).toBe("stale");
    expect(health(proxy({ state: "revoked" }))).toBe("revoked");
  });

  it("says the lag in words", () => {
    expect(lag(proxy({}))).toBe("current");
    expect(lag(proxy({ lag_versions: 1, lag_seconds: 4 }))).toBe("1 version, 4 s behind");
    expect(lag(proxy({ snapshot_version: null }))).toBe("no snapshot read yet");
  });

  it("says how long ago", () => {
    const now = Date.parse("2026-12-07T01:00:00Z");
    expect(seen(null, now)).toBe("never");
    expect(seen("2026-12-07T00:59:48Z", now)).toBe("12 s ago");
    expect(seen("2026-12-07T00:55:00Z", now)).toBe("5 min ago");
    expect(seen("2026-12-06T22:00:00Z", now)).toBe("3 h ago");
  });
});
