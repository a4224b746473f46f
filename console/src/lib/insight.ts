// The usage detail as the console shows it: the upstream classes in order, the percentiles of
// each bucket with durations, and how a duration reads.

import type { Usage } from "../api/types";

export const UPSTREAM_CLASSES = [
  { name: "2xx", label: "2xx success" },
  { name: "3xx", label: "3xx redirect" },
  { name: "4xx", label: "4xx client error" },
  { name: "5xx", label: "5xx server error" },
  { name: "none", label: "No answer" },
] as const;

export interface PercentilePoint {
  start: string;
  p50: number;
  p95: number;
  p99: number;
}

/** Each bucket that has durations, oldest first. */
export function percentileSeries(usage: Usage): PercentilePoint[] {
  return usage.buckets.flatMap((bucket) =>
    bucket.latency_ms ? [{ start: bucket.start, ...bucket.latency_ms }] : [],
  );
}

/** "304 ms", "1.5 s", "2.1 min". */
export function milliseconds(value: number): string {
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(1)} s`;
  return `${(value / 60_000).toFixed(1)} min`;
}

/** A limit's name as a person reads it. */
export function limitLabel(name: string): string {
  const labels: Record<string, string> = {
    per_minute: "Requests this minute",
    per_hour: "Requests this hour",
    per_day: "Requests in 24 hours",
    quota_day: "Daily quota",
    quota_month: "Monthly quota",
  };
  return labels[name] ?? name;
}
