import { describe, expect, it } from "vitest";
import type { Usage } from "../api/types";
import { limitLabel, milliseconds, percentileSeries } from "./insight";

describe("usage insight", () => {
  it("lists the buckets with durations, oldest first", () => {
    const usage = {
      key_id: "key_1", granularity: "hour", from: "", to: "",
      buckets: [
        { start: "2026-11-23T20:00:00Z", allowed: 1, denied: {}, total: 1 },
        { start: "2026-11-23T21:00:00Z", allowed: 2, denied: {}, total: 2, latency_ms: { p50: 10, p95: 304, p99: 304 } },
      ],
      totals: { allowed: 3, denied: {}, total: 3 },
    } as Usage;
    expect(percentileSeries(usage)).toEqual([{ start: "2026-11-23T21:00:00Z", p50: 10, p95: 304, p99: 304 }]);
  });

  it("reads durations and limits", () => {
    expect(milliseconds(21)).toBe("21 ms");
    expect(milliseconds(1536)).toBe("1.5 s");
    expect(milliseconds(126_000)).toBe("2.1 min");
    expect(limitLabel("quota_day")).toBe("Daily quota");
    expect(limitLabel("per_week")).toBe("per_week");
  });
});
