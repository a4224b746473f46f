// The fleet (tokens of no team): every proxy with its state, snapshot lag and last posts;
// revoking one (admin) after a confirmation. Enrollment tokens are made with the API or CLI.

import { useState } from "preact/hooks";
import type { Proxy, ProxyList } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { errorMessage, useFetch } from "../lib/fetch";
import { health, lag, seen } from "../lib/fleet";
import { dateTime } from "../lib/format";
import { useSession } from "../session";

export function Proxies() {
  const { api, session } = useSession();
  const read = useFetch((signal) => api<ProxyList>("GET", "/v1/proxies", undefined, signal), []);
  const [revoking, setRevoking] = useState<Proxy | null>(null);
  const [revokeError, setRevokeError] = useState<string | null>(null);
  const proxies = read.data?.proxies;
  const error = read.error?.message ?? revokeError;
  const isAdmin = session.role === "admin";
  const counts = (proxies ?? []).reduce<Record<string, number>>((held, proxy) => {
    held[proxy.state] = (held[proxy.state] ?? 0) + 1;
    return held;
  }, {});

  async function revoke(proxy: Proxy) {
    setRevoking(null);
    try {
      await api<void>("DELETE", `/v1/proxies/${proxy.id}`);
      read.reload();
    } catch (failure) {
      setRevokeError(errorMessage(failure));
    }
  }

  return (
    <section>
      <h1>Proxies</h1>
      <p class="hint">
        Every Envoy that syncs with its own credential. Newest snapshot version:{" "}
        {read.data ? read.data.snapshot_version : "…"}.{" "}
        {proxies && `${counts.live ?? 0} live, ${counts.stale ?? 0} stale, ${counts.revoked ?? 0} revoked.`}{" "}
        <button type="button" class="secondary" onClick={() => read.reload()}>Refresh</button>
      </p>
      {error && <p class="form-error" role="alert">{error}</p>}
      {proxies && proxies.length === 0 && <p>No proxy has enrolled yet.</p>}
      {proxies && proxies.length > 0 && (
        <table class="proxies">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Health</th>
              <th scope="col">Snapshot</th>
              <th scope="col">Last seen</th>
              <th scope="col">Usage reports</th>
              <th scope="col">Fleet sync</th>
              <th scope="col">Labels</th>
              <th scope="col">Version</th>
              <th scope="col"><span class="visually-hidden">Actions</span></th>
            </tr>
          </thead>
          <tbody>
            {proxies.map((proxy) => {
              const state = health(proxy);
              return (
                <tr key={proxy.id} data-health={state}>
                  <th scope="row" title={proxy.id}>{proxy.name}</th>
                  <td><span class={`badge badge-${state}`}>{state}</span></td>
                  <td>{lag(proxy)}</td>
                  <td title={dateTime(proxy.last_seen)}>{seen(proxy.last_seen)}</td>
                  <td>{posts(proxy.last_report)}</td>
                  <td>{posts(proxy.last_sync)}</td>
                  <td>{Object.entries(proxy.labels).map(([name, value]) => `${name}=${value}`).join(", ") || "—"}</td>
                  <td>{proxy.version || "—"}</td>
                  <td>
                    {isAdmin && proxy.state !== "revoked" && (
                      <button type="button" class="danger" aria-label={`Revoke proxy ${proxy.name}`} onClick={() => setRevoking(proxy)}>
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {revoking && (
        <ConfirmDialog title={`Revoke proxy “${revoking.name}”?`} confirmLabel="Revoke" onCancel={() => setRevoking(null)} onConfirm={() => revoke(revoking)}>
          <p>
            Its next call to the control service is refused and its name cannot enroll again. It keeps serving
            its last snapshot but gets no further change; reports it has not delivered yet are dropped.
          </p>
        </ConfirmDialog>
      )}
    </section>
  );
}

function posts(health: { at: string | null; failing_since: string | null }): string {
  if (health.failing_since) return `refused since ${seen(health.failing_since)}`;
  return health.at ? `ok, ${seen(health.at)}` : "none yet";
}
