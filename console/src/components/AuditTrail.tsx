// The audit entries of one key (admin tokens only: the API's rule for /v1/audit).

import { useState } from "preact/hooks";
import { query } from "../api/client";
import type { AuditPage } from "../api/types";
import { errorMessage, useFetch } from "../lib/fetch";
import { dateTime } from "../lib/format";
import { useSession } from "../session";

const AUDIT_PAGE_SIZE = 50;

/** The audit entries of `target`, newest first; read again whenever `reload` changes. */
export function AuditTrail({ target, reload }: { target: string; reload: number }) {
  const { api } = useSession();
  const page = (cursor: string | null, signal?: AbortSignal) =>
    api<AuditPage>("GET", `/v1/audit${query({ target, limit: AUDIT_PAGE_SIZE, cursor })}`, undefined, signal);
  const read = useFetch((signal) => page(null, signal), [target, reload]);
  const [olderError, setOlderError] = useState<string | null>(null);
  const entries = read.data?.entries ?? [];
  const next = read.data?.next_cursor ?? null;
  const error = read.error?.message ?? olderError;

  async function older(cursor: string) {
    try {
      const more = await page(cursor);
      read.replace((shown) => ({ entries: [...(shown?.entries ?? []), ...more.entries], next_cursor: more.next_cursor }));
    } catch (failure) {
      setOlderError(errorMessage(failure));
    }
  }

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
        <button type="button" class="secondary" onClick={() => older(next)}>
          Older entries
        </button>
      )}
    </section>
  );
}
