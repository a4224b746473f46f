// Teams' quota use and webhooks' event types as the Teams and Webhooks pages show them.

import type { EventType } from "../api/types";

/** `used of quota (n %)`, or just the count without a quota. */
export function quotaUse(used: number, quota: number | null | undefined): string {
  if (quota == null) return `${used.toLocaleString("en-US")} (no quota)`;
  const percent = quota > 0 ? Math.floor((used * 100) / quota) : 0;
  return `${used.toLocaleString("en-US")} of ${quota.toLocaleString("en-US")} (${percent} %)`;
}

/** The path of a team's page (#/teams/NAME): team names may hold any printable character. */
export function teamHash(name: string): string {
  return `#/teams/${encodeURIComponent(name)}`;
}

/** Every event type an endpoint may subscribe to, with what it means. */
export const EVENT_TYPES: readonly [EventType, string][] = [
  ["quota.threshold", "A key's or team's daily or monthly quota reached the alert threshold (80 % by default)"],
  ["quota.exceeded", "A key's or team's quota is used up: its requests get 429 until the reset"],
  ["ratelimit.refusals", "A key was refused more than the threshold in 5 minutes"],
  ["key.expiring", "A key expires within 7 days, and again within 1 day"],
  ["key.expired", "A key expired"],
  ["key.created", "A key was created"],
  ["key.revoked", "A key was deactivated"],
  ["key.rotated", "A key was rotated"],
  ["key.deleted", "A key was deleted"],
  ["key.leaked", "A key was found in public"],
  ["proxy.implausible_report", "A proxy reported more requests for a key than its limits admit"],
  ["webhook.disabled", "An endpoint was disabled after 3 days of failed deliveries"],
];

/** The delivery log's summary of one delivery: status, tries and the last answer. */
export function deliveryState(delivery: { status: string; attempts: number; last_status: number | null }): string {
  const tries = `${delivery.attempts} ${delivery.attempts === 1 ? "try" : "tries"}`;
  const answer = delivery.last_status === null ? (delivery.attempts > 0 ? ", no answer" : "") : `, last answer ${delivery.last_status}`;
  return `${delivery.status} (${tries}${answer})`;
}
