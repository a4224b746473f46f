// How the fleet list reads: a proxy's health in one word and its lag in words.

import type { Proxy } from "../api/types";

export type Health = "live" | "lagging" | "failing" | "stale" | "revoked";

/** What to look at first: revoked and stale as listed; a live proxy lagging or whose posts are
 * refused says so. `lagAfterSeconds`: how long behind the newest version counts as lagging. */
export function health(proxy: Proxy, lagAfterSeconds = 60): Health {
  if (proxy.state === "revoked" || proxy.state === "stale") return proxy.state;
  if (proxy.last_report.failing_since || proxy.last_sync.failing_since) return "failing";
  if (proxy.lag_seconds >= lagAfterSeconds) return "lagging";
  return "live";
}

/** "current", "2 versions, 31 s behind". */
export function lag(proxy: Proxy): string {
  if (proxy.snapshot_version === null) return "no snapshot read yet";
  if (proxy.lag_versions === 0) return "current";
  const versions = proxy.lag_versions === 1 ? "1 version" : `${proxy.lag_versions} versions`;
  return `${versions}, ${proxy.lag_seconds} s behind`;
}

/** "12 s ago", "5 min ago", "3 h ago", "never". */
export function seen(value: string | null, now = Date.now()): string {
  if (!value) return "never";
  const seconds = Math.max(0, Math.round((now - new Date(value).getTime()) / 1000));
  if (seconds < 120) return `${seconds} s ago`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}
