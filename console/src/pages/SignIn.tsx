// Sign in with a management token: checked against GET /v1/session before it is kept.

import { useState } from "preact/hooks";
import { ApiError } from "../api/client";
import { useAuth } from "../session";
import { errorMessage } from "../lib/fetch";

export function SignIn() {
  const { notice, signIn } = useAuth();
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    const presented = token.trim();
    if (!presented) {
      setError("Enter a management token.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await signIn(presented);
      setToken("");
    } catch (failure) {
      setError(
        failure instanceof ApiError && failure.status === 401
          ? "Sign-in failed: the service does not accept this token (wrong, revoked or expired)."
          : errorMessage(failure),
      );
    } finally {
      setBusy(false);
    }
  }

  return (
    <main class="sign-in">
      <h1>Keygate console</h1>
      {notice && <p class="notice">{notice}</p>}
      <form onSubmit={submit} noValidate>
        <label for="token">Management token</label>
        <input id="token" type="password" autocomplete="off" spellcheck={false} value={token}
          onInput={(e) => setToken(e.currentTarget.value)} aria-invalid={error ? true : undefined}
          aria-describedby={error ? "token-error" : "token-hint"} />
        <p class="hint" id="token-hint">
          A token from <code>keygate-control tokens create</code> (or the service's admin token). It is kept in this
          browser tab's session only.
        </p>
        {error && (
          <p class="field-error" id="token-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}
