// Usage summed over a team's keys (or, for an admin token of no team, over every key).

import { useState } from "preact/hooks";
import { query, type Session } from "../api";
import { UsagePanel } from "../components/KeyUsage";

export function TeamUsage({ session }: { session: Session }) {
  const everyKey = session.team === null && session.role === "admin";
  const [draft, setDraft] = useState(session.team ?? "");
  const [team, setTeam] = useState(session.team ?? "");
  const title = team ? `Team ${team}` : "Every key";

  return (
    <section>
      <h1>Team usage</h1>
      <form class="filters" onSubmit={(e) => (e.preventDefault(), setTeam(draft.trim()))}>
        <label>
          Team
          <input value={draft} readOnly={session.team !== null} onInput={(e) => setDraft(e.currentTarget.value)}
            placeholder={everyKey ? "every key" : ""} />
        </label>
        <button type="submit" class="secondary">
          Show
        </button>
      </form>
      {!team && !everyKey ? (
        <p>Enter a team: only an admin token of no team reads the total over every key.</p>
      ) : (
        <UsagePanel path={`/v1/usage${query({ team })}`} title={title} />
      )}
    </section>
  );
}
