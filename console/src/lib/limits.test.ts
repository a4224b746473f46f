import { describe, expect, it } from "vitest";
import { LIMIT_FIELDS, limitValue, typedLimits } from "./limits";

describe("limitValue", () => {
  it.each([
    ["", null],
    ["   ", null],
    ["60", 60],
    [" 60 ", 60],
    ["0", 0],
    ["-3", -3],
    ["1.5", 1.5],
    ["1e400", "1e400"],
    ["sixty", "sixty"],
  ])("%j is sent as %j", (typed, sent) => {
    expect(limitValue(typed)).toBe(sent);
  });
});

describe("typedLimits", () => {
  it("reads every window", () => {
    expect(typedLimits({ per_minute: "60", per_hour: "", per_day: "1000", concurrent: "x", per_month: " " })).toEqual({
      per_minute: 60,
      per_hour: null,
      per_day: 1000,
      concurrent: "x",
      per_month: null,
    });
  });

  it("knows the five windows in the forms' order", () => {
    expect(LIMIT_FIELDS).toEqual(["per_minute", "per_hour", "per_day", "concurrent", "per_month"]);
  });
});
