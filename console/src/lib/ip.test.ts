import { describe, expect, it } from "vitest";
import { ipEntries, ipProblem, isIpOrCidr } from "./ip";

describe("isIpOrCidr", () => {
  it.each([
    "10.0.0.1",
    "0.0.0.0",
    "255.255.255.255",
    "10.0.0.0/8",
    "10.0.0.0/0",
    "192.168.1.0/32",
    "::1",
    "::",
    "2001:db8::1",
    "2001:db8::/32",
    "::ffff:10.0.0.1",
    "fe80::/128",
  ])("accepts %s", (entry) => {
    expect(isIpOrCidr(entry)).toBe(true);
  });

  it.each([
    "",
    "10.0.0",
    "10.0.0.256",
    "10.0.0.01",
    "10.0.0.0/33",
    "10.0.0.0/",
    "10.0.0.0/-1",
    "10.0.0.0/8/8",
    "/8",
    "2001:db8::/129",
    "2001:db8:::1",
    "2001:db8::g",
    "example.com",
    "10.0.0.1 ",
  ])("refuses %j", (entry) => {
    expect(isIpOrCidr(entry)).toBe(false);
  });
});

describe("ipEntries", () => {
  it("splits lines and commas and drops blanks", () => {
    expect(ipEntries(" 10.0.0.1\n\n10.0.0.0/8, ::1 ,\t")).toEqual(["10.0.0.1", "10.0.0.0/8", "::1"]);
  });

  it("has no entries for an empty list", () => {
    expect(ipEntries("  \n ")).toEqual([]);
  });
});

describe("ipProblem", () => {
  it("is null when every entry is valid", () => {
    expect(ipProblem("10.0.0.1\n::1")).toBeNull();
    expect(ipProblem("")).toBeNull();
  });

  it("names the first invalid entry as the API does", () => {
    expect(ipProblem("10.0.0.1\n10.0.0.0/33\nnope")).toBe('allowed_ips[1]: invalid IP or CIDR "10.0.0.0/33"');
  });
});
