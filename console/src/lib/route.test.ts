import { describe, expect, it } from "vitest";
import { parseRoute } from "./route";

describe("parseRoute", () => {
  it.each([
    ["", { page: "keys" }],
    ["#", { page: "keys" }],
    ["#/keys", { page: "keys" }],
    ["#/keys/new", { page: "new-key" }],
    ["#/keys/key_2VxQh7Lr0aBcDeFg", { page: "key", id: "key_2VxQh7Lr0aBcDeFg" }],
    ["#/keys/key_", { page: "keys" }],
    ["#/keys/key_a/b", { page: "keys" }],
    ["#/keys/tok_abc", { page: "keys" }],
    ["#/plans", { page: "plans" }],
    ["#/usage", { page: "usage" }],
    ["#/tokens", { page: "tokens" }],
    ["#/tokens/", { page: "keys" }],
    ["#/nowhere", { page: "keys" }],
  ])("%j is %j", (hash, route) => {
    expect(parseRoute(hash)).toEqual(route);
  });
});
