import createClient, { type Middleware } from "openapi-fetch";

import { ApiError } from "./errors";
import type { paths } from "./schema";
import { authHeaders } from "./token";

type Listener = () => void;
const unauthorizedListeners = new Set<Listener>();

/** Called whenever the API answers 401: the session is over (expired or revoked token). */
export function onUnauthorized(listener: Listener): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

function notifyUnauthorized(): void {
  for (const listener of unauthorizedListeners) listener();
}

const auth: Middleware = {
  onRequest({ request }) {
    for (const [name, value] of Object.entries(authHeaders())) {
      if (!request.headers.has(name)) request.headers.set(name, value);
    }
    return request;
  },
  onResponse({ response }) {
    if (response.status === 401) notifyUnauthorized();
    return response;
  },
};

function origin(): string {
  return typeof window === "undefined" ? "http://localhost" : window.location.origin;
}

/** The typed client of every route in the OpenAPI document (see schema.d.ts). */
// `fetch` is looked up per call, not once at start-up, so that tests can stand in for it.
export const api = createClient<paths>({ baseUrl: origin(), fetch: (request) => globalThis.fetch(request) });
api.use(auth);

type Result<T> = { data?: T; error?: unknown; response: Response };

/** The data of a typed call, or an `ApiError` carrying the server's message. */
export async function unwrap<T>(call: Promise<Result<T>>): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok || error !== undefined) throw ApiError.from(response.status, error);
  return data as T;
}

/**
 * A call to a route the generated types do not list yet (the dedup and anomaly routes are
 * written against their agreed contract, see contract.ts). Same auth and errors as `api`.
 */
export async function request<T>(
  method: "GET" | "POST" | "PATCH" | "DELETE",
  path: string,
  options: { query?: Record<string, string | number | boolean | undefined>; body?: unknown } = {},
): Promise<T> {
  const url = new URL(path, origin());
  for (const [key, value] of Object.entries(options.query ?? {})) {
    if (value !== undefined && value !== "") url.searchParams.set(key, String(value));
  }
  const headers: Record<string, string> = { Accept: "application/json", ...authHeaders() };
  let body: BodyInit | undefined;
  if (options.body instanceof FormData) body = options.body;
  else if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  const response = await fetch(url, { method, headers, body });
  if (response.status === 401) notifyUnauthorized();
  const text = await response.text();
  let parsed: unknown = undefined;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (!response.ok) throw ApiError.from(response.status, parsed);
  return parsed as T;
}

/**
 * POST `body` and return the response unread, for an answer that streams (server-sent events).
 * Same auth and errors as `request`: a failure before the stream begins is an `ApiError`.
 */
export async function postForStream(path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  const response = await fetch(new URL(path, origin()), {
    method: "POST",
    headers: { Accept: "text/event-stream, application/json", "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify(body),
    signal: signal ?? null,
  });
  if (response.status === 401) notifyUnauthorized();
  if (!response.ok) {
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // a plain-text error body is used as it is
    }
    throw ApiError.from(response.status, parsed);
  }
  return response;
}

/** `path` on this server as a full URL (for copying, sharing). */
export function absoluteUrl(path: string): string {
  return new URL(path, origin()).toString();
}
