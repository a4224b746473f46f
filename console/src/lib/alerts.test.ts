import { describe, expect, it } from "vitest";
import { deliveryState, EVENT_TYPES, quotaUse, teamHash } from "./alerts";

describe("quotaUse", () => {
  it("shows use against a quota, rounded down", () => {
    expect(quotaUse(799, 1000)).toBe("799 of 1,000 (79 %)");
    expect(quotaUse(1200, 1000)).toBe("1,200 of 1,000 (120 %)");
    expect(quotaUse(5, null)).toBe("5 (no quota)");
  });
});

describe("teamHash", () => {
  it("encodes a name as one path segment", () => {
    expect(teamHash("a team/x")).toBe("#/teams/a%20team%2Fx");
  });
});

describe("deliveryState", () => {
  it("says how a delivery went", () => {
    expect(deliveryState({ status: "pending", attempts: 0, last_status: null })).toBe("pending (0 tries)");
    expect(deliveryState({ status: "pending", attempts: 2, last_status: null })).toBe("pending (2 tries, no answer)");
    expect(deliveryState({ status: "delivered", attempts: 1, last_status: 204 })).toBe("delivered (1 try, last answer 204)");
  });
});

describe("EVENT_TYPES", () => {
  it("lists each type once", () => {
    const names = EVENT_TYPES.map(([name]) => name);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toContain("quota.threshold");
  });
});
