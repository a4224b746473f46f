// Keys, a page at a time through the API's cursor (never all of them), with filters the API
// applies (team, environment, status) and a name search that reads pages until it has a
// page of matches; each row has a 24-hour chart of requests by outcome.

import { useState } from "preact/hooks";
import { query, type Api } from "../api/client";
import type { Key, KeyList, Usage } from "../api/types";
import { Sparkline } from "../components/UsageChart";
import { useFetch } from "../lib/fetch";
import { ago, keyStatus, maskedKey } from "../lib/format";
import { go } from "../lib/route";
import { rangeQuery } from "../lib/usage";
import { useSession } from "../session";

const PAGE_SIZE = 25;
/** Keys read per request while searching by name. */
const SEARCH_BATCH = 500;

interface Filters {
  name: string;
  team: string;
  environment: string;
  status: string;
}

interface Loaded {
  keys: Key[];
  next: string | null;
}

async function loadPage(api: Api, filters: Filters, cursor: string | null, signal: AbortSignal): Promise<Loaded> {
  const params = { team: filters.team, environment: filters.environment, status: filters.status };
  const wanted = filters.name.trim().toLowerCase();
  if (!wanted) {
    const page = await api<KeyList>("GET", `/v1/keys${query({ ...params, limit: PAGE_SIZE, cursor })}`, undefined, signal);
    return { keys: page.keys, next: page.next_cursor };
  }
  const found: Key[] = [];
  let next = cursor;
  do {
    const page = await api<KeyList>("GET", `/v1/keys${query({ ...params, limit: SEARCH_BATCH, cursor: next })}`, undefined, signal);
    found.push(...page.keys.filter((key) => key.name.toLowerCase().includes(wanted)));
    next = page.next_cursor;
  } while (next && found.length < PAGE_SIZE);
  return { keys: found, next };
}

export function KeysList() {
  const { session, api } = useSession();
  const [draft, setDraft] = useState<Filters>({ name: "", team: "", environment: "", status: "" });
  const [filters, setFilters] = useState<Filters>(draft);
  // The cursors of the pages before this one, for "Previous page".
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const canEdit = session.role !== "viewer";
  const cursor = cursors[cursors.length - 1];
  const page = useFetch((signal) => loadPage(api, filters, cursor, signal), [filters, cursor]);
  // A page is shown only once it is the answer for these filters and this cursor.
  const shown = page.loading || page.error ? null : page.data;
  const error = page.error?.message;

  const successors = new Set((shown?.keys ?? []).map((key) => key.rotated_from).filter((id): id is string => !!id));

  function apply(event: Event) {
    event.preventDefault();
    setCursors([null]);
    setFilters({ ...draft });
  }

  return (
    <section>
      <div class="title-row">
        <h1>API keys</h1>
        {canEdit && (
          <button type="button" onClick={() => go("/keys/new")}>
            Create key
          </button>
        )}
      </div>
      <form class="filters" onSubmit={apply} role="search">
        <label>
          Name
          <input type="search" value={draft.name} onInput={(e) => setDraft({ ...draft, name: e.currentTarget.value })} />
        </label>
        <label>
          Team
          <input value={session.team ?? draft.team} readOnly={session.team !== null}
            onInput={(e) => setDraft({ ...draft, team: e.currentTarget.value })} />
        </label>
        <label>
          Environment
          <select value={draft.environment} onChange={(e) => setDraft({ ...draft, environment: e.currentTarget.value })}>
            <option value="">any</option>
            <option value="live">live</option>
            <option value="test">test</option>
          </select>
        </label>
        <label>
          Status
          <select value={draft.status} onChange={(e) => setDraft({ ...draft, status: e.currentTarget.value })}>
            <option value="">any</option>
            <option value="active">active</option>
            <option value="inactive">inactive</option>
            <option value="expired">expired</option>
          </select>
        </label>
        <button type="submit" class="secondary">
          Search
        </button>
      </form>
      {error && <p class="form-error" role="alert">{error}</p>}
      {!shown && !error && <p class="loading">Loading keys…</p>}
      {shown && (
        <>
          <table class="keys">
            <caption class="visually-hidden">API keys, page {cursors.length}</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Key</th>
                <th scope="col">Team</th>
                <th scope="col">Env</th>
                <th scope="col">Scopes</th>
                <th scope="col">Plan</th>
                <th scope="col">Status</th>
                <th scope="col">Last used</th>
                <th scope="col">Last 24 h</th>
              </tr>
            </thead>
            <tbody>
              {shown.keys.map((key) => {
                const status = keyStatus(key, successors);
                return (
                  <tr key={key.id}>
                    <td>
                      <a href={`#/keys/${key.id}`}>{key.name}</a>
                    </td>
                    <td>
                      <code>{maskedKey(key)}</code>
                    </td>
                    <td>{key.team || "—"}</td>
                    <td>{key.environment}</td>
                    <td>{key.scopes.length ? key.scopes.join(", ") : "all"}</td>
                    <td>{key.plan}</td>
                    <td>
                      <span class={`status status-${status}`}>{status}</span>
                      {key.leak && <span class="badge badge-leaked" title={`reported leaked ${key.leak.reported_at}`}>leaked</span>}
                    </td>
                    <td>{ago(key.last_used_at)}</td>
                    <td>
                      <LastDay id={key.id} name={key.name} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          {shown.keys.length === 0 && <p>No keys match.</p>}
          <nav class="pager" aria-label="Pages">
            <button type="button" class="secondary" disabled={cursors.length === 1} onClick={() => setCursors(cursors.slice(0, -1))}>
              Previous page
            </button>
            <span>Page {cursors.length}</span>
            <button type="button" class="secondary" disabled={!shown.next} onClick={() => setCursors([...cursors, shown.next])}>
              Next page
            </button>
          </nav>
        </>
      )}
    </section>
  );
}

/** A row's chart of the last 24 hours: "…" until its usage is read (or if it cannot be). */
function LastDay({ id, name }: { id: string; name: string }) {
  const { api } = useSession();
  const read = useFetch(async (signal) => {
    const range = rangeQuery("24h");
    const path = `/v1/keys/${id}/usage${query({ from: range.from, to: range.to, granularity: "hour" })}`;
    return { usage: await api<Usage>("GET", path, undefined, signal), range };
  }, [id]);
  return read.data ? <Sparkline usage={read.data.usage} query={read.data.range} name={name} /> : <>…</>;
}
