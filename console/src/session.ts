// The management token lives in sessionStorage: this tab's browser session only, gone when
// it closes or on "Sign out". It is never put in a URL, a cookie or a log.

const TOKEN_ITEM = "keygate.console.token";

export function currentToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_ITEM);
  } catch {
    return null;
  }
}

export function keepToken(token: string) {
  sessionStorage.setItem(TOKEN_ITEM, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_ITEM);
}
