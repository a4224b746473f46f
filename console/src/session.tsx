// The signed-in state, in a context: the management token, who it is (GET /v1/session), and
// the API called with it. The token also lives in sessionStorage: this tab's browser session
// only, gone when it closes or on "Sign out". It is never put in a URL, a cookie or a log.

import { createContext, type ComponentChildren } from "preact";
import { useContext, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, request, type Api } from "./api/client";
import type { Session } from "./api/types";

const TOKEN_ITEM = "keygate.console.token";

function storedToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_ITEM);
  } catch {
    return null;
  }
}

function keepToken(token: string) {
  sessionStorage.setItem(TOKEN_ITEM, token);
}

function forgetToken() {
  try {
    sessionStorage.removeItem(TOKEN_ITEM);
  } catch {
    // Storage that cannot be read kept nothing.
  }
}

/** A signed-in token: who it is, the API called with it, and how to sign out. */
export interface SignedIn {
  session: Session;
  api: Api;
  /** Forgets the token; `notice` is shown on the sign-in page. */
  signOut: (notice: string | null) => void;
}

interface Auth {
  /** Null until a token is accepted. */
  signedIn: SignedIn | null;
  /** A kept token is being checked (a reload of the tab). */
  checking: boolean;
  /** Why the console signed out, for the sign-in page. */
  notice: string | null;
  /** Checks `token` with GET /v1/session and keeps it; rejects with the API's error. */
  signIn: (token: string) => Promise<void>;
}

const AuthContext = createContext<Auth | null>(null);

export function SessionProvider({ children }: { children: ComponentChildren }) {
  const [token, setToken] = useState(storedToken);
  const [session, setSession] = useState<Session | null>(null);
  const [checking, setChecking] = useState(() => token !== null);
  const [notice, setNotice] = useState<string | null>(null);
  // The token in force, for calls that answer after a sign-out or another sign-in.
  const current = useRef(token);

  function signOut(message: string | null) {
    forgetToken();
    current.current = null;
    setToken(null);
    setSession(null);
    setNotice(message);
  }

  const api = useMemo<Api | null>(() => {
    if (token === null) return null;
    return async function <T>(...call: Parameters<Api>): Promise<T> {
      try {
        return await request<T>(token, ...call);
      } catch (failure) {
        // A 401 from any call signs the console out, unless the token changed meanwhile.
        if (failure instanceof ApiError && failure.status === 401 && current.current === token) {
          signOut(`Signed out: the service refused the token (${failure.message}).`);
        }
        throw failure;
      }
    };
  }, [token]);

  // A token kept in the tab (the page was reloaded) is checked once; a sign-in brings its answer.
  useEffect(() => {
    if (api === null) return;
    api<Session>("GET", "/v1/session")
      .then(setSession)
      .catch((failure) => {
        // A 401 has signed out already, with its notice.
        if (failure instanceof ApiError && failure.status === 401) return;
        forgetToken();
        current.current = null;
        setToken(null);
      })
      .finally(() => setChecking(false));
  }, []);

  async function signIn(presented: string) {
    const accepted = await request<Session>(presented, "GET", "/v1/session");
    keepToken(presented);
    current.current = presented;
    setToken(presented);
    setSession(accepted);
    setNotice(null);
  }

  const signedIn = api && session ? { session, api, signOut } : null;
  return <AuthContext.Provider value={{ signedIn, checking, notice, signIn }}>{children}</AuthContext.Provider>;
}

/** The signed-in state and sign-in, for the console's frame and the sign-in page. */
export function useAuth(): Auth {
  const auth = useContext(AuthContext);
  if (!auth) throw new Error("useAuth outside a SessionProvider");
  return auth;
}

/** The signed-in token, for the pages (they are shown only when signed in). */
export function useSession(): SignedIn {
  const signedIn = useAuth().signedIn;
  if (!signedIn) throw new Error("useSession on a page shown without a signed-in token");
  return signedIn;
}
