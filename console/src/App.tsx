// The console's frame: sign-in until a token is accepted, then the navigation and the page
// the hash names. What the token's role does not allow is not offered.

import { useRoute } from "./lib/route";
import { CreateKey } from "./pages/CreateKey";
import { KeyDetail } from "./pages/KeyDetail";
import { KeysList } from "./pages/KeysList";
import { Plans } from "./pages/Plans";
import { Proxies } from "./pages/Proxies";
import { TeamDetail } from "./pages/TeamDetail";
import { Teams } from "./pages/Teams";
import { Webhooks } from "./pages/Webhooks";
import { SignIn } from "./pages/SignIn";
import { TeamUsage } from "./pages/TeamUsage";
import { Tokens } from "./pages/Tokens";
import { useAuth } from "./session";

export function App() {
  const { signedIn, checking } = useAuth();
  const route = useRoute();

  if (checking) return <p class="loading">Loading…</p>;
  if (!signedIn) return <SignIn />;

  const { session, signOut } = signedIn;
  const isAdmin = session.role === "admin";
  const links: [string, string, boolean][] = [
    ["#/keys", "Keys", route.page === "keys" || route.page === "key" || route.page === "new-key"],
    ["#/usage", "Team usage", route.page === "usage"],
    ["#/plans", "Plans", route.page === "plans"],
    ["#/teams", "Teams", route.page === "teams" || route.page === "team"],
    ["#/webhooks", "Webhooks", route.page === "webhooks"],
  ];
  // The fleet is the operator's: tokens of a team do not see it.
  if (session.team === null) links.push(["#/proxies", "Proxies", route.page === "proxies"]);
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
    switch (route.page) {
      case "new-key":
        return <CreateKey />;
      case "key":
        return <KeyDetail key={route.id} id={route.id} />;
      case "plans":
        return <Plans />;
      case "usage":
        return <TeamUsage />;
      case "teams":
        return <Teams />;
      case "team":
        return <TeamDetail key={route.name} name={route.name} />;
      case "webhooks":
        return <Webhooks />;
      case "proxies":
        return session.team === null ? <Proxies /> : <p>Proxies are seen by tokens of no team.</p>;
      case "tokens":
        return isAdmin ? <Tokens /> : <p>Tokens are managed by admin tokens.</p>;
      default:
        return <KeysList />;
    }
  }
}
