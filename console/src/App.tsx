// The console's frame: sign-in until a token is accepted, then the navigation and the page
// the hash names. What the token's role does not allow is not offered.

import { useEffect, useState } from "preact/hooks";
import { api, whenUnauthorized, type Session } from "./api";
import { currentToken, forgetToken } from "./session";
import { useRoute } from "./route";
import { SignIn } from "./pages/SignIn";
import { KeysList } from "./pages/KeysList";
import { CreateKey } from "./pages/CreateKey";
import { KeyDetail } from "./pages/KeyDetail";
import { Plans } from "./pages/Plans";
import { TeamUsage } from "./pages/TeamUsage";
import { Tokens } from "./pages/Tokens";

export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [checking, setChecking] = useState(() => currentToken() !== null);
  const [notice, setNotice] = useState<string | null>(null);
  const route = useRoute();

  function signOut(message: string | null) {
    forgetToken();
    setSession(null);
    setNotice(message);
  }

  useEffect(() => {
    whenUnauthorized((message) => signOut(`Signed out: the service refused the token (${message}).`));
    if (currentToken() === null) return;
    api<Session>("GET", "/v1/session")
      .then(setSession)
      .catch(() => forgetToken())
      .finally(() => setChecking(false));
  }, []);

  if (checking) return <p class="loading">Loading…</p>;
  if (!session) return <SignIn notice={notice} onSignedIn={(s) => (setNotice(null), setSession(s))} />;

  const isAdmin = session.role === "admin";
  const links: [string, string, boolean][] = [
    ["#/keys", "Keys", route.page === "keys" || route.page === "key" || route.page === "new-key"],
    ["#/usage", "Team usage", route.page === "usage"],
    ["#/plans", "Plans", route.page === "plans"],
  ];
  if (isAdmin) links.push(["#/tokens", "Tokens", route.page === "tokens"]);

  return (
    <>
      <header class="top">
        <span class="brand">Keygate console</span>
        <nav aria-label="Console">
          {links.map(([href, label, current]) => (
            <a key={href} href={href} aria-current={current ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <span class="who">
          {session.token_name} · {session.role}
          {session.team ? ` · team ${session.team}` : ""}
        </span>
        <button type="button" class="secondary" onClick={() => signOut(null)}>
          Sign out
        </button>
      </header>
      <main>{page()}</main>
    </>
  );

  function page() {
    const s = session as Session;
    switch (route.page) {
      case "new-key":
        return <CreateKey session={s} />;
      case "key":
        return <KeyDetail key={route.id} id={route.id} session={s} />;
      case "plans":
        return <Plans session={s} />;
      case "usage":
        return <TeamUsage session={s} />;
      case "tokens":
        return isAdmin ? <Tokens session={s} /> : <p>Tokens are managed by admin tokens.</p>;
      default:
        return <KeysList session={s} />;
    }
  }
}
