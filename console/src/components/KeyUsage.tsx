// A key's or team's usage over 24 h / 7 d / 30 d by outcome, what the upstream answered, response
// times, routes and client addresses, and the recent denials by code.

import { useState } from "preact/hooks";
import { query } from "../api/client";
import type { Usage } from "../api/types";
import { useFetch } from "../lib/fetch";
import { count, dateTime } from "../lib/format";
import { outcomeLabel, RANGES, rangeQuery, type RangeName } from "../lib/usage";
import { useSession } from "../session";
import { UsageChart } from "./UsageChart";
import { UsageInsight } from "./UsageInsight";

/** Usage read from `path` (a key's or teams'), over the range chosen; the chart shows the last one read. */
export function UsagePanel({ path, title }: { path: string; title: string }) {
  const { api } = useSession();
  const [range, setRange] = useState<RangeName>("24h");
  const read = useFetch(async (signal) => {
    const asked = rangeQuery(range);
    const rangeParams = query({ from: asked.from, to: asked.to, granularity: asked.granularity }).slice(1);
    const usage = await api<Usage>("GET", `${path}${path.includes("?") ? "&" : "?"}${rangeParams}`, undefined, signal);
    return { usage, asked };
  }, [path, range]);
  const error = read.error?.message;

  const rangeLabel = RANGES.find((r) => r.name === range)?.label ?? range;
  return (
    <section class="usage" aria-label={title}>
      <div class="title-row">
        <h2>{title}</h2>
        <div class="segmented" role="group" aria-label="Range">
          {RANGES.map((r) => (
            <button key={r.name} type="button" class="secondary" aria-pressed={r.name === range} onClick={() => setRange(r.name)}>
              {r.label}
            </button>
          ))}
        </div>
      </div>
      {error && <p class="form-error" role="alert">{error}</p>}
      {read.data && <UsageChart usage={read.data.usage} query={read.data.asked} title={`Requests, last ${rangeLabel}`} />}
      {read.data && <UsageInsight usage={read.data.usage} />}
      {read.data && <RecentDenials usage={read.data.usage} />}
    </section>
  );
}

/** The newest buckets with denials, newest first, each code with its count. */
function RecentDenials({ usage }: { usage: Usage }) {
  const rows = usage.buckets
    .filter((bucket) => Object.keys(bucket.denied).length > 0)
    .reverse()
    .slice(0, 20)
    .flatMap((bucket) => Object.entries(bucket.denied).map(([code, value]) => ({ start: bucket.start, code, value })));
  return (
    <table class="denials">
      <caption>Recent denials by code</caption>
      <thead>
        <tr>
          <th scope="col">{usage.granularity === "hour" ? "Hour" : "Day"} starting</th>
          <th scope="col">Code</th>
          <th scope="col">Requests</th>
        </tr>
      </thead>
      <tbody>
        {rows.length === 0 && (
          <tr>
            <td colSpan={3}>No denials in this range.</td>
          </tr>
        )}
        {rows.map((row) => (
          <tr key={`${row.start}-${row.code}`}>
            <td>{dateTime(row.start)}</td>
            <td>
              <code>{row.code}</code> ({outcomeLabel(row.code)})
            </td>
            <td>{count(row.value)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
