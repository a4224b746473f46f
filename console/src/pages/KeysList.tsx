// Keys, a page at a time through the API's cursor (never all of them), with filters the API
// applies (team, environment, status) and a name search that reads pages until it has a
// page of matches; each row has a 24-hour chart of requests by outcome.

import { useEffect, useState } from "preact/hooks";
import { api, query, type Key, type KeyPage, type Session, type Usage } from "../api";
import { Sparkline } from "../components/UsageChart";
import { ago, keyStatus, maskedKey } from "../format";
import { go } from "../route";
import { rangeQuery } from "../usage";

export const PAGE_SIZE = 25;
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
  /** The cursor this page was read from: a page is shown only under its own cursor. */
  cursor?: string | null;
}

async function loadPage(filters: Filters, cursor: string | null): Promise<Loaded> {
  const params = { team: filters.team, environment: filters.environment, status: filters.status };
  const wanted = filters.name.trim().toLowerCase();
  if (!wanted) {
    const page = await api<KeyPage>("GET", `/v1/keys${query({ ...params, limit: PAGE_SIZE, cursor })}`);
    return { keys: page.keys, next: page.next_cursor };
  }
  const found: Key[] = [];
  let next = cursor;
  do {
    const page = await api<KeyPage>("GET", `/v1/keys${query({ ...params, limit: SEARCH_BATCH, cursor: next })}`);
    found.push(...page.keys.filter((key) => key.name.toLowerCase().includes(wanted)));
    next = page.next_cursor;
  } while (next && found.length < PAGE_SIZE);
  return { keys: found, next };
}

export function KeysList({ session }: { session: Session }) {
  const [draft, setDraft] = useState<Filters>({ name: "", team: "", environment: "", status: "" });
  const [filters, setFilters] = useState<Filters>(draft);
  // The cursors of the pages before this one, for "Previous page".
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [usage, setUsage] = useState<Record<string, Usage>>({});
  const [error, setError] = useState<string | null>(null);
  const canEdit = session.role !== "viewer";
  const cursor = cursors[cursors.length - 1];
  const shown = loaded && loaded.cursor === cursor ? loaded : null;
  const sparkRange = rangeQuery("24h");

  useEffect(() => {
    let current = true;
    setLoaded(null);
    setError(null);
    loadPage(filters, cursor)
      .then((page) => {
        if (!current) return;
        setLoaded({ ...page, cursor });
        const range = query({ from: sparkRange.from, to: sparkRange.to, granularity: "hour" });
        for (const key of page.keys) {
          api<Usage>("GET", `/v1/keys/${key.id}/usage${range}`)
            .then((read) => current && setUsage((all) => ({ ...all, [key.id]: read })))
            .catch(() => {});
        }
      })
      .catch((failure: Error) => current && setError(failure.message));
    return () => {
      current = false;
    };
  }, [filters, cursor]);

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
                    </td>
                    <td>{ago(key.last_used_at)}</td>
                    <td>{usage[key.id] ? <Sparkline usage={usage[key.id]} query={sparkRange} name={key.name} /> : "…"}</td>
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
