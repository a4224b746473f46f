// The settings of a key, for creating one or editing it: every field with its label, the
// scopes from the service's catalogue with their descriptions, allowed IPs checked as typed,
// and the API's error message beside the field it names.

import { useState } from "preact/hooks";
import type { CreateKey, Environment, Key, PlanDetails, Scope } from "../api/types";
import { ipEntries, ipProblem } from "../lib/ip";
import { LIMIT_FIELDS, typedLimits, type LimitField, type TypedLimit } from "../lib/limits";
import { useSession } from "../session";
import { FieldError, FormError, formMessage, messageFor } from "./FieldError";

const FIELDS = ["name", "team", "environment", "scopes", "allowed_ips", "expires_at", "plan", "limits"];

const LIMIT_LABELS: Record<LimitField, string> = {
  per_minute: "Requests per minute",
  per_hour: "Requests per hour",
  per_day: "Requests per day (daily quota)",
  concurrent: "Concurrent requests",
  per_month: "Requests per month (monthly quota)",
};

/**
 * What the form sends: a new key (POST /v1/keys) or, without `environment`, every setting as a
 * merge patch (PATCH /v1/keys/{id}); the limits as typed (limitValue).
 */
export type KeyFormBody = Omit<CreateKey, "limits"> & { limits: Record<LimitField, TypedLimit> };

interface Props {
  mode: "create" | "edit";
  initial?: Key;
  scopes: Scope[];
  plans: PlanDetails[];
  readOnly: boolean;
  submitLabel: string;
  /** Sends the body; rejects with the API's error. */
  onSubmit: (body: KeyFormBody) => Promise<void>;
}

/** datetime-local wants local time without a zone. */
function localInput(value: string | null | undefined): string {
  if (!value) return "";
  const date = new Date(value);
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

export function KeyForm({ mode, initial, scopes, plans, readOnly, submitLabel, onSubmit }: Props) {
  const { session } = useSession();
  const [name, setName] = useState(initial?.name ?? "");
  const [team, setTeam] = useState(initial?.team ?? session.team ?? "");
  const [environment, setEnvironment] = useState<Environment>(initial?.environment ?? "live");
  const [chosenScopes, setChosenScopes] = useState<string[]>(initial?.scopes ?? []);
  const [allowedIps, setAllowedIps] = useState((initial?.allowed_ips ?? []).join("\n"));
  const [expiresAt, setExpiresAt] = useState(localInput(initial?.expires_at));
  const [plan, setPlan] = useState(initial?.plan ?? "free");
  const [limits, setLimits] = useState(() =>
    Object.fromEntries(LIMIT_FIELDS.map((field) => [field, String(initial?.limits?.[field] ?? "")])) as Record<LimitField, string>,
  );
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const typedIpProblem = ipProblem(allowedIps);
  const ipMessage = messageFor(error, "allowed_ips") ?? typedIpProblem;

  function toggleScope(scope: string, on: boolean) {
    setChosenScopes((current) => (on ? [...current, scope] : current.filter((s) => s !== scope)));
  }

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setSaved(null);
    const body: KeyFormBody = {
      name,
      team,
      scopes: chosenScopes,
      allowed_ips: ipEntries(allowedIps),
      expires_at: expiresAt ? new Date(expiresAt).toISOString() : null,
      plan,
      limits: typedLimits(limits),
    };
    if (mode === "create") body.environment = environment;
    try {
      await onSubmit(body);
      if (mode === "edit") setSaved("Saved.");
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const described = (field: string) => (messageFor(error, field) ? `${field}-error` : undefined);
  const teamFixed = session.team !== null;

  return (
    <form class="key-form" onSubmit={submit} noValidate>
      <FormError message={formMessage(error, FIELDS)} />
      <fieldset disabled={readOnly || busy}>
        <div class="field">
          <label for="key-name">Name</label>
          <input id="key-name" value={name} onInput={(e) => setName(e.currentTarget.value)} required maxLength={128}
            aria-invalid={messageFor(error, "name") ? true : undefined} aria-describedby={described("name")} />
          <FieldError id="name-error" message={messageFor(error, "name")} />
        </div>
        <div class="field">
          <label for="key-team">Team</label>
          <input id="key-team" value={team} onInput={(e) => setTeam(e.currentTarget.value)} readOnly={teamFixed}
            aria-describedby={teamFixed ? "team-fixed" : described("team")} />
          {teamFixed && <p class="hint" id="team-fixed">Fixed: your token belongs to team {session.team}.</p>}
          <FieldError id="team-error" message={messageFor(error, "team")} />
        </div>
        {mode === "create" ? (
          <div class="field">
            <label for="key-environment">Environment</label>
            <select id="key-environment" value={environment} onChange={(e) => setEnvironment(e.currentTarget.value as Environment)}>
              <option value="live">live (pk_live_…)</option>
              <option value="test">test (pk_test_…)</option>
            </select>
            <FieldError id="environment-error" message={messageFor(error, "environment")} />
          </div>
        ) : (
          <p>
            Environment: <strong>{initial?.environment}</strong> (fixed: the secret's prefix depends on it)
          </p>
        )}
        <fieldset class="field scopes" aria-describedby={described("scopes") ?? "scopes-hint"}>
          <legend>Scopes</legend>
          <p class="hint" id="scopes-hint">None chosen means full access.</p>
          {scopes.map((scope) => (
            <label class="check" key={scope.name}>
              <input type="checkbox" name="scopes" value={scope.name} checked={chosenScopes.includes(scope.name)}
                onChange={(e) => toggleScope(scope.name, e.currentTarget.checked)} />
              <code>{scope.name}</code>
              {scope.description && <span class="description"> — {scope.description}</span>}
            </label>
          ))}
          <FieldError id="scopes-error" message={messageFor(error, "scopes")} />
        </fieldset>
        <div class="field">
          <label for="key-ips">Allowed IPs</label>
          <textarea id="key-ips" rows={3} value={allowedIps} onInput={(e) => setAllowedIps(e.currentTarget.value)}
            placeholder="10.0.0.0/8" aria-invalid={ipMessage ? true : undefined}
            aria-describedby={ipMessage ? "allowed_ips-error" : "ips-hint"} />
          <p class="hint" id="ips-hint">One address or CIDR block per line; empty allows any address.</p>
          <FieldError id="allowed_ips-error" message={ipMessage} />
        </div>
        <div class="field">
          <label for="key-expiry">Expires</label>
          <input id="key-expiry" type="datetime-local" value={expiresAt} onInput={(e) => setExpiresAt(e.currentTarget.value)}
            aria-describedby={described("expires_at") ?? "expiry-hint"} />
          <p class="hint" id="expiry-hint">Your local time; empty means never.</p>
          <FieldError id="expires_at-error" message={messageFor(error, "expires_at")} />
        </div>
        <div class="field">
          <label for="key-plan">Plan</label>
          <select id="key-plan" value={plan} onChange={(e) => setPlan(e.currentTarget.value)} aria-describedby={described("plan")}>
            {plans.map((p) => (
              <option key={p.name} value={p.name}>
                {p.name}
                {p.description ? ` — ${p.description}` : ""}
              </option>
            ))}
          </select>
          <FieldError id="plan-error" message={messageFor(error, "plan")} />
        </div>
        <fieldset class="field limits">
          <legend>Limit overrides</legend>
          <p class="hint">Empty: the plan's limit applies.</p>
          {LIMIT_FIELDS.map((field) => (
            <div class="limit" key={field}>
              <label for={`limit-${field}`}>{LIMIT_LABELS[field]}</label>
              <input id={`limit-${field}`} type="number" min={1} step={1} inputMode="numeric" value={limits[field]}
                onInput={(e) => {
                  const value = e.currentTarget.value;
                  setLimits((current) => ({ ...current, [field]: value }));
                }}
                aria-describedby={messageFor(error, `limits.${field}`) ? `limits-${field}-error` : undefined} />
              <FieldError id={`limits-${field}-error`} message={messageFor(error, `limits.${field}`)} />
            </div>
          ))}
          <FieldError id="limits-error" message={messageFor(error, "limits") && !LIMIT_FIELDS.some((f) => messageFor(error, `limits.${f}`)) ? messageFor(error, "limits") : null} />
        </fieldset>
        {!readOnly && (
          <button type="submit" disabled={busy}>
            {submitLabel}
          </button>
        )}
        <p class="status" aria-live="polite">
          {saved}
        </p>
      </fieldset>
    </form>
  );
}
