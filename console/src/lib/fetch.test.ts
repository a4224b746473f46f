import { describe, expect, it } from "vitest";
import { errorMessage, fetchReducer, initialFetchState, inputsChanged, type FetchState } from "./fetch";

function state(changes: Partial<FetchState<string>> = {}): FetchState<string> {
  return { ...initialFetchState<string>(), ...changes };
}

describe("fetchReducer", () => {
  it("starts loading with no data", () => {
    expect(initialFetchState()).toEqual({ data: null, error: null, loading: true, request: 0 });
  });

  it("keeps the data shown while a newer request is in flight, and forgets the old error", () => {
    const before = state({ data: "page 1", error: new Error("down"), loading: false, request: 1 });
    expect(fetchReducer(before, { type: "started", request: 2 })).toEqual(state({ data: "page 1", loading: true, request: 2 }));
  });

  it("takes the answer to the request it awaits", () => {
    const awaiting = state({ data: "page 1", request: 2 });
    expect(fetchReducer(awaiting, { type: "answered", request: 2, data: "page 2" })).toEqual(
      state({ data: "page 2", loading: false, request: 2 }),
    );
  });

  it("drops the answer and the failure of a superseded request", () => {
    const awaiting = state({ data: "page 1", request: 3 });
    expect(fetchReducer(awaiting, { type: "answered", request: 2, data: "page 2" })).toBe(awaiting);
    expect(fetchReducer(awaiting, { type: "failed", request: 2, error: new Error("late") })).toBe(awaiting);
  });

  it("keeps the data when the request it awaits fails", () => {
    const failure = new Error("The control service did not answer.");
    const failed = fetchReducer(state({ data: "page 1", request: 4 }), { type: "failed", request: 4, error: failure });
    expect(failed).toEqual(state({ data: "page 1", error: failure, loading: false, request: 4 }));
  });

  it("turns a failure that is not an Error into one", () => {
    const failed = fetchReducer(state({ request: 1 }), { type: "failed", request: 1, error: "refused" });
    expect(failed.error).toBeInstanceOf(Error);
    expect(failed.error?.message).toBe("refused");
  });

  it("replaces the data without a request, even while one is in flight", () => {
    const awaiting = state({ data: "key", request: 5 });
    expect(fetchReducer(awaiting, { type: "replaced", update: (data) => `${data}, deactivated` })).toEqual(
      state({ data: "key, deactivated", request: 5 }),
    );
  });
});

describe("inputsChanged", () => {
  const filters = { team: "payments" };
  it.each([
    ["nothing started yet", null, [filters, null], true],
    ["the same values", [filters, null, 0], [filters, null, 0], false],
    ["a new cursor", [filters, null, 0], [filters, "c1", 0], true],
    ["a reload", [filters, null, 0], [filters, null, 1], true],
    ["an equal but new object", [filters, null, 0], [{ team: "payments" }, null, 0], true],
    ["another number of inputs", [filters], [filters, 0], true],
  ])("%s: %j", (_, before, after, changed) => {
    expect(inputsChanged(before, after)).toBe(changed);
  });
});

describe("errorMessage", () => {
  it("is an error's message, or what was thrown as text", () => {
    expect(errorMessage(new Error("key not found"))).toBe("key not found");
    expect(errorMessage("offline")).toBe("offline");
    expect(errorMessage(404)).toBe("404");
  });
});
