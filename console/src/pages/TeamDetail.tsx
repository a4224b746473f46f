// One team: its plan, the quotas its keys share and their use today and this month, its keys
// (links to their pages) and tokens. An admin of no team changes the plan and quotas or deletes
// the team; a delete the service refuses (keys or tokens still name it) says what to do.

import { useState } from "preact/hooks";
import { ApiError } from "../api/client";
import type { Team } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { quotaUse } from "../lib/alerts";
import { errorMessage, useFetch } from "../lib/fetch";
import { maskedKey } from "../lib/format";
import { go } from "../lib/route";
import { useSession } from "../session";
import { isOperator, TeamForm } from "./Teams";

export function TeamDetail({ name }: { name: string }) {
  const { session, api } = useSession();
  const path = `/v1/teams/${encodeURIComponent(name)}`;
  const read = useFetch((signal) => api<Team>("GET", path, undefined, signal), [path]);
  const [editing, setEditing] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [deleteError, setDeleteError] = useState<string | null>(null);
  const team = read.data;

  async function remove() {
    setDeleting(false);
    try {
      await api<void>("DELETE", path);
      go("/teams");
    } catch (failure) {
      const message = errorMessage(failure);
      setDeleteError(
        failure instanceof ApiError && failure.status === 409
          ? `Team ${name} was not deleted: ${message}.`
          : message,
      );
    }
  }

  return (
    <section>
      <p>
        <a href="#/teams">← Teams</a>
      </p>
      <div class="title-row">
        <h1>Team {name}</h1>
        {team && isOperator(session) && (
          <div class="row-actions">
            <button type="button" class="secondary" onClick={() => setEditing(true)}>
              Edit plan and quotas
            </button>
            <button type="button" class="danger" onClick={() => setDeleting(true)}>
              Delete team
            </button>
          </div>
        )}
      </div>
      {read.error && <p class="form-error" role="alert">{read.error.message}</p>}
      {deleteError && <p class="form-error" role="alert">{deleteError}</p>}
      {team && editing && <TeamForm team={team} onCancel={() => setEditing(false)} onDone={() => (setEditing(false), read.reload())} />}
      {team && (
        <>
          <dl class="facts">
            <dt>Plan</dt>
            <dd>{team.plan ?? "none"}</dd>
            <dt>Today (UTC)</dt>
            <dd data-testid="team-today">{quotaUse(team.usage.today, team.usage.per_day)}</dd>
            <dt>This month</dt>
            <dd data-testid="team-month">{quotaUse(team.usage.this_month, team.usage.per_month)}</dd>
            <dt>Keys</dt>
            <dd>{team.key_count}</dd>
          </dl>
          <h2>Keys</h2>
          {team.keys && team.keys.length > 0 ? (
            <ul class="members">
              {team.keys.map((key) => (
                <li key={key.id}>
                  <a href={`#/keys/${key.id}`}>{key.name}</a> <code>{maskedKey(key)}</code> · {key.plan}
                  {key.quota_exceeded_until ? ` · over quota until ${key.quota_exceeded_until}` : ""}
                </li>
              ))}
              {team.key_count > team.keys.length && <li>… and {team.key_count - team.keys.length} more on the Keys page.</li>}
            </ul>
          ) : (
            <p>No keys.</p>
          )}
          <h2>Tokens</h2>
          {team.tokens && team.tokens.length > 0 ? (
            <ul class="members">
              {team.tokens.map((token) => (
                <li key={token.id}>
                  {token.name} · {token.role} · …{token.last4}
                </li>
              ))}
            </ul>
          ) : (
            <p>No tokens.</p>
          )}
        </>
      )}
      {deleting && (
        <ConfirmDialog title={`Delete team “${name}”?`} confirmLabel="Delete" onCancel={() => setDeleting(false)} onConfirm={remove}>
          <p>The service refuses while keys or tokens belong to the team.</p>
        </ConfirmDialog>
      )}
    </section>
  );
}
