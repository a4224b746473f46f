// One key: its settings (editable for editors and admins), Rotate with a grace period,
// Deactivate / Activate, Delete after a confirmation naming it, its usage and audit trail.

import { useState } from "preact/hooks";
import { ApiError } from "../api/client";
import type { Key, RotateKey, UpdateKey } from "../api/types";
import { AuditTrail } from "../components/AuditTrail";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { KeyForm } from "../components/KeyForm";
import { Headroom } from "../components/Headroom";
import { KeyEvents } from "../components/KeyEvents";
import { UsagePanel } from "../components/KeyUsage";
import { SecretOnce } from "../components/SecretOnce";
import { useCatalogue } from "../lib/catalogue";
import { errorMessage, useFetch } from "../lib/fetch";
import { dateTime, keyStatus, maskedKey, safeLink } from "../lib/format";
import { go } from "../lib/route";
import { useSession } from "../session";

const MAX_GRACE_SECONDS = 2_592_000;

/** Where and when the key was found in public; the URL is a link only when it is http(s). */
function LeakNotice({ leak, active }: { leak: NonNullable<Key["leak"]>; active: boolean }) {
  const link = safeLink(leak.url);
  const found = leak.scanner === "github" ? "GitHub secret scanning" : "a report by hand";
  // Under the `notify` policy a leaked key keeps working until someone acts.
  const next = active
    ? "It still works: rotate it, give its holder the successor, then deactivate it."
    : "It cannot be re-activated: rotate it and give its holder the successor.";
  return (
    <div class="form-error leak-notice" role="alert">
      <p>
        <strong>This key was reported leaked</strong> on {dateTime(leak.reported_at)} by {found}
        {leak.source ? ` (${leak.source})` : ""}. {next}
      </p>
      {leak.url && (
        <p>
          Found at: {link ? <a href={link} rel="noopener noreferrer" target="_blank">{leak.url}</a> : <code>{leak.url}</code>}
        </p>
      )}
    </div>
  );
}

export function KeyDetail({ id }: { id: string }) {
  const { session, api } = useSession();
  const catalogue = useCatalogue();
  const read = useFetch((signal) => api<Key>("GET", `/v1/keys/${id}`, undefined, signal), [id]);
  const key = read.data;
  const setKey = (changed: Key) => read.replace(() => changed);
  const [actionError, setActionError] = useState<string | null>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [deleted, setDeleted] = useState(false);
  const [successor, setSuccessor] = useState<Key | null>(null);
  const [grace, setGrace] = useState("3600");
  const [revision, setRevision] = useState(0);
  const canEdit = session.role !== "viewer";

  async function act(work: () => Promise<void>) {
    setActionError(null);
    try {
      await work();
      setRevision((r) => r + 1);
    } catch (failure) {
      setActionError(errorMessage(failure));
    }
  }

  if (read.error) {
    const error = read.error instanceof ApiError && read.error.status === 404 ? "No such key." : read.error.message;
    return <p class="form-error" role="alert">{error}</p>;
  }
  if (!key) return <p class="loading">Loading key…</p>;
  if (deleted) {
    return (
      <section>
        <h1>Key {key.name} deleted</h1>
        <p>
          Proxies drop it with their next snapshot update. <a href="#/keys">Back to the keys</a>
        </p>
      </section>
    );
  }
  const status = keyStatus(key, new Set());

  return (
    <section class="key-detail">
      <p>
        <a href="#/keys">← Keys</a>
      </p>
      <div class="title-row">
        <h1>{key.name}</h1>
        <span class={`status status-${status}`}>{status}</span>
        {key.leak && <span class="badge badge-leaked">leaked</span>}
      </div>
      {key.leak && <LeakNotice leak={key.leak} active={key.active} />}
      <dl class="facts">
        <dt>Id</dt>
        <dd><code>{key.id}</code></dd>
        <dt>Key</dt>
        <dd><code>{maskedKey(key)}</code></dd>
        <dt>Created</dt>
        <dd>{dateTime(key.created_at)}</dd>
        <dt>Last used</dt>
        <dd>{key.last_used_at ? `in the hour from ${dateTime(key.last_used_at)}` : "never"}</dd>
        {key.rotated_from && (
          <>
            <dt>Rotated from</dt>
            <dd><a href={`#/keys/${key.rotated_from}`}>{key.rotated_from}</a></dd>
          </>
        )}
        {key.quota_exceeded_until && (
          <>
            <dt>Over quota until</dt>
            <dd>{dateTime(key.quota_exceeded_until)}</dd>
          </>
        )}
      </dl>

      {successor?.key && (
        <SecretOnce secret={successor.key} what="API key (rotated)" onDone={() => go(`/keys/${successor.id}`)} />
      )}

      {canEdit && (
        <section class="actions-panel" aria-label="Actions">
          <div class="rotate">
            <label for="grace">Grace period (seconds the old key keeps working)</label>
            <input id="grace" type="number" min={0} max={MAX_GRACE_SECONDS} value={grace} onInput={(e) => setGrace(e.currentTarget.value)} />
            <button type="button" onClick={() =>
              act(async () => setSuccessor(await api<Key>("POST", `/v1/keys/${key.id}/rotate`, { grace_seconds: Number(grace || 0) } satisfies RotateKey)))}>
              Rotate
            </button>
          </div>
          {key.leak && !key.active ? null : key.active ? (
            <button type="button" class="secondary" onClick={() => act(async () => setKey(await api<Key>("PATCH", `/v1/keys/${key.id}`, { active: false } satisfies UpdateKey)))}>
              Deactivate
            </button>
          ) : (
            <button type="button" class="secondary" onClick={() => act(async () => setKey(await api<Key>("PATCH", `/v1/keys/${key.id}`, { active: true } satisfies UpdateKey)))}>
              Activate
            </button>
          )}
          <button type="button" class="danger" onClick={() => setConfirmDelete(true)}>
            Delete
          </button>
          {actionError && <p class="form-error" role="alert">{actionError}</p>}
        </section>
      )}
      {confirmDelete && (
        <ConfirmDialog title={`Delete key “${key.name}”?`} confirmLabel="Delete"
          onCancel={() => setConfirmDelete(false)}
          onConfirm={() => {
            setConfirmDelete(false);
            act(async () => {
              await api<void>("DELETE", `/v1/keys/${key.id}`);
              setDeleted(true);
            });
          }}>
          <p>
            The key <strong>{key.name}</strong> (<code>{maskedKey(key)}</code>) stops working on every proxy within about a
            second. This cannot be undone.
          </p>
        </ConfirmDialog>
      )}

      <Headroom keyId={key.id} />
      <UsagePanel path={`/v1/keys/${key.id}/usage`} title="Usage" />
      <KeyEvents keyId={key.id} />

      <section aria-labelledby="settings-heading">
        <h2 id="settings-heading">Settings</h2>
        {catalogue.error && <p class="form-error" role="alert">{catalogue.error.message}</p>}
        {catalogue.data && (
          <KeyForm key={key.id} mode="edit" initial={key} scopes={catalogue.data.scopes} plans={catalogue.data.plans}
            readOnly={!canEdit} submitLabel="Save changes"
            onSubmit={async (body) => {
              setKey(await api<Key>("PATCH", `/v1/keys/${key.id}`, body));
              setRevision((r) => r + 1);
            }} />
        )}
      </section>

      {session.role === "admin" ? (
        <AuditTrail target={key.id} reload={revision} />
      ) : (
        <p class="hint">The audit trail is shown to admin tokens.</p>
      )}
    </section>
  );
}
