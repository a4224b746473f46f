// Usage ranges (24 h by hour, 7 d and 30 d by UTC day) and their outcomes, as the charts show them.

import type { Usage } from "../api/types";

export type RangeName = "24h" | "7d" | "30d";

export const RANGES: { name: RangeName; label: string }[] = [
  { name: "24h", label: "24 h" },
  { name: "7d", label: "7 d" },
  { name: "30d", label: "30 d" },
];

/** What each outcome is called; codes the console does not know are shown as they are. */
export const OUTCOME_LABELS: Record<string, string> = {
  ALLOWED: "Allowed",
  RATE_LIMIT_EXCEEDED: "Rate limited",
  CONCURRENCY_LIMIT_EXCEEDED: "Concurrency limited",
  QUOTA_EXCEEDED: "Quota exceeded",
  IP_NOT_WHITELISTED: "IP not allowed",
  OPERATION_NOT_ALLOWED: "Scope not allowed",
  API_KEY_EXPIRED: "Expired",
  API_KEY_INACTIVE: "Inactive",
};

export function outcomeLabel(code: string): string {
  return OUTCOME_LABELS[code] ?? code;
}

/** A CSS class per known outcome (colours live in the stylesheet). */
export function outcomeClass(code: string): string {
  return code in OUTCOME_LABELS ? `outcome-${code.toLowerCase().replace(/_/g, "-")}` : "outcome-other";
}

const HOUR = 3600_000;
const DAY = 24 * HOUR;

export interface RangeQuery {
  from: string;
  to: string;
  granularity: "hour" | "day";
  /** The start of every bar, oldest first, so empty hours or days show as gaps. */
  slots: number[];
  step: number;
}

export function rangeQuery(range: RangeName, now = Date.now()): RangeQuery {
  if (range === "24h") {
    const last = Math.floor(now / HOUR) * HOUR;
    const slots = Array.from({ length: 24 }, (_, i) => last - (23 - i) * HOUR);
    return { from: new Date(slots[0]).toISOString(), to: new Date(now).toISOString(), granularity: "hour", slots, step: HOUR };
  }
  const days = range === "7d" ? 7 : 30;
  const last = Math.floor(now / DAY) * DAY;
  const slots = Array.from({ length: days }, (_, i) => last - (days - 1 - i) * DAY);
  return { from: new Date(slots[0]).toISOString(), to: new Date(now).toISOString(), granularity: "day", slots, step: DAY };
}

/** Counts per slot and outcome: ALLOWED first, then denial codes by their total. */
export interface Series {
  outcomes: string[];
  counts: Record<string, number>[];
}

export function seriesOf(usage: Usage, query: RangeQuery): Series {
  const counts = query.slots.map(() => ({}) as Record<string, number>);
  for (const bucket of usage.buckets) {
    const start = new Date(bucket.start).getTime();
    const index = query.slots.findIndex((slot) => start >= slot && start < slot + query.step);
    if (index < 0) continue;
    const slot = counts[index];
    slot.ALLOWED = (slot.ALLOWED ?? 0) + bucket.allowed;
    for (const [code, value] of Object.entries(bucket.denied)) slot[code] = (slot[code] ?? 0) + value;
  }
  const denied = Object.entries(usage.totals.denied)
    .sort((a, b) => b[1] - a[1])
    .map(([code]) => code);
  return { outcomes: ["ALLOWED", ...denied], counts };
}
