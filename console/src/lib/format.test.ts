import { describe, expect, it } from "vitest";
import type { Key } from "../api/types";
import { ago, count, dateTime, keyStatus, maskedKey, safeLink } from "./format";

const NOW = Date.parse("2026-11-23T12:30:00Z");
const HOUR = 3600_000;

function key(changes: Partial<Key> = {}): Key {
  return {
    id: "key_a",
    name: "billing",
    environment: "live",
    team: "payments",
    prefix: "pk_live_",
    last4: "Wx9Z",
    scopes: [],
    allowed_ips: [],
    expires_at: null,
    active: true,
    plan: "free",
    limits: {},
    effective_limits: { per_minute: 60, per_hour: null, per_day: 1000, concurrent: null, per_month: null },
    quota_exceeded_until: null,
    created_at: "2026-11-01T00:00:00Z",
    updated_at: "2026-11-01T00:00:00Z",
    rotated_from: null,
    ...changes,
  };
}

describe("dateTime", () => {
  it.each([
    [null, "—"],
    [undefined, "—"],
    ["", "—"],
    ["not a date", "not a date"],
  ])("%j is shown as %j", (value, shown) => {
    expect(dateTime(value)).toBe(shown);
  });

  it("shows an instant in the browser's locale", () => {
    expect(dateTime("2026-11-23T12:30:00Z")).toBe(new Date(NOW).toLocaleString());
  });
});

describe("ago", () => {
  it.each([
    [null, "never"],
    [undefined, "never"],
    [new Date(NOW - 10 * 60_000).toISOString(), "this hour"],
    [new Date(NOW + HOUR).toISOString(), "this hour"],
    [new Date(NOW - HOUR).toISOString(), "1 h ago"],
    [new Date(NOW - 47.9 * HOUR).toISOString(), "47 h ago"],
    [new Date(NOW - 48 * HOUR).toISOString(), "2 d ago"],
    [new Date(NOW - 30 * 24 * HOUR).toISOString(), "30 d ago"],
  ])("%j is %j", (value, shown) => {
    expect(ago(value, NOW)).toBe(shown);
  });
});

describe("keyStatus", () => {
  const past = new Date(NOW - HOUR).toISOString();
  const future = new Date(NOW + HOUR).toISOString();
  it.each([
    ["active", key(), new Set<string>(), "active"],
    ["revoked", key({ active: false }), new Set<string>(), "inactive"],
    ["revoked and expired", key({ active: false, expires_at: past }), new Set<string>(), "inactive"],
    ["past its expiry", key({ expires_at: past }), new Set<string>(), "expired"],
    ["at its expiry", key({ expires_at: new Date(NOW).toISOString() }), new Set<string>(), "expired"],
    ["expiring, successor known", key({ expires_at: future }), new Set(["key_a"]), "rotating"],
    ["expiring, no successor known", key({ expires_at: future }), new Set<string>(), "active"],
    ["no expiry, successor known", key(), new Set(["key_a"]), "active"],
  ])("%s", (_, read, successors, status) => {
    expect(keyStatus(read, successors, NOW)).toBe(status);
  });
});

describe("maskedKey and count", () => {
  it("shows the prefix and the last four", () => {
    expect(maskedKey(key())).toBe("pk_live_…Wx9Z");
  });

  it.each([
    [0, "0"],
    [999, "999"],
    [1234567, "1,234,567"],
  ])("%d is %j", (value, shown) => {
    expect(count(value)).toBe(shown);
  });
});

describe("safeLink", () => {
  it("links only absolute http(s) URLs", () => {
    expect(safeLink("https://github.com/o/r/blob/1/.env")).toBe("https://github.com/o/r/blob/1/.env");
    expect(safeLink("http://paste.example/1")).toBe("http://paste.example/1");
    expect(safeLink("javascript:alert(1)")).toBeNull();
    expect(safeLink("JavaScript:alert(1)")).toBeNull();
    expect(safeLink("data:text/html,<b>x</b>")).toBeNull();
    expect(safeLink("/relative")).toBeNull();
    expect(safeLink("")).toBeNull();
    expect(safeLink(null)).toBeNull();
  });
});
