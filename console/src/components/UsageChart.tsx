// A stacked bar chart of requests by outcome, drawn as SVG (no chart library, no inline
// styles: colours come from classes in the stylesheet), with its numbers in a table.

import type { Usage } from "../api/types";
import { count } from "../lib/format";
import { outcomeClass, outcomeLabel, seriesOf, type RangeQuery } from "../lib/usage";

const WIDTH = 720;
const HEIGHT = 160;

interface Props {
  usage: Usage;
  query: RangeQuery;
  title: string;
}

export function UsageChart({ usage, query, title }: Props) {
  const series = seriesOf(usage, query);
  const highest = Math.max(1, ...series.counts.map((slot) => Object.values(slot).reduce((a, b) => a + b, 0)));
  const barWidth = WIDTH / query.slots.length;
  const summary = series.outcomes
    .map((code) => `${code === "ALLOWED" ? usage.totals.allowed : usage.totals.denied[code]} ${outcomeLabel(code).toLowerCase()}`)
    .join(", ");
  return (
    <figure class="usage-chart">
      <div class="plot">
        <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={`${title}: ${usage.totals.total} requests (${summary})`}>
          {query.slots.map((slot, index) => {
            let top = HEIGHT;
            const label = new Date(slot).toLocaleString();
            return (
              <g key={slot}>
                {series.outcomes.map((code) => {
                  const value = series.counts[index][code] ?? 0;
                  if (!value) return null;
                  const height = (value / highest) * (HEIGHT - 4);
                  top -= height;
                  return (
                    <rect key={code} class={outcomeClass(code)} x={index * barWidth + 1} y={top} width={Math.max(1, barWidth - 2)} height={height}>
                      <title>{`${label}: ${value} ${outcomeLabel(code).toLowerCase()}`}</title>
                    </rect>
                  );
                })}
              </g>
            );
          })}
          <line class="axis" x1="0" y1={HEIGHT - 0.5} x2={WIDTH} y2={HEIGHT - 0.5} />
        </svg>
        <div class="chart-axis" aria-hidden="true">
          <span>{axisLabel(query.slots[0], query.granularity)}</span>
          <span>{query.granularity === "hour" ? "this hour" : "today (UTC)"}</span>
        </div>
      </div>
      <figcaption>
        <table class="totals">
          <caption>{title}</caption>
          <thead>
            <tr>
              <th scope="col">Outcome</th>
              <th scope="col">Requests</th>
            </tr>
          </thead>
          <tbody>
            {series.outcomes.map((code) => (
              <tr key={code}>
                <th scope="row">
                  <span class={`swatch ${outcomeClass(code)}`} aria-hidden="true" />
                  {outcomeLabel(code)}
                </th>
                <td data-outcome={code}>{count(code === "ALLOWED" ? usage.totals.allowed : usage.totals.denied[code] ?? 0)}</td>
              </tr>
            ))}
            <tr>
              <th scope="row">Total</th>
              <td data-outcome="TOTAL">{count(usage.totals.total)}</td>
            </tr>
          </tbody>
        </table>
      </figcaption>
    </figure>
  );
}

/** The first bar's start: an hour in local time, or a UTC day. */
function axisLabel(start: number, granularity: "hour" | "day"): string {
  const date = new Date(start);
  return granularity === "hour"
    ? date.toLocaleString(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" })
    : date.toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
}

/** The keys list's small chart: 24 bars, allowed above denied, no axis. */
export function Sparkline({ usage, query, name }: { usage: Usage; query: RangeQuery; name: string }) {
  const series = seriesOf(usage, query);
  const totals = series.counts.map((slot) => {
    const allowed = slot.ALLOWED ?? 0;
    const all = Object.values(slot).reduce((a, b) => a + b, 0);
    return { allowed, denied: all - allowed };
  });
  const highest = Math.max(1, ...totals.map((t) => t.allowed + t.denied));
  const denied = usage.totals.total - usage.totals.allowed;
  return (
    <svg class="sparkline" viewBox="0 0 96 24" role="img" aria-label={`${name}, last 24 hours: ${usage.totals.allowed} allowed, ${denied} denied`}>
      {totals.map((t, index) => {
        const allowedHeight = (t.allowed / highest) * 22;
        const deniedHeight = (t.denied / highest) * 22;
        return (
          <g key={index}>
            {allowedHeight > 0 && <rect class="outcome-allowed" x={index * 4} y={24 - allowedHeight} width="3" height={allowedHeight} />}
            {deniedHeight > 0 && (
              <rect class="outcome-denied" x={index * 4} y={24 - allowedHeight - deniedHeight} width="3" height={deniedHeight} />
            )}
          </g>
        );
      })}
    </svg>
  );
}
