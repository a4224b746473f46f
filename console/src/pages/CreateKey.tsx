// Create a key; its secret is shown once.

import { useState } from "preact/hooks";
import type { Key } from "../api/types";
import { KeyForm } from "../components/KeyForm";
import { SecretOnce } from "../components/SecretOnce";
import { useCatalogue } from "../lib/catalogue";
import { go } from "../lib/route";
import { useSession } from "../session";

export function CreateKey() {
  const { session, api } = useSession();
  const catalogue = useCatalogue();
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
      {catalogue.error && <p class="form-error" role="alert">{catalogue.error.message}</p>}
      {catalogue.data ? (
        <KeyForm mode="create" scopes={catalogue.data.scopes} plans={catalogue.data.plans} readOnly={false} submitLabel="Create key"
          onSubmit={async (body) => setCreated(await api<Key>("POST", "/v1/keys", body))} />
      ) : (
        !catalogue.error && <p class="loading">Loading…</p>
      )}
    </section>
  );
}
