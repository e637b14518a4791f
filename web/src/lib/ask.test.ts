import { describe, expect, it } from "vitest";

import { ApiError } from "@/api/errors";
import type { AskResponse, AskSource } from "@/api/types";
import { answer, answerEvents, eventStream, sse, source } from "@/test/ask";
import { apiError, json, mockApi } from "@/test/api";

import { askStream, scaleBox, splitCitations } from "./ask";

describe("splitCitations", () => {
  it("finds single and grouped markers, and leaves other brackets as text", () => {
    expect(splitCitations("Opened in 1987 [1] and 412 m long [2, 3]. See [a] or [].")).toEqual([
      { kind: "text", text: "Opened in 1987 " },
      { kind: "cite", text: "[1]", sources: [1] },
      { kind: "text", text: " and 412 m long " },
      { kind: "cite", text: "[2, 3]", sources: [2, 3] },
      { kind: "text", text: ". See [a] or []." },
    ]);
    expect(splitCitations("[4]")).toEqual([{ kind: "cite", text: "[4]", sources: [4] }]);
  });
});

describe("scaleBox", () => {
  it("scales a box from the original pixels to the size shown", () => {
    const original = { width: 1700, height: 2200 };
    expect(scaleBox([170, 440, 850, 550], original, { width: 850, height: 1100 })).toEqual({ left: 85, top: 220, width: 340, height: 55 });
    // As percentages of the image: the size shown is 100 x 100.
    expect(scaleBox([170, 440, 850, 550], original, { width: 100, height: 100 })).toEqual({ left: 10, top: 20, width: 40, height: 5 });
  });

  it("keeps a box that runs off the image on it", () => {
    expect(scaleBox([-10, 90, 120, 130], { width: 100, height: 100 }, { width: 200, height: 200 })).toEqual({ left: 0, top: 180, width: 200, height: 20 });
  });
});

describe("askStream", () => {
  function record() {
    const seen: { sources: AskSource[][]; deltas: string[]; done: AskResponse[] } = { sources: [], deltas: [], done: [] };
    const handlers = {
      onSources: (s: AskSource[]) => seen.sources.push(s),
      onDelta: (t: string) => seen.deltas.push(t),
      onDone: (r: AskResponse) => seen.done.push(r),
    };
    return { seen, handlers };
  }

  it("sends the question with stream on, and reports the sources, the pieces and the answer", async () => {
    const calls = mockApi({ "POST /api/ask": () => eventStream(answerEvents()) });
    const { seen, handlers } = record();
    await askStream({ question: "How long is the Zephyr bridge?", collection: "C1" }, handlers);
    expect(calls[0]!.body).toEqual({ question: "How long is the Zephyr bridge?", collection: "C1", stream: true });
    expect(seen.sources[0]!.map((s) => s.number)).toEqual([1, 2]);
    expect(seen.deltas).toEqual(["It is 412 ", "metres long [1]."]);
    expect(seen.done[0]!.citations[0]!.text).toMatch(/412 metres/);
  });

  it("throws the server's message when the model is down before the answer begins", async () => {
    mockApi({ "POST /api/ask": () => apiError(503, "llm_unavailable", "the chat model gemma-3-270m cannot be reached") });
    const error = await askStream({ question: "q", collection: "C1" }, record().handlers).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 503, code: "llm_unavailable", message: "the chat model gemma-3-270m cannot be reached" });
  });

  it("throws an error event after the pieces that came before it", async () => {
    mockApi({
      "POST /api/ask": () =>
        eventStream([
          sse("sources", { sources: [source(1)], mode: "hybrid" }),
          sse("delta", { text: "It is" }),
          sse("error", { error: { code: "llm_unavailable", message: "the model stopped answering" } }),
        ]),
    });
    const { seen, handlers } = record();
    const error = await askStream({ question: "q", collection: "C1" }, handlers).catch((e: unknown) => e);
    expect(seen.deltas).toEqual(["It is"]);
    expect(seen.done).toEqual([]);
    expect(error).toMatchObject({ code: "llm_unavailable", message: "the model stopped answering" });
  });

  it("takes an answer that came in one piece", async () => {
    mockApi({ "POST /api/ask": () => json(answer({ answer: null, model: null, citations: [] })) });
    const { seen, handlers } = record();
    await askStream({ question: "q", collection: "C1" }, handlers);
    expect(seen.sources).toHaveLength(1);
    expect(seen.done[0]!.answer).toBeNull();
  });
});
