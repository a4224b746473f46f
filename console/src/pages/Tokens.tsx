// Management tokens (admin): create one (its secret shown once), list them, revoke one.

import { useState } from "preact/hooks";
import type { CreateToken, Role, Token, TokenList } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { FieldError, FormError, formMessage, messageFor } from "../components/FieldError";
import { SecretOnce } from "../components/SecretOnce";
import { errorMessage, useFetch } from "../lib/fetch";
import { dateTime } from "../lib/format";
import { useSession } from "../session";

export function Tokens() {
  const { api } = useSession();
  const read = useFetch((signal) => api<TokenList>("GET", "/v1/tokens", undefined, signal), []);
  const tokens = read.data?.tokens;
  const [revokeError, setRevokeError] = useState<string | null>(null);
  const [created, setCreated] = useState<Token | null>(null);
  const [revoking, setRevoking] = useState<Token | null>(null);
  const error = read.error?.message ?? revokeError;

  async function revoke(token: Token) {
    setRevoking(null);
    try {
      await api<void>("DELETE", `/v1/tokens/${token.id}`);
      read.reload();
    } catch (failure) {
      setRevokeError(errorMessage(failure));
    }
  }

  return (
    <section>
      <h1>Management tokens</h1>
      {created?.token ? (
        <SecretOnce secret={created.token} what={`token ${created.name}`} onDone={() => setCreated(null)} />
      ) : (
        <NewToken onCreated={(token) => (setCreated(token), read.reload())} />
      )}
      {error && <p class="form-error" role="alert">{error}</p>}
      {tokens && (
        <table class="tokens">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Role</th>
              <th scope="col">Team</th>
              <th scope="col">Token</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Expires</th>
              <th scope="col"><span class="visually-hidden">Actions</span></th>
            </tr>
          </thead>
          <tbody>
            {tokens.map((token) => (
              <tr key={token.id}>
                <th scope="row">{token.name}</th>
                <td>{token.role}</td>
                <td>{token.team ?? "—"}</td>
                <td><code>kgt_…{token.last4}</code></td>
                <td>{dateTime(token.created_at)}</td>
                <td>{dateTime(token.last_used_at)}</td>
                <td>{dateTime(token.expires_at)}</td>
                <td>
                  <button type="button" class="danger" aria-label={`Revoke token ${token.name}`} onClick={() => setRevoking(token)}>
                    Revoke
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {revoking && (
        <ConfirmDialog title={`Revoke token “${revoking.name}”?`} confirmLabel="Revoke" onCancel={() => setRevoking(null)} onConfirm={() => revoke(revoking)}>
          <p>It is refused from its next request on.</p>
        </ConfirmDialog>
      )}
    </section>
  );
}

function NewToken({ onCreated }: { onCreated: (token: Token) => void }) {
  const { session, api } = useSession();
  const [name, setName] = useState("");
  const [role, setRole] = useState<Role>("viewer");
  const [team, setTeam] = useState(session.team ?? "");
  const [expiresAt, setExpiresAt] = useState("");
  const [error, setError] = useState<unknown>(null);

  async function submit(event: Event) {
    event.preventDefault();
    setError(null);
    try {
      const body: CreateToken = { name, role };
      if (team.trim()) body.team = team.trim();
      if (expiresAt) body.expires_at = new Date(expiresAt).toISOString();
      onCreated(await api<Token>("POST", "/v1/tokens", body));
      setName("");
    } catch (failure) {
      setError(failure);
    }
  }

  return (
    <form class="token-form" onSubmit={submit} noValidate aria-label="New token">
      <h2>New token</h2>
      <FormError message={formMessage(error, ["name", "role", "team", "expires_at"])} />
      <div class="field">
        <label for="token-name">Name</label>
        <input id="token-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
        <FieldError id="token-name-error" message={messageFor(error, "name")} />
      </div>
      <div class="field">
        <label for="token-role">Role</label>
        <select id="token-role" value={role} onChange={(e) => setRole(e.currentTarget.value as Role)}>
          <option value="viewer">viewer: reads keys, usage and plans</option>
          <option value="editor">editor: also changes keys</option>
          <option value="admin">admin: also tokens, plans and the audit log</option>
        </select>
        <FieldError id="token-role-error" message={messageFor(error, "role")} />
      </div>
      <div class="field">
        <label for="token-team">Team</label>
        <input id="token-team" value={team} readOnly={session.team !== null} onInput={(e) => setTeam(e.currentTarget.value)} placeholder="none: every team" />
        <FieldError id="token-team-error" message={messageFor(error, "team")} />
      </div>
      <div class="field">
        <label for="token-expiry">Expires</label>
        <input id="token-expiry" type="datetime-local" value={expiresAt} onInput={(e) => setExpiresAt(e.currentTarget.value)} />
        <FieldError id="token-expires-error" message={messageFor(error, "expires_at")} />
      </div>
      <button type="submit">Create token</button>
    </form>
  );
}
