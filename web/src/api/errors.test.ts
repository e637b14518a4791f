import { describe, expect, it } from "vitest";

import { ApiError, errorMessage, isMissingRoute, isRetryable } from "./errors";

describe("ApiError.from", () => {
  it("reads the server's error envelope", () => {
    const error = ApiError.from(409, { error: { code: "conflict", message: "a collection named 'shop' exists already" } });
    expect(error.status).toBe(409);
    expect(error.code).toBe("conflict");
    expect(errorMessage(error)).toBe("a collection named 'shop' exists already");
  });

  it("falls back on a plain-text body, then on the status", () => {
    expect(ApiError.from(502, "Bad gateway\n").message).toBe("Bad gateway");
    expect(ApiError.from(500, null).message).toBe("request failed (500)");
    expect(ApiError.from(400, { detail: "x" }).code).toBe("error");
  });

  it("tells a missing route from a missing thing", () => {
    expect(isMissingRoute(ApiError.from(404, { error: { code: "not_found", message: "Not Found" } }))).toBe(true);
    expect(isMissingRoute(ApiError.from(404, { error: { code: "not_found", message: "no collection 'x'" } }))).toBe(false);
  });

  it("offers a retry only where asking again could help", () => {
    expect(isRetryable(ApiError.from(404, { error: { code: "image_not_found", message: "no image 'x'" } }))).toBe(false);
    expect(isRetryable(ApiError.from(422, null))).toBe(false);
    expect(isRetryable(ApiError.from(429, null))).toBe(true);
    expect(isRetryable(ApiError.from(503, null))).toBe(true);
    expect(isRetryable(new TypeError("Failed to fetch"))).toBe(true);
  });

  it("explains a network failure", () => {
    expect(errorMessage(new TypeError("Failed to fetch"))).toMatch(/cannot be reached/);
  });
});
