/** An API answer that was not a success, with the server's `{"error": {code, message}}`. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }

  /** From a failed response's status and (parsed) body, whatever its shape. */
  static from(status: number, body: unknown): ApiError {
    if (body && typeof body === "object" && "error" in body) {
      const error = (body as { error: unknown }).error;
      if (error && typeof error === "object") {
        const { code, message } = error as { code?: unknown; message?: unknown };
        return new ApiError(
          status,
          typeof code === "string" ? code : "error",
          typeof message === "string" && message ? message : `request failed (${status})`,
        );
      }
    }
    if (typeof body === "string" && body.trim()) {
      return new ApiError(status, "error", body.trim().slice(0, 300));
    }
    return new ApiError(status, "error", `request failed (${status})`);
  }
}

/** A message fit for a toast, whatever was thrown. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof TypeError) return "The server cannot be reached. Is `lookalike serve` running?";
  if (error instanceof Error) return error.message;
  return String(error);
}

/** The server answered that the route itself does not exist (an older server). */
export function isMissingRoute(error: unknown): boolean {
  return error instanceof ApiError && (error.status === 404 || error.status === 405) && /^(not found|method not allowed)$/i.test(error.message);
}

/** The thing asked for does not exist (as opposed to the route: see `isMissingRoute`). */
export function isNotFound(error: unknown): boolean {
  return error instanceof ApiError && error.status === 404 && !isMissingRoute(error);
}

/** Whether asking again could answer differently: not for a 4xx (a missing image stays missing),
 * except a timeout or a rate limit. */
export function isRetryable(error: unknown): boolean {
  if (!(error instanceof ApiError)) return true;
  return error.status >= 500 || error.status === 408 || error.status === 429;
}
