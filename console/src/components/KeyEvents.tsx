// A key's recent events: each denial and each request the upstream failed or never answered,
// newest first, filtered by outcome and paged back in time.

import { useState } from "preact/hooks";
import { query } from "../api/client";
import type { KeyEvents as Events } from "../api/types";
import { useFetch } from "../lib/fetch";
import { dateTime } from "../lib/format";
import { outcomeLabel } from "../lib/usage";
import { useSession } from "../session";

const OUTCOMES = [
  { value: "", label: "Every outcome" },
  { value: "denied", label: "Denials" },
  { value: "failed", label: "Upstream failures (5xx, no answer)" },
  { value: "5xx", label: "Upstream 5xx" },
  { value: "none", label: "No answer" },
];
const PAGE = 25;

export function KeyEvents({ keyId }: { keyId: string }) {
  const { api } = useSession();
  const [outcome, setOutcome] = useState("");
  const [before, setBefore] = useState<string | undefined>(undefined);
  const read = useFetch(
    (signal) =>
      api<Events>("GET", `/v1/keys/${keyId}/events${query({ outcome: outcome || undefined, before, limit: String(PAGE) })}`,
        undefined, signal),
    [keyId, outcome, before],
  );
  const events = read.data?.events ?? [];
  return (
    <section class="events" aria-labelledby="events-heading">
      <div class="title-row">
        <h2 id="events-heading">Recent events</h2>
        <label>
          Outcome
          <select value={outcome} onChange={(e) => (setOutcome(e.currentTarget.value), setBefore(undefined))}>
            {OUTCOMES.map((o) => (
              <option key={o.value} value={o.value}>{o.label}</option>
            ))}
          </select>
        </label>
      </div>
      {read.error && <p class="form-error" role="alert">{read.error.message}</p>}
      <table>
        <caption>Denials and failed upstream answers, newest first</caption>
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Outcome</th>
            <th scope="col">Status</th>
            <th scope="col">Request</th>
            <th scope="col">Client</th>
            <th scope="col">Request id</th>
          </tr>
        </thead>
        <tbody>
          {read.data && events.length === 0 && (
            <tr>
              <td colSpan={6}>No events{before ? " before that" : ""}.</td>
            </tr>
          )}
          {events.map((event, index) => (
            <tr key={`${event.at}-${index}`}>
              <td>{dateTime(event.at)}</td>
              <td>
                <code>{event.outcome}</code> {eventLabel(event.outcome)}
              </td>
              <td>{event.status === 0 ? "—" : event.status}</td>
              <td>
                <code>{event.method} {event.path}</code>
              </td>
              <td>{event.client_ip ?? "—"}</td>
              <td>{event.request_id ? <code>{event.request_id}</code> : "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div class="pager">
        {before && (
          <button type="button" class="secondary" onClick={() => setBefore(undefined)}>Newest</button>
        )}
        {events.length === PAGE && (
          <button type="button" class="secondary" onClick={() => setBefore(events[events.length - 1].at)}>Older</button>
        )}
      </div>
    </section>
  );
}

function eventLabel(outcome: string): string {
  if (outcome === "5xx") return "(upstream error)";
  if (outcome === "none") return "(no answer: reset, timeout or client gone)";
  return `(${outcomeLabel(outcome)})`;
}
