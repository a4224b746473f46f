// The admin API, called from the same origin with the signed-in token as a bearer header.
// Never a cookie (no CSRF surface) and never in a URL.

import { currentToken } from "./session";

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
    const match = /^([a-z_]+(?:\[\d+\]|\.[a-z_]+)*): /.exec(this.message);
    return match ? match[1] : null;
  }
}

/** Called when the API refuses the token (401): the console signs out. */
let onUnauthorized: (message: string) => void = () => {};
export function whenUnauthorized(handler: (message: string) => void) {
  onUnauthorized = handler;
}

export async function api<T>(
  method: string,
  path: string,
  body?: unknown,
  token: string | null = currentToken(),
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
    });
  } catch {
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
    const error = (parsed as { error?: { code?: string; message?: string } } | null)?.error;
    const failure = new ApiError(
      response.status,
      error?.code ?? `HTTP_${response.status}`,
      error?.message ?? `The control service answered ${response.status}.`,
    );
    if (response.status === 401 && token === currentToken()) onUnauthorized(failure.message);
    throw failure;
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

export type Role = "viewer" | "editor" | "admin";

export interface Session {
  token_id: string;
  token_name: string;
  role: Role;
  team: string | null;
}

export interface Limits {
  per_minute: number | null;
  per_hour: number | null;
  per_day: number | null;
  concurrent: number | null;
  per_month: number | null;
}

export const LIMIT_FIELDS: (keyof Limits)[] = ["per_minute", "per_hour", "per_day", "concurrent", "per_month"];

export interface Key {
  id: string;
  name: string;
  environment: "live" | "test";
  team: string;
  prefix: string;
  last4: string;
  scopes: string[];
  allowed_ips: string[];
  expires_at: string | null;
  active: boolean;
  plan: string;
  limits: Partial<Limits> | null;
  effective_limits: Limits;
  quota_exceeded_until: string | null;
  created_at: string;
  updated_at: string;
  rotated_from: string | null;
  last_used_at: string | null;
  /** Only in the answer of create and rotate. */
  key?: string;
}

export interface KeyPage {
  keys: Key[];
  next_cursor: string | null;
}

export interface Plan extends Limits {
  name: string;
  description: string;
}

export interface Scope {
  name: string;
  description: string;
}

export interface UsageBucket {
  start: string;
  allowed: number;
  denied: Record<string, number>;
  total: number;
}

export interface Usage {
  granularity: "hour" | "day";
  from: string;
  to: string;
  buckets: UsageBucket[];
  totals: { allowed: number; denied: Record<string, number>; total: number };
}

export interface Token {
  id: string;
  name: string;
  role: Role;
  team: string | null;
  last4: string;
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
  rotated_from: string | null;
  token?: string;
}

export interface AuditEntry {
  at: string;
  token_id: string;
  token_name: string;
  action: string;
  target: string;
  team: string | null;
  changes: unknown;
}
