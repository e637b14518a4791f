/** The bearer token of this browser's session, kept in localStorage across reloads. */
const KEY = "lookalike.token";

let current: string | null = read();

function read(): string | null {
  try {
    return window.localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function getToken(): string | null {
  return current;
}

export function setToken(token: string | null): void {
  current = token;
  try {
    if (token) window.localStorage.setItem(KEY, token);
    else window.localStorage.removeItem(KEY);
  } catch {
    // Private mode without storage: the session lasts until the tab closes.
  }
}

export function authHeaders(token: string | null = current): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}
