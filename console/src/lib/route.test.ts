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
    ["#/teams", { page: "teams" }],
    ["#/teams/acme", { page: "team", name: "acme" }],
    ["#/teams/a%20team%2Fx", { page: "team", name: "a team/x" }],
    ["#/teams/%E0%A4%A", { page: "teams" }],
    ["#/teams/a/b", { page: "keys" }],
    ["#/webhooks", { page: "webhooks" }],
    ["#/proxies", { page: "proxies" }],
    ["#/proxies/prx_a", { page: "keys" }],
  ])("%j is %j", (hash, route) => {
    expect(parseRoute(hash)).toEqual(route);
  });
});
