import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";

import { CollectionProvider } from "@/lib/collection";
import { answer, answerEvents, eventStream, source, sse } from "@/test/ask";
import { apiError, mockApi, type Call } from "@/test/api";
import { renderWithProviders } from "@/test/render";

import { AskPage } from "./Ask";

const PNG = new Uint8Array([137, 80, 78, 71]);

function routes(ask: (call: Call) => Response) {
  return mockApi({
    "GET /api/collections": () => ({ body: [{ id: "C1", name: "docs", model: "clip", supports_text: true, counts: {} }] }),
    "POST /api/ask": ask,
    "GET /api/images/:id": ({ path }) => ({
      body: { id: path.split("/")[3], width: 1000, height: 2000, original_url: `${path}/original`, status: "embedded" },
    }),
    "GET /api/images/:id/thumbnail": () => new Response(PNG, { headers: { "Content-Type": "image/png" } }),
    "GET /api/images/:id/original": () => new Response(PNG, { headers: { "Content-Type": "image/png" } }),
  });
}

async function ask(question = "How long is the Zephyr bridge?") {
  renderWithProviders(
    <CollectionProvider>
      <AskPage />
    </CollectionProvider>,
  );
  const box = await screen.findByRole("textbox", { name: "Question" });
  await waitFor(() => expect(box).toBeEnabled());
  await userEvent.type(box, `${question}{Enter}`);
}

describe("AskPage", () => {
  it("streams the answer, lists the sources and opens a cited page with its words highlighted", async () => {
    const calls = routes(() => eventStream(answerEvents()));
    await ask();
    const answerText = await screen.findByTestId("answer");
    await waitFor(() => expect(answerText).toHaveTextContent("It is 412 metres long 1."));
    expect(calls.find((c) => c.path === "/api/ask")!.body).toMatchObject({ collection: "C1", stream: true });

    const sources = screen.getByRole("list", { name: "Sources" });
    expect(within(sources).getAllByTestId("ask-source")).toHaveLength(2);
    expect(within(sources).getByText("bridges")).toBeInTheDocument();
    expect(within(sources).getByText("not shown to the model")).toBeInTheDocument();
    expect(await screen.findByTestId("citation")).toHaveTextContent("412 metres long");

    await userEvent.click(screen.getByRole("button", { name: "Open Source 1: bridges, page 1" }));
    const dialog = await screen.findByRole("dialog", { name: "[1] bridges · page 1" });
    const highlights = await within(dialog).findAllByTestId("highlight");
    // [100, 200, 300, 240] on a 1000 x 2000 page.
    expect(highlights).toHaveLength(2);
    expect(highlights[0]).toHaveStyle({ left: "10%", top: "10%", width: "20%", height: "2%" });
    expect(within(dialog).getByTestId("supporting-text")).toHaveTextContent("The Zephyr bridge opened in 1987 and is 412 metres long.");
  });

  it("names the model that cannot be reached", async () => {
    routes(() => apiError(503, "llm_unavailable", "the chat model gemma-3-270m at http://llm:8080/v1 cannot be reached"));
    await ask();
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("The chat model cannot answer");
    expect(alert).toHaveTextContent("gemma-3-270m");
  });

  it("keeps the partial answer when the model fails half-way", async () => {
    routes(() =>
      eventStream([
        sse("sources", { sources: [source(1)], mode: "hybrid" }),
        sse("delta", { text: "It is 412" }),
        sse("error", { error: { code: "llm_failed", message: "the model stopped answering" } }),
      ]),
    );
    await ask();
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("The answer stopped half-way");
    expect(alert).toHaveTextContent("the model stopped answering");
    expect(screen.getByTestId("answer")).toHaveTextContent("It is 412");
  });

  it("shows the sources and the note when no model is configured", async () => {
    const note = "no chat model is configured (set LOOKALIKE_LLM_URL and LOOKALIKE_LLM_MODEL): here are the sources";
    const whole = answer({ answer: null, model: null, citations: [], notes: [note] });
    routes(() => eventStream([sse("sources", { sources: whole.sources, mode: "hybrid" }), sse("done", whole)]));
    await ask();
    expect(await screen.findByText(note)).toBeInTheDocument();
    expect(screen.getByText(/No answer: no chat model is configured/)).toBeInTheDocument();
    expect(screen.getAllByTestId("ask-source")).toHaveLength(2);
  });

  it("stops an answer being written", async () => {
    let aborted = false;
    routes(() => {
      const encoder = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(encoder.encode(sse("sources", { sources: [source(1)], mode: "hybrid" }) + sse("delta", { text: "It is" })));
        },
        cancel() {
          aborted = true;
        },
      });
      return new Response(body, { headers: { "Content-Type": "text/event-stream" } });
    });
    await ask();
    await waitFor(() => expect(screen.getByTestId("answer")).toHaveTextContent("It is"));
    await userEvent.click(screen.getByRole("button", { name: "Stop" }));
    expect(await screen.findByText("stopped")).toBeInTheDocument();
    expect(screen.getByTestId("answer")).toHaveTextContent("It is");
    expect(screen.getByRole("button", { name: "Ask" })).toBeInTheDocument();
    expect(aborted).toBe(true);
  });
});
