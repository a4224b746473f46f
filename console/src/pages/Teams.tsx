// Teams: everyone sees the teams they may (a team token: its own) with their plan and the use of
// the quotas their keys share; an admin of no team creates them. A team's page is TeamDetail.

import { useState } from "preact/hooks";
import type { CreateTeam, PlanList, Team, TeamList } from "../api/types";
import { FieldError, FormError, formMessage, messageFor } from "../components/FieldError";
import { quotaUse, teamHash } from "../lib/alerts";
import { useFetch } from "../lib/fetch";
import { limitValue, type TypedLimit } from "../lib/limits";
import { go } from "../lib/route";
import { useSession } from "../session";

/** Whether the session may create and change teams: an admin token of no team. */
export function isOperator(session: { role: string; team?: string | null }): boolean {
  return session.role === "admin" && !session.team;
}

export function Teams() {
  const { session, api } = useSession();
  const read = useFetch((signal) => api<TeamList>("GET", "/v1/teams", undefined, signal), []);
  const [creating, setCreating] = useState(false);
  const teams = read.data?.teams;
  return (
    <section>
      <div class="title-row">
        <h1>Teams</h1>
        {isOperator(session) && (
          <button type="button" onClick={() => setCreating(true)}>
            Create team
          </button>
        )}
      </div>
      <p class="hint">A team's daily and monthly quotas are shared by all its keys: once its keys together reach one, every key of the team is refused (429 QUOTA_EXCEEDED) until the UTC reset.</p>
      {read.error && <p class="form-error" role="alert">{read.error.message}</p>}
      {creating && <TeamForm onCancel={() => setCreating(false)} onDone={(team) => go(teamHash(team.name).slice(1))} />}
      {teams && teams.length === 0 && <p>No teams yet. A key or token naming a team creates it.</p>}
      {teams && teams.length > 0 && (
        <table class="teams">
          <thead>
            <tr>
              <th scope="col">Team</th>
              <th scope="col">Plan</th>
              <th scope="col">Keys</th>
              <th scope="col">Today</th>
              <th scope="col">This month</th>
            </tr>
          </thead>
          <tbody>
            {teams.map((team) => (
              <tr key={team.name}>
                <th scope="row">
                  <a href={teamHash(team.name)}>{team.name}</a>
                </th>
                <td>{team.plan ?? "—"}</td>
                <td>{team.key_count}</td>
                <td>{quotaUse(team.usage.today, team.usage.per_day)}</td>
                <td>{quotaUse(team.usage.this_month, team.usage.per_month)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** What the team forms send: the quotas as typed (limitValue). */
type QuotaBody<T> = Omit<T, "per_day" | "per_month"> & { per_day?: TypedLimit; per_month?: TypedLimit };

/** Creates a team (no `team`) or changes one's plan and quotas. */
export function TeamForm({ team, onDone, onCancel }: { team?: Team; onDone: (team: Team) => void; onCancel: () => void }) {
  const { api } = useSession();
  const plans = useFetch((signal) => api<PlanList>("GET", "/v1/plans", undefined, signal), []);
  const [name, setName] = useState("");
  const [plan, setPlan] = useState(team?.plan ?? "");
  const [perDay, setPerDay] = useState(team?.per_day == null ? "" : String(team.per_day));
  const [perMonth, setPerMonth] = useState(team?.per_month == null ? "" : String(team.per_month));
  const [error, setError] = useState<unknown>(null);

  async function submit(event: Event) {
    event.preventDefault();
    setError(null);
    const fields = { plan: plan === "" ? null : plan, per_day: limitValue(perDay), per_month: limitValue(perMonth) };
    try {
      const saved = team
        ? await api<Team>("PATCH", `/v1/teams/${encodeURIComponent(team.name)}`, fields)
        : await api<Team>("POST", "/v1/teams", { name, ...fields } satisfies QuotaBody<CreateTeam>);
      onDone(saved);
    } catch (failure) {
      setError(failure);
    }
  }

  return (
    <form class="plan-form" onSubmit={submit} noValidate aria-label={team ? `Edit team ${team.name}` : "New team"}>
      <h2>{team ? `Plan and quotas of ${team.name}` : "New team"}</h2>
      <FormError message={formMessage(error, ["name", "plan", "per_day", "per_month"])} />
      {!team && (
        <div class="field">
          <label for="team-name">Name</label>
          <input id="team-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
          <FieldError id="team-name-error" message={messageFor(error, "name")} />
        </div>
      )}
      <div class="limits-row">
        <div class="field">
          <label for="team-plan">Plan</label>
          <select id="team-plan" value={plan} onChange={(e) => setPlan(e.currentTarget.value)}>
            <option value="">No plan</option>
            {plans.data?.plans.map((option) => (
              <option key={option.name} value={option.name}>
                {option.name}
              </option>
            ))}
          </select>
          <FieldError id="team-plan-error" message={messageFor(error, "plan")} />
        </div>
        <div class="field">
          <label for="team-per-day">Daily quota</label>
          <input id="team-per-day" type="number" min={1} value={perDay} placeholder="the plan's" onInput={(e) => setPerDay(e.currentTarget.value)} />
          <FieldError id="team-per-day-error" message={messageFor(error, "per_day")} />
        </div>
        <div class="field">
          <label for="team-per-month">Monthly quota</label>
          <input id="team-per-month" type="number" min={1} value={perMonth} placeholder="the plan's" onInput={(e) => setPerMonth(e.currentTarget.value)} />
          <FieldError id="team-per-month-error" message={messageFor(error, "per_month")} />
        </div>
      </div>
      <p class="hint">An empty quota means the plan's (or none without a plan); all of the team's keys share it.</p>
      <div class="actions">
        <button type="submit">{team ? "Save team" : "Create team"}</button>
        <button type="button" class="secondary" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
