// Plans and their default limits: everyone reads them; admins create, edit and delete them.
// Deleting a plan keys are on is refused (409): the API's message says how many, and the page
// says what to do about it.

import { useState } from "preact/hooks";
import { ApiError } from "../api/client";
import type { CreatePlan, PlanDetails, PlanList, UpdatePlan } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { FieldError, FormError, formMessage, messageFor } from "../components/FieldError";
import { errorMessage, useFetch } from "../lib/fetch";
import { count } from "../lib/format";
import { LIMIT_FIELDS, typedLimits, type LimitField, type TypedLimit } from "../lib/limits";
import { useSession } from "../session";

const LIMIT_NAMES: Record<LimitField, string> = {
  per_minute: "Per minute",
  per_hour: "Per hour",
  per_day: "Per day",
  concurrent: "Concurrent",
  per_month: "Per month",
};

/** What the plan form sends: the limits as typed (limitValue). */
type PlanBody<T> = Omit<T, LimitField> & Record<LimitField, TypedLimit>;

function limitText(value: number | null) {
  return value === null ? "unlimited" : count(value);
}

export function Plans() {
  const { session, api } = useSession();
  const read = useFetch((signal) => api<PlanList>("GET", "/v1/plans", undefined, signal), []);
  const plans = read.data?.plans;
  const [editing, setEditing] = useState<PlanDetails | "new" | null>(null);
  const [deleting, setDeleting] = useState<PlanDetails | null>(null);
  const [deleteError, setDeleteError] = useState<string | null>(null);
  const isAdmin = session.role === "admin";

  async function remove(plan: PlanDetails) {
    setDeleting(null);
    setDeleteError(null);
    try {
      await api<void>("DELETE", `/v1/plans/${plan.name}`);
      read.reload();
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 409) {
        setDeleteError(
          `Plan ${plan.name} was not deleted: ${failure.message}. Move those keys to another plan first (on each key's page, Settings › Plan), then delete it.`,
        );
      } else {
        setDeleteError(errorMessage(failure));
      }
    }
  }

  return (
    <section>
      <div class="title-row">
        <h1>Plans</h1>
        {isAdmin && (
          <button type="button" onClick={() => setEditing("new")}>
            Create plan
          </button>
        )}
      </div>
      {read.error && <p class="form-error" role="alert">{read.error.message}</p>}
      {deleteError && <p class="form-error" role="alert">{deleteError}</p>}
      {editing && (
        <PlanForm plan={editing === "new" ? null : editing} onDone={() => (setEditing(null), read.reload())} onCancel={() => setEditing(null)} />
      )}
      {plans && (
        <table class="plans">
          <thead>
            <tr>
              <th scope="col">Plan</th>
              <th scope="col">Description</th>
              {LIMIT_FIELDS.map((field) => (
                <th scope="col" key={field}>{LIMIT_NAMES[field]}</th>
              ))}
              {isAdmin && <th scope="col"><span class="visually-hidden">Actions</span></th>}
            </tr>
          </thead>
          <tbody>
            {plans.map((plan) => (
              <tr key={plan.name}>
                <th scope="row">{plan.name}</th>
                <td>{plan.description}</td>
                {LIMIT_FIELDS.map((field) => (
                  <td key={field}>{limitText(plan[field])}</td>
                ))}
                {isAdmin && (
                  <td class="row-actions">
                    <button type="button" class="secondary" aria-label={`Edit plan ${plan.name}`} onClick={() => setEditing(plan)}>
                      Edit
                    </button>
                    <button type="button" class="danger" aria-label={`Delete plan ${plan.name}`} onClick={() => setDeleting(plan)}>
                      Delete
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {deleting && (
        <ConfirmDialog title={`Delete plan “${deleting.name}”?`} confirmLabel="Delete" onCancel={() => setDeleting(null)} onConfirm={() => remove(deleting)}>
          <p>The service refuses while keys are on the plan.</p>
        </ConfirmDialog>
      )}
    </section>
  );
}

function PlanForm({ plan, onDone, onCancel }: { plan: PlanDetails | null; onDone: () => void; onCancel: () => void }) {
  const { api } = useSession();
  const [name, setName] = useState(plan?.name ?? "");
  const [description, setDescription] = useState(plan?.description ?? "");
  const [limits, setLimits] = useState(() =>
    Object.fromEntries(LIMIT_FIELDS.map((field) => [field, plan?.[field] == null ? "" : String(plan[field])])) as Record<LimitField, string>,
  );
  const [error, setError] = useState<unknown>(null);

  async function submit(event: Event) {
    event.preventDefault();
    setError(null);
    const values = typedLimits(limits);
    try {
      if (plan) await api<PlanDetails>("PATCH", `/v1/plans/${plan.name}`, { description, ...values } satisfies PlanBody<UpdatePlan>);
      else await api<PlanDetails>("POST", "/v1/plans", { name, description, ...values } satisfies PlanBody<CreatePlan>);
      onDone();
    } catch (failure) {
      setError(failure);
    }
  }

  return (
    <form class="plan-form" onSubmit={submit} noValidate aria-label={plan ? `Edit plan ${plan.name}` : "New plan"}>
      <h2>{plan ? `Edit plan ${plan.name}` : "New plan"}</h2>
      <FormError message={formMessage(error, ["name", "description", ...LIMIT_FIELDS])} />
      {!plan && (
        <div class="field">
          <label for="plan-name">Name</label>
          <input id="plan-name" value={name} onInput={(e) => setName(e.currentTarget.value)} aria-describedby="plan-name-hint" />
          <p class="hint" id="plan-name-hint">1–64 of a–z, 0–9 and -.</p>
          <FieldError id="plan-name-error" message={messageFor(error, "name")} />
        </div>
      )}
      <div class="field">
        <label for="plan-description">Description</label>
        <input id="plan-description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        <FieldError id="plan-description-error" message={messageFor(error, "description")} />
      </div>
      <div class="limits-row">
        {LIMIT_FIELDS.map((field) => (
          <div class="field" key={field}>
            <label for={`plan-${field}`}>{LIMIT_NAMES[field]}</label>
            <input id={`plan-${field}`} type="number" min={1} value={limits[field]} placeholder="unlimited"
              onInput={(e) => {
                const value = e.currentTarget.value;
                setLimits((current) => ({ ...current, [field]: value }));
              }} />
            <FieldError id={`plan-${field}-error`} message={messageFor(error, field)} />
          </div>
        ))}
      </div>
      <div class="actions">
        <button type="submit">{plan ? "Save plan" : "Create plan"}</button>
        <button type="button" class="secondary" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
