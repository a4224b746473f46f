// The audit entries of one key (admin tokens only: the API's rule for /v1/audit).

import { useEffect, useState } from "preact/hooks";
import { api, query, type AuditEntry } from "../api";
import { dateTime } from "../format";

export function AuditTrail({ target, reload }: { target: string; reload: number }) {
  const [entries, setEntries] = useState<AuditEntry[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  function load(cursor: string | null) {
    api<{ entries: AuditEntry[]; next_cursor: string | null }>("GET", `/v1/audit${query({ target, limit: 50, cursor })}`)
      .then((page) => {
        setEntries((shown) => (cursor ? [...shown, ...page.entries] : page.entries));
        setNext(page.next_cursor);
      })
      .catch((failure: Error) => setError(failure.message));
  }
  useEffect(() => load(null), [target, reload]);

  return (
    <section aria-labelledby="audit-heading">
      <h2 id="audit-heading">Audit trail</h2>
      {error && <p class="form-error" role="alert">{error}</p>}
      <table class="audit">
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Action</th>
            <th scope="col">By</th>
            <th scope="col">Changes</th>
          </tr>
        </thead>
        <tbody>
          {entries.map((entry, index) => (
            <tr key={index}>
              <td>{dateTime(entry.at)}</td>
              <td>
                <code>{entry.action}</code>
              </td>
              <td>{entry.token_name}</td>
              <td>
                <code class="changes">{JSON.stringify(entry.changes)}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {next && (
        <button type="button" class="secondary" onClick={() => load(next)}>
          Older entries
        </button>
      )}
    </section>
  );
}
