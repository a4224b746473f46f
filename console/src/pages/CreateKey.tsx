// Create a key; its secret is shown once.

import { useEffect, useState } from "preact/hooks";
import { api, type Key, type Plan, type Scope, type Session } from "../api";
import { KeyForm } from "../components/KeyForm";
import { SecretOnce } from "../components/SecretOnce";
import { go } from "../route";

export function useCatalogue() {
  const [scopes, setScopes] = useState<Scope[] | null>(null);
  const [plans, setPlans] = useState<Plan[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api<{ scopes: Scope[] }>("GET", "/v1/scopes")
      .then((read) => setScopes(read.scopes))
      .catch((failure: Error) => setError(failure.message));
    api<{ plans: Plan[] }>("GET", "/v1/plans")
      .then((read) => setPlans(read.plans))
      .catch((failure: Error) => setError(failure.message));
  }, []);
  return { scopes, plans, error };
}

export function CreateKey({ session }: { session: Session }) {
  const { scopes, plans, error } = useCatalogue();
  const [created, setCreated] = useState<Key | null>(null);

  if (session.role === "viewer") {
    return <p>Your token's role ({session.role}) cannot create keys.</p>;
  }
  if (created?.key) {
    return (
      <section>
        <h1>Key {created.name} created</h1>
        <SecretOnce secret={created.key} what="API key" onDone={() => go(`/keys/${created.id}`)} />
      </section>
    );
  }
  return (
    <section>
      <h1>Create key</h1>
      {error && <p class="form-error" role="alert">{error}</p>}
      {scopes && plans ? (
        <KeyForm mode="create" session={session} scopes={scopes} plans={plans} readOnly={false} submitLabel="Create key"
          onSubmit={async (body) => setCreated(await api<Key>("POST", "/v1/keys", body))} />
      ) : (
        !error && <p class="loading">Loading…</p>
      )}
    </section>
  );
}
