// How values are shown: dates in the browser's locale with UTC beside them, key status.

import type { Key } from "../api/types";

export function dateTime(value: string | null | undefined): string {
  if (!value) return "—";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toLocaleString();
}

/** "3 h ago", "2 d ago": how long ago `value` was. */
export function ago(value: string | null | undefined, now = Date.now()): string {
  if (!value) return "never";
  const seconds = Math.max(0, (now - new Date(value).getTime()) / 1000);
  if (seconds < 3600) return "this hour";
  if (seconds < 48 * 3600) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export type KeyStatus = "active" | "inactive" | "expired" | "rotating";

/**
 * The API's status (inactive when revoked, else expired when past its expiry, else active),
 * plus "rotating": an active key with an expiry whose successor (a key rotated from it) is known.
 */
export function keyStatus(key: Key, successors: Set<string>, now = Date.now()): KeyStatus {
  if (!key.active) return "inactive";
  if (key.expires_at && new Date(key.expires_at).getTime() <= now) return "expired";
  if (key.expires_at && successors.has(key.id)) return "rotating";
  return "active";
}

export function maskedKey(key: Key): string {
  return `${key.prefix}…${key.last4}`;
}

export function count(value: number): string {
  return value.toLocaleString("en-US");
}

/** `url` if it is an absolute http(s) URL, else null: a reported URL comes from outside (a
 * scanner, a person) and must never become a `javascript:` or `data:` link. */
export function safeLink(url: string | null | undefined): string | null {
  if (!url) return null;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch {
    return null;
  }
}
