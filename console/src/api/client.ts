// The admin API, called from the same origin with a management token as a bearer header.
// Never a cookie (no CSRF surface) and never in a URL. Pages call it through the session
// (useSession().api), which holds the token and signs out on a 401.

import type { ApiErrorBody } from "./types";

/** The API's error shape: {"error": {"code", "message"}}. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }

  /** The field a VALIDATION_ERROR names: its message starts with it, e.g. `allowed_ips[1]: …`. */
  get field(): string | null {
    return fieldOf(this.message);
  }
}

/** The field an error message starts with (`allowed_ips[1]`, `limits.per_day`), or null. */
export function fieldOf(message: string): string | null {
  const match = /^([a-z_]+(?:\[\d+\]|\.[a-z_]+)*): /.exec(message);
  return match ? match[1] : null;
}

export type Method = "GET" | "POST" | "PATCH" | "DELETE";

/** A call of the API with the signed-in token; rejects with an ApiError. */
export type Api = <T>(method: Method, path: string, body?: unknown, signal?: AbortSignal) => Promise<T>;

/**
 * One call of the API with `token` (none: no Authorization header). Rejects with an ApiError,
 * or with the abort itself when `signal` aborts it.
 */
export async function request<T>(
  token: string | null,
  method: Method,
  path: string,
  body?: unknown,
  signal?: AbortSignal,
): Promise<T> {
  const headers: Record<string, string> = {};
  if (token) headers["Authorization"] = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      signal,
    });
  } catch (failure) {
    if (signal?.aborted) throw failure;
    throw new ApiError(0, "NETWORK", "The control service did not answer. Is it running?");
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const error = (parsed as Partial<ApiErrorBody> | null)?.error;
    throw new ApiError(
      response.status,
      error?.code ?? `HTTP_${response.status}`,
      error?.message ?? `The control service answered ${response.status}.`,
    );
  }
  return parsed as T;
}

/** A query string from the defined, non-empty values. */
export function query(params: Record<string, string | number | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
