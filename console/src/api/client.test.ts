import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError, fieldOf, query, request } from "./client";

describe("fieldOf", () => {
  it.each([
    ['allowed_ips[1]: invalid IP or CIDR "10.0.0.0/33"', "allowed_ips[1]"],
    ["limits.per_day: must be at least 1", "limits.per_day"],
    ["name: must not be empty", "name"],
    ["no such key", null],
    ["Name: capitalised is not a field", null],
  ])("%j names %j", (message, field) => {
    expect(fieldOf(message)).toBe(field);
    expect(new ApiError(400, "VALIDATION_ERROR", message).field).toBe(field);
  });
});

describe("query", () => {
  it("keeps the defined, non-empty values, encoded", () => {
    expect(query({ team: "a b", limit: 25, cursor: null, status: undefined, environment: "" })).toBe("?team=a+b&limit=25");
  });

  it("is empty without values", () => {
    expect(query({ cursor: null })).toBe("");
  });
});

describe("request", () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  function answering(response: Response | Error) {
    const fetch = vi.fn(async (_path: string, _init: RequestInit) => {
      if (response instanceof Error) throw response;
      return response;
    });
    vi.stubGlobal("fetch", fetch);
    return fetch;
  }

  it("sends the token as a bearer header and the body as JSON, never a cookie", async () => {
    const fetch = answering(new Response('{"name":"gold"}', { status: 201 }));
    await expect(request("kgt_secret", "POST", "/v1/plans", { name: "gold" })).resolves.toEqual({ name: "gold" });
    const [path, init] = fetch.mock.calls[0];
    expect(path).toBe("/v1/plans");
    expect(init.headers).toEqual({ Authorization: "Bearer kgt_secret", "Content-Type": "application/json" });
    expect(init.body).toBe('{"name":"gold"}');
    expect(init.credentials).toBe("omit");
  });

  it("sends no Authorization header without a token", async () => {
    const fetch = answering(new Response(null, { status: 204 }));
    await expect(request(null, "DELETE", "/v1/plans/gold")).resolves.toBeUndefined();
    expect(fetch.mock.calls[0][1].headers).toEqual({});
  });

  it("rejects with the API's error", async () => {
    answering(new Response('{"error":{"code":"CONFLICT","message":"3 keys are on plan free"}}', { status: 409 }));
    await expect(request("t", "DELETE", "/v1/plans/free")).rejects.toEqual(new ApiError(409, "CONFLICT", "3 keys are on plan free"));
  });

  it("names the status when the answer is not the API's error", async () => {
    answering(new Response("<html>bad gateway</html>", { status: 502 }));
    const failure = await request("t", "GET", "/v1/keys").catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ApiError);
    expect(failure).toMatchObject({ status: 502, code: "HTTP_502", message: "The control service answered 502." });
  });

  it("says when the service did not answer", async () => {
    answering(new TypeError("Failed to fetch"));
    await expect(request("t", "GET", "/v1/keys")).rejects.toMatchObject({ status: 0, code: "NETWORK" });
  });

  it("rejects with the abort itself when its signal aborts", async () => {
    const abort = new DOMException("The operation was aborted.", "AbortError");
    answering(abort);
    const controller = new AbortController();
    controller.abort();
    await expect(request("t", "GET", "/v1/keys", undefined, controller.signal)).rejects.toBe(abort);
  });
});
