import { describe, expect, it } from "vitest";
import type { Usage } from "../api/types";
import { outcomeClass, outcomeLabel, rangeQuery, seriesOf } from "./usage";

const NOW = Date.parse("2026-11-23T12:30:00Z");
const HOUR = 3600_000;
const DAY = 24 * HOUR;

describe("outcomes", () => {
  it.each([
    ["ALLOWED", "Allowed", "outcome-allowed"],
    ["RATE_LIMIT_EXCEEDED", "Rate limited", "outcome-rate-limit-exceeded"],
    ["IP_NOT_WHITELISTED", "IP not allowed", "outcome-ip-not-whitelisted"],
    ["SOMETHING_NEW", "SOMETHING_NEW", "outcome-other"],
  ])("%s is labelled %j with class %s", (code, label, className) => {
    expect(outcomeLabel(code)).toBe(label);
    expect(outcomeClass(code)).toBe(className);
  });
});

describe("rangeQuery", () => {
  it("reads the last 24 hours by hour, this hour last", () => {
    const range = rangeQuery("24h", NOW);
    expect(range.granularity).toBe("hour");
    expect(range.step).toBe(HOUR);
    expect(range.slots).toHaveLength(24);
    expect(range.slots[23]).toBe(Date.parse("2026-11-23T12:00:00Z"));
    expect(range.slots[0]).toBe(Date.parse("2026-11-22T13:00:00Z"));
    expect(range.from).toBe("2026-11-22T13:00:00.000Z");
    expect(range.to).toBe("2026-11-23T12:30:00.000Z");
  });

  it.each([
    ["7d", 7, "2026-11-17T00:00:00.000Z"],
    ["30d", 30, "2026-10-25T00:00:00.000Z"],
  ] as const)("reads %s by UTC day, today last", (name, days, from) => {
    const range = rangeQuery(name, NOW);
    expect(range.granularity).toBe("day");
    expect(range.step).toBe(DAY);
    expect(range.slots).toHaveLength(days);
    expect(range.slots[days - 1]).toBe(Date.parse("2026-11-23T00:00:00Z"));
    expect(range.from).toBe(from);
    expect(range.to).toBe("2026-11-23T12:30:00.000Z");
  });
});

describe("seriesOf", () => {
  const usage: Usage = {
    key_id: "key_a",
    granularity: "hour",
    from: "2026-11-22T13:00:00Z",
    to: "2026-11-23T12:30:00Z",
    buckets: [
      { start: "2026-11-22T10:00:00Z", allowed: 100, denied: {}, total: 100 },
      { start: "2026-11-23T11:00:00Z", allowed: 5, denied: { QUOTA_EXCEEDED: 1 }, total: 6 },
      { start: "2026-11-23T12:00:00Z", allowed: 2, denied: { RATE_LIMIT_EXCEEDED: 3, QUOTA_EXCEEDED: 1 }, total: 6 },
    ],
    totals: { allowed: 7, denied: { QUOTA_EXCEEDED: 2, RATE_LIMIT_EXCEEDED: 3 }, total: 12 },
  };

  it("puts each bucket in its slot and leaves out those before the range", () => {
    const series = seriesOf(usage, rangeQuery("24h", NOW));
    expect(series.counts).toHaveLength(24);
    expect(series.counts[22]).toEqual({ ALLOWED: 5, QUOTA_EXCEEDED: 1 });
    expect(series.counts[23]).toEqual({ ALLOWED: 2, RATE_LIMIT_EXCEEDED: 3, QUOTA_EXCEEDED: 1 });
    expect(series.counts.slice(0, 22).every((slot) => Object.keys(slot).length === 0)).toBe(true);
  });

  it("orders the outcomes: allowed, then denials by their total", () => {
    expect(seriesOf(usage, rangeQuery("24h", NOW)).outcomes).toEqual(["ALLOWED", "RATE_LIMIT_EXCEEDED", "QUOTA_EXCEEDED"]);
  });

  it("sums the hours of a day", () => {
    const series = seriesOf(usage, rangeQuery("7d", NOW));
    expect(series.counts[6]).toEqual({ ALLOWED: 7, QUOTA_EXCEEDED: 2, RATE_LIMIT_EXCEEDED: 3 });
    expect(series.counts[5]).toEqual({ ALLOWED: 100 });
  });
});
