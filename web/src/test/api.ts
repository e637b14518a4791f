/** A fake API for component tests: routes answered by handlers, every call recorded. */
import { vi } from "vitest";

export interface Call {
  method: string;
  path: string;
  url: URL;
  headers: Headers;
  body: unknown;
}

type Answer = Response | { status?: number; body?: unknown } | undefined;
type Handler = (call: Call) => Answer | Promise<Answer>;

export function json(body: unknown, status = 200): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

export function apiError(status: number, code: string, message: string): Response {
  return json({ error: { code, message } }, status);
}

async function readBody(body: BodyInit | null | undefined, request?: Request): Promise<unknown> {
  if (request) {
    const text = await request.clone().text();
    if (!text) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  if (typeof body === "string") return JSON.parse(body);
  return body ?? undefined;
}

/** A route key with `:name` segments ("GET /api/images/:id") that matches the request. */
function matchPattern(routes: Record<string, Handler>, method: string, path: string): Handler | undefined {
  for (const [key, handler] of Object.entries(routes)) {
    const [m, pattern] = key.split(" ", 2) as [string, string];
    if (m !== method || !pattern.includes(":")) continue;
    const regex = new RegExp(`^${pattern.replace(/:[a-z_]+/gi, "[^/]+")}$`);
    if (regex.test(path)) return handler;
  }
  return undefined;
}

/** Answer `fetch` from `routes` ("METHOD /path"); unknown routes are a 404 like the server's. */
export function mockApi(routes: Record<string, Handler>): Call[] {
  const calls: Call[] = [];
  vi.stubGlobal("fetch", async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = input instanceof Request ? input : undefined;
    const url = new URL(request ? request.url : input.toString(), window.location.origin);
    const method = (request?.method ?? init?.method ?? "GET").toUpperCase();
    const call: Call = {
      method,
      path: url.pathname,
      url,
      headers: new Headers(request?.headers ?? init?.headers),
      body: await readBody(init?.body, request),
    };
    calls.push(call);
    const handler = routes[`${method} ${url.pathname}`] ?? matchPattern(routes, method, url.pathname);
    if (!handler) return apiError(404, "not_found", "Not Found");
    const answer = await handler(call);
    if (answer instanceof Response) return answer;
    return json(answer?.body, answer?.status ?? 200);
  });
  return calls;
}
