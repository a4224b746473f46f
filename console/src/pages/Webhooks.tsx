// Webhook endpoints: where alerts are sent (docs/webhooks.md). Everyone sees the endpoints they
// may (a team token: its team's); admins create them (the signing secret is shown once), send a
// test event, read the delivery log, rotate the secret, disable, enable and delete them.

import { useState } from "preact/hooks";
import type { CreateWebhook, EventType, Webhook, WebhookDeliveryList, WebhookList, WebhookTestQueued } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { FieldError, FormError, formMessage, messageFor } from "../components/FieldError";
import { SecretOnce } from "../components/SecretOnce";
import { deliveryState, EVENT_TYPES } from "../lib/alerts";
import { errorMessage, useFetch } from "../lib/fetch";
import { dateTime } from "../lib/format";
import { useSession } from "../session";

export function Webhooks() {
  const { session, api } = useSession();
  const read = useFetch((signal) => api<WebhookList>("GET", "/v1/webhooks", undefined, signal), []);
  const [creating, setCreating] = useState(false);
  const [secret, setSecret] = useState<string | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const isAdmin = session.role === "admin";
  const hooks = read.data?.webhooks;

  function shown(hook: Webhook) {
    setCreating(false);
    if (hook.secret) setSecret(hook.secret);
    read.reload();
  }

  return (
    <section>
      <div class="title-row">
        <h1>Webhooks</h1>
        {isAdmin && !secret && (
          <button type="button" onClick={() => setCreating(true)}>
            Add endpoint
          </button>
        )}
      </div>
      <p class="hint">Alerts are posted to these endpoints, signed as the Standard Webhooks specification says (webhook-id, webhook-timestamp, webhook-signature), and retried with backoff for up to 3 days.</p>
      {read.error && <p class="form-error" role="alert">{read.error.message}</p>}
      {secret && <SecretOnce secret={secret} what="signing secret" onDone={() => setSecret(null)} />}
      {creating && <WebhookForm onCancel={() => setCreating(false)} onDone={shown} />}
      {hooks && hooks.length === 0 && <p>No endpoints yet.</p>}
      {hooks?.map((hook) => (
        <WebhookCard key={hook.id} hook={hook} isAdmin={isAdmin} open={open === hook.id} onToggle={() => setOpen(open === hook.id ? null : hook.id)} onChanged={shown} onDeleted={() => read.reload()} />
      ))}
    </section>
  );
}

function WebhookCard({ hook, isAdmin, open, onToggle, onChanged, onDeleted }: {
  hook: Webhook;
  isAdmin: boolean;
  open: boolean;
  onToggle: () => void;
  onChanged: (hook: Webhook) => void;
  onDeleted: () => void;
}) {
  const { api } = useSession();
  const [status, setStatus] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [deleting, setDeleting] = useState(false);
  const path = `/v1/webhooks/${hook.id}`;

  async function act(work: () => Promise<void>) {
    setError(null);
    setStatus(null);
    try {
      await work();
    } catch (failure) {
      setError(errorMessage(failure));
    }
  }

  return (
    <article class="plan-form webhook" aria-label={`Webhook ${hook.url}`}>
      <h2>
        <code>{hook.url}</code> {hook.enabled ? "" : <span class="badge">disabled</span>}
      </h2>
      <dl class="facts">
        <dt>Events</dt>
        <dd>{hook.events.join(", ")}</dd>
        <dt>Team</dt>
        <dd>{hook.team ?? "every team"}</dd>
        {hook.description && (
          <>
            <dt>Description</dt>
            <dd>{hook.description}</dd>
          </>
        )}
        {hook.disabled_reason && (
          <>
            <dt>Disabled</dt>
            <dd>{hook.disabled_reason}</dd>
          </>
        )}
        {hook.failing_since && (
          <>
            <dt>Failing since</dt>
            <dd>{dateTime(hook.failing_since)}</dd>
          </>
        )}
      </dl>
      {error && <p class="form-error" role="alert">{error}</p>}
      <p class="status" aria-live="polite">{status}</p>
      <div class="row-actions">
        <button type="button" class="secondary" onClick={onToggle} aria-expanded={open}>
          {open ? "Hide deliveries" : "Deliveries"}
        </button>
        {isAdmin && hook.enabled && (
          <button type="button" onClick={() => act(async () => {
            const queued = await api<WebhookTestQueued>("POST", `${path}/test`);
            setStatus(`Test event ${queued.event_id} queued.`);
          })}>
            Send test event
          </button>
        )}
        {isAdmin && (
          <button type="button" class="secondary" onClick={() => act(async () => onChanged(await api<Webhook>("PATCH", path, { enabled: !hook.enabled })))}>
            {hook.enabled ? "Disable" : "Enable"}
          </button>
        )}
        {isAdmin && (
          <button type="button" class="secondary" onClick={() => act(async () => onChanged(await api<Webhook>("POST", `${path}/rotate-secret`, {})))}>
            Rotate secret
          </button>
        )}
        {isAdmin && (
          <button type="button" class="danger" onClick={() => setDeleting(true)}>
            Delete
          </button>
        )}
      </div>
      {open && <DeliveryLog path={`${path}/deliveries`} />}
      {deleting && (
        <ConfirmDialog title={`Delete the endpoint ${hook.url}?`} confirmLabel="Delete" onCancel={() => setDeleting(false)}
          onConfirm={() => act(async () => {
            setDeleting(false);
            await api<void>("DELETE", path);
            onDeleted();
          })}>
          <p>Its delivery log goes with it; pending deliveries are not sent.</p>
        </ConfirmDialog>
      )}
    </article>
  );
}

function DeliveryLog({ path }: { path: string }) {
  const { api } = useSession();
  const read = useFetch((signal) => api<WebhookDeliveryList>("GET", `${path}?limit=20`, undefined, signal), [path]);
  const deliveries = read.data?.deliveries;
  return (
    <div class="deliveries">
      <div class="title-row">
        <h3>Latest deliveries</h3>
        <button type="button" class="secondary" onClick={() => read.reload()}>
          Refresh
        </button>
      </div>
      {read.error && <p class="form-error" role="alert">{read.error.message}</p>}
      {deliveries && deliveries.length === 0 && <p>No deliveries yet.</p>}
      {deliveries && deliveries.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Event</th>
              <th scope="col">Type</th>
              <th scope="col">State</th>
              <th scope="col">Last attempt</th>
              <th scope="col">Error</th>
            </tr>
          </thead>
          <tbody>
            {deliveries.map((delivery) => (
              <tr key={delivery.event_id}>
                <td><code>{delivery.event_id}</code></td>
                <td>{delivery.type}</td>
                <td>{deliveryState(delivery)}</td>
                <td>{dateTime(delivery.last_attempt_at)}</td>
                <td>{delivery.last_error ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function WebhookForm({ onDone, onCancel }: { onDone: (hook: Webhook) => void; onCancel: () => void }) {
  const { session, api } = useSession();
  const [url, setUrl] = useState("");
  const [description, setDescription] = useState("");
  const [team, setTeam] = useState(session.team ?? "");
  const [events, setEvents] = useState<EventType[]>(["quota.threshold", "quota.exceeded"]);
  const [error, setError] = useState<unknown>(null);

  async function submit(event: Event) {
    event.preventDefault();
    setError(null);
    const body: CreateWebhook = { url, events, description, team: team === "" ? null : team };
    try {
      onDone(await api<Webhook>("POST", "/v1/webhooks", body));
    } catch (failure) {
      setError(failure);
    }
  }

  function toggle(name: EventType, on: boolean) {
    setEvents((current) => (on ? [...current, name] : current.filter((event) => event !== name)));
  }

  return (
    <form class="plan-form" onSubmit={submit} noValidate aria-label="New webhook endpoint">
      <h2>New endpoint</h2>
      <FormError message={formMessage(error, ["url", "events", "team", "description"])} />
      <div class="field">
        <label for="webhook-url">URL</label>
        <input id="webhook-url" type="url" value={url} placeholder="https://hooks.example.com/keygate" onInput={(e) => setUrl(e.currentTarget.value)} />
        <FieldError id="webhook-url-error" message={messageFor(error, "url")} />
      </div>
      <fieldset>
        <legend>Events</legend>
        {EVENT_TYPES.map(([name, meaning]) => (
          <label key={name} class="check">
            <input type="checkbox" checked={events.includes(name)} onChange={(e) => toggle(name, e.currentTarget.checked)} />
            <code>{name}</code> — {meaning}
          </label>
        ))}
        <FieldError id="webhook-events-error" message={messageFor(error, "events")} />
      </fieldset>
      <div class="field">
        <label for="webhook-team">Team</label>
        <input id="webhook-team" value={team} readOnly={Boolean(session.team)} placeholder="every team" onInput={(e) => setTeam(e.currentTarget.value)} />
        <FieldError id="webhook-team-error" message={messageFor(error, "team")} />
      </div>
      <div class="field">
        <label for="webhook-description">Description</label>
        <input id="webhook-description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        <FieldError id="webhook-description-error" message={messageFor(error, "description")} />
      </div>
      <div class="actions">
        <button type="submit">Add endpoint</button>
        <button type="button" class="secondary" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
