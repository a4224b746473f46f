// What became of the allowed requests of a usage read: upstream status classes, duration
// percentiles over time, requests by route and client addresses. Every figure is a table (the
// text equivalent a screen reader reads); the percentiles also as a small chart beside it.

import type { Usage } from "../api/types";
import { count, dateTime } from "../lib/format";
import { UPSTREAM_CLASSES, milliseconds, percentileSeries } from "../lib/insight";

export function UsageInsight({ usage }: { usage: Usage }) {
  const totals = usage.totals;
  const per = usage.granularity === "hour" ? "Hour" : "Day";
  const series = percentileSeries(usage);
  const routes = Object.entries(totals.routes ?? {}).sort((a, b) => b[1].total - a[1].total);
  const addresses = totals.client_ips;
  return (
    <div class="insight">
      <table class="upstream">
        <caption>What the upstream answered (allowed requests)</caption>
        <thead>
          <tr>
            {UPSTREAM_CLASSES.map((c) => (
              <th scope="col" key={c.name}>{c.label}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          <tr>
            {UPSTREAM_CLASSES.map((c) => (
              <td key={c.name} data-class={c.name}>{count(totals.upstream?.[c.name] ?? 0)}</td>
            ))}
          </tr>
        </tbody>
      </table>

      <figure class="latency">
        <figcaption>Response time (p50 / p95 / p99, ms)</figcaption>
        {series.length === 0 ? (
          <p>No durations measured in this range.</p>
        ) : (
          <>
            <LatencyChart series={series} />
            <table>
              <thead>
                <tr>
                  <th scope="col">{per} starting</th>
                  <th scope="col">p50</th>
                  <th scope="col">p95</th>
                  <th scope="col">p99</th>
                </tr>
              </thead>
              <tbody>
                {series.map((point) => (
                  <tr key={point.start}>
                    <td>{dateTime(point.start)}</td>
                    <td>{milliseconds(point.p50)}</td>
                    <td>{milliseconds(point.p95)}</td>
                    <td>{milliseconds(point.p99)}</td>
                  </tr>
                ))}
                {totals.latency_ms && (
                  <tr class="total">
                    <th scope="row">Whole range</th>
                    <td>{milliseconds(totals.latency_ms.p50)}</td>
                    <td>{milliseconds(totals.latency_ms.p95)}</td>
                    <td>{milliseconds(totals.latency_ms.p99)}</td>
                  </tr>
                )}
              </tbody>
            </table>
          </>
        )}
      </figure>

      <table class="routes">
        <caption>Requests by route</caption>
        <thead>
          <tr>
            <th scope="col">Route</th>
            <th scope="col">Allowed</th>
            <th scope="col">Denied</th>
            <th scope="col">Total</th>
          </tr>
        </thead>
        <tbody>
          {routes.length === 0 && (
            <tr>
              <td colSpan={4}>No requests by route in this range.</td>
            </tr>
          )}
          {routes.map(([name, route]) => (
            <tr key={name}>
              <td><code>{name}</code></td>
              <td>{count(route.allowed)}</td>
              <td>{count(route.total - route.allowed)}</td>
              <td>{count(route.total)}</td>
            </tr>
          ))}
        </tbody>
      </table>

      <section class="addresses" aria-label="Client addresses">
        <h3>Client addresses</h3>
        {addresses ? (
          <>
            <p>
              About <strong>{count(addresses.distinct)}</strong> distinct addresses
              {addresses.unusual && (
                <span class="unusual" role="status"> — unusually many: more than 4 times the key's recent normal</span>
              )}
            </p>
            <table>
              <thead>
                <tr>
                  <th scope="col">Address</th>
                  <th scope="col">Requests (at least)</th>
                </tr>
              </thead>
              <tbody>
                {addresses.top.map((entry) => (
                  <tr key={entry.ip}>
                    <td><code>{entry.ip}</code></td>
                    <td>{count(entry.requests)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        ) : (
          <p>No addresses reported in this range.</p>
        )}
      </section>
    </div>
  );
}

/** p50, p95 and p99 as three lines over the range (decorative: the table beside it says it all). */
function LatencyChart({ series }: { series: ReturnType<typeof percentileSeries> }) {
  const width = 480;
  const height = 120;
  const top = Math.max(1, ...series.map((p) => p.p99));
  const x = (i: number) => (series.length === 1 ? width / 2 : (i / (series.length - 1)) * (width - 20) + 10);
  const y = (value: number) => height - 10 - (value / top) * (height - 20);
  const line = (pick: (p: (typeof series)[number]) => number) =>
    series.map((p, i) => `${x(i).toFixed(1)},${y(pick(p)).toFixed(1)}`).join(" ");
  return (
    <svg viewBox={`0 0 ${width} ${height}`} class="latency-chart" aria-hidden="true" focusable="false">
      <polyline class="p99" points={line((p) => p.p99)} />
      <polyline class="p95" points={line((p) => p.p95)} />
      <polyline class="p50" points={line((p) => p.p50)} />
      {series.map((p, i) => (
        <g key={p.start}>
          <circle class="p99" cx={x(i)} cy={y(p.p99)} r={3} />
          <circle class="p95" cx={x(i)} cy={y(p.p95)} r={3} />
          <circle class="p50" cx={x(i)} cy={y(p.p50)} r={3} />
        </g>
      ))}
    </svg>
  );
}
