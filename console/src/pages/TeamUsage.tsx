// Usage summed over teams' keys: a chart and totals per team named (a team token: its own),
// or, for an admin token of no team, over every key.

import { useState } from "preact/hooks";
import { query } from "../api/client";
import { UsagePanel } from "../components/KeyUsage";
import { useSession } from "../session";

function teamList(text: string): string[] {
  return [...new Set(text.split(",").map((team) => team.trim()).filter((team) => team !== ""))];
}

export function TeamUsage() {
  const { session } = useSession();
  const everyKey = session.team === null && session.role === "admin";
  const [draft, setDraft] = useState(session.team ?? "");
  const [teams, setTeams] = useState<string[]>(session.team ? [session.team] : []);

  return (
    <section>
      <h1>Team usage</h1>
      <form class="filters" onSubmit={(e) => (e.preventDefault(), setTeams(teamList(draft)))}>
        <label>
          Teams
          <input value={draft} readOnly={session.team !== null} onInput={(e) => setDraft(e.currentTarget.value)}
            placeholder={everyKey ? "every key" : "payments, search"} aria-describedby="teams-hint" />
        </label>
        <button type="submit" class="secondary">
          Show
        </button>
      </form>
      <p class="hint" id="teams-hint">
        {session.team ? "Your token belongs to this team." : "Comma-separated; a chart and totals per team."}
      </p>
      {teams.length === 0 &&
        (everyKey ? (
          <UsagePanel path="/v1/usage" title="Every key" />
        ) : (
          <p>Name a team: only an admin token of no team reads the total over every key.</p>
        ))}
      {teams.map((team) => (
        <UsagePanel key={team} path={`/v1/usage${query({ team })}`} title={`Team ${team}`} />
      ))}
    </section>
  );
}
