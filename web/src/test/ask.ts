/** Answers of POST /api/ask for component tests: sources, citations, and a streamed reply. */
import type { AskResponse, AskSource, Citation } from "@/api/types";

export function source(number: number, overrides: Partial<AskSource> = {}): AskSource {
  return {
    number,
    image_id: `IMG${number}`,
    preview_url: `/api/images/IMG${number}/thumbnail`,
    record_id: `REC${number}`,
    name: number === 1 ? "bridges" : `doc ${number}`,
    description: "",
    page: 1,
    score: 0.9 - number / 10,
    matched: ["keyword"],
    text: "Bridges survey\nThe Zephyr bridge opened in 1987 and is 412 metres long.",
    in_prompt: true,
    ...overrides,
  };
}

export const citation: Citation = {
  source: 1,
  image_id: "IMG1",
  preview_url: "/api/images/IMG1/thumbnail",
  record_id: "REC1",
  name: "bridges",
  page: 1,
  text: "The Zephyr bridge opened in 1987 and is 412 metres long.",
  boxes: [
    [100, 200, 300, 240],
    [320, 200, 500, 240],
  ],
  cited_by_model: true,
};

export function answer(overrides: Partial<AskResponse> = {}): AskResponse {
  return {
    question: "How long is the Zephyr bridge?",
    answer: "It is 412 metres long [1].",
    model: "gemma-3-270m",
    citations: [citation],
    sources: [source(1), source(2, { in_prompt: false, page: null })],
    mode: "hybrid",
    notes: [],
    ...overrides,
  };
}

export function sse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** A text/event-stream response whose body is `chunks`, each sent when the previous is read. */
export function eventStream(chunks: string[]): Response {
  const encoder = new TextEncoder();
  let i = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(encoder.encode(chunks[i++]));
      else controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
}

/** The events of a whole answer: the sources, the text in pieces, then the answer itself. */
export function answerEvents(whole: AskResponse = answer(), pieces = ["It is 412 ", "metres long [1]."]): string[] {
  return [sse("sources", { sources: whole.sources, mode: whole.mode }), ...pieces.map((text) => sse("delta", { text })), sse("done", whole)];
}
