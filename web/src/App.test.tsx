import { screen } from "@testing-library/react";
import { render } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it } from "vitest";

import { App } from "./App";
import { setToken } from "./api/token";
import { apiError, mockApi } from "./test/api";
import { testClient } from "./test/render";

const collection = {
  id: "C1",
  name: "shop",
  description: "catalogue photos",
  model: "clip-vit-b-32-laion2b",
  model_id: "clip@1",
  vector_name: "clip",
  dim: 512,
  supports_text: true,
  vector_settings: { hnsw_m: 16, hnsw_ef_construct: 100, quantization: "int8" },
  created_at: "2026-01-01T00:00:00Z",
  counts: { records: 2, images: 3, images_embedded: 3 },
};

function renderApp(path: string) {
  window.history.pushState({}, "", path);
  return render(<App client={testClient()} />);
}

afterEach(() => setToken(null));

describe("signing in", () => {
  it("asks for a token, says what is wrong with a bad one, and shows the tenant after", async () => {
    const calls = mockApi({
      "GET /api/me": ({ headers }) =>
        headers.get("Authorization") === "Bearer good-token"
          ? { body: { user: "alice", tenant: "acme", auth: "on" } }
          : apiError(401, "unauthorized", "invalid token: Signature verification failed"),
      "GET /api/collections": () => ({ body: [collection] }),
    });
    const user = userEvent.setup();
    renderApp("/collections");

    expect(await screen.findByRole("heading", { name: "Sign in to Lookalike" })).toBeInTheDocument();
    await user.type(screen.getByLabelText("Access token"), "bad-token");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Signature verification failed");

    await user.clear(screen.getByLabelText("Access token"));
    await user.type(screen.getByLabelText("Access token"), "good-token");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByTestId("tenant")).toHaveTextContent("acme");
    expect(await screen.findByRole("link", { name: "shop" })).toBeInTheDocument();
    expect(screen.getByText("clip-vit-b-32-laion2b")).toBeInTheDocument();
    const listed = calls.find((c) => c.path === "/api/collections");
    expect(listed?.headers.get("Authorization")).toBe("Bearer good-token");
  });

  it("goes straight in, in demo mode, when the server has auth off", async () => {
    mockApi({
      "GET /api/me": () => ({ body: { user: "local", tenant: "default", auth: "off" } }),
      "GET /api/collections": () => ({ body: [] }),
    });
    renderApp("/");
    // "auth off" alone on a phone, where the header has little room.
    expect(await screen.findByText("auth off")).toHaveTextContent("demo mode · auth off");
    expect(await screen.findByRole("heading", { name: "No collections yet" })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Sign out" })).not.toBeInTheDocument();
  });

  it("says so when the server cannot be reached", async () => {
    mockApi({ "GET /api/me": () => apiError(503, "unavailable", "the catalog is down") });
    renderApp("/search");
    expect(await screen.findByText("Cannot reach the server", {}, { timeout: 5000 })).toBeInTheDocument();
    expect(screen.getByText("the catalog is down")).toBeInTheDocument();
  });
});
