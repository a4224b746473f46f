// Hash routes (#/keys, #/keys/new, #/keys/key_…, #/plans, #/usage, #/tokens, #/teams,
// #/teams/NAME, #/webhooks, #/proxies): deep links work without server routes, and no route
// ever carries a secret.

import { useEffect, useState } from "preact/hooks";

export type Route =
  | { page: "keys" }
  | { page: "new-key" }
  | { page: "key"; id: string }
  | { page: "plans" }
  | { page: "usage" }
  | { page: "tokens" }
  | { page: "teams" }
  | { page: "team"; name: string }
  | { page: "webhooks" }
  | { page: "proxies" };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "");
  if (path === "/keys/new") return { page: "new-key" };
  const key = /^\/keys\/(key_[A-Za-z0-9]+)$/.exec(path);
  if (key) return { page: "key", id: key[1] };
  if (path === "/plans") return { page: "plans" };
  if (path === "/usage") return { page: "usage" };
  if (path === "/tokens") return { page: "tokens" };
  if (path === "/teams") return { page: "teams" };
  if (path === "/webhooks") return { page: "webhooks" };
  if (path === "/proxies") return { page: "proxies" };
  const team = /^\/teams\/([^/]+)$/.exec(path);
  if (team) {
    try {
      return { page: "team", name: decodeURIComponent(team[1]) };
    } catch {
      return { page: "teams" };
    }
  }
  return { page: "keys" };
}

export function go(path: string) {
  location.hash = path;
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const changed = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}
