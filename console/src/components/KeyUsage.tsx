// A key's usage over 24 h / 7 d / 30 d by outcome, and its recent denials by code.

import { useEffect, useState } from "preact/hooks";
import { api, query, type Usage } from "../api";
import { count, dateTime } from "../format";
import { outcomeLabel, RANGES, rangeQuery, type RangeName } from "../usage";
import { UsageChart } from "./UsageChart";

export function UsagePanel({ path, title, reload }: { path: string; title: string; reload?: number }) {
  const [range, setRange] = useState<RangeName>("24h");
  const [usage, setUsage] = useState<Usage | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [rangeQueryNow, setRangeQueryNow] = useState(() => rangeQuery(range));

  useEffect(() => {
    let current = true;
    const asked = rangeQuery(range);
    setError(null);
    const rangeParams = query({ from: asked.from, to: asked.to, granularity: asked.granularity }).slice(1);
    api<Usage>("GET", `${path}${path.includes("?") ? "&" : "?"}${rangeParams}`)
      .then((read) => {
        if (!current) return;
        setRangeQueryNow(asked);
        setUsage(read);
      })
      .catch((failure: Error) => current && setError(failure.message));
    return () => {
      current = false;
    };
  }, [path, range, reload]);

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
      {usage && <UsageChart usage={usage} query={rangeQueryNow} title={`Requests, last ${rangeLabel}`} />}
      {usage && <RecentDenials usage={usage} />}
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
