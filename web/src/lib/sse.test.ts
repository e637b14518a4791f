import { describe, expect, it } from "vitest";

import { readEvents, SseParser, type ServerEvent } from "./sse";

const STREAM =
  'event: sources\ndata: {"sources": [], "mode": "hybrid"}\n\n' +
  'event: delta\ndata: {"text": "Le pont Zéphyr mesure 412 m 🌉 [1]"}\n\n' +
  ": keep-alive comment\n\n" +
  'event: delta\r\ndata: {"text": " long."}\r\n\r\n' +
  'event: done\ndata: {"answer": "ok"}\n\n';

const EXPECTED: ServerEvent[] = [
  { event: "sources", data: '{"sources": [], "mode": "hybrid"}' },
  { event: "delta", data: '{"text": "Le pont Zéphyr mesure 412 m 🌉 [1]"}' },
  { event: "delta", data: '{"text": " long."}' },
  { event: "done", data: '{"answer": "ok"}' },
];

/** A response body that delivers `bytes` in the given pieces. */
function body(bytes: Uint8Array, cuts: number[]): ReadableStream<Uint8Array> {
  const bounds = [0, ...cuts, bytes.length];
  return new ReadableStream({
    start(controller) {
      for (let i = 0; i + 1 < bounds.length; i++) controller.enqueue(bytes.slice(bounds[i], bounds[i + 1]));
      controller.close();
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<ServerEvent[]> {
  const out: ServerEvent[] = [];
  for await (const event of readEvents(stream)) out.push(event);
  return out;
}

describe("readEvents", () => {
  it("reads the same events wherever the bytes are cut, inside a line or a character", async () => {
    const bytes = new TextEncoder().encode(STREAM);
    for (let cut = 1; cut < bytes.length; cut++) {
      expect(await collect(body(bytes, [cut]))).toEqual(EXPECTED);
    }
    // And one byte at a time.
    expect(await collect(body(bytes, Array.from({ length: bytes.length - 1 }, (_, i) => i + 1)))).toEqual(EXPECTED);
  });

  it("drops an event the stream ends in the middle of", async () => {
    const bytes = new TextEncoder().encode('event: delta\ndata: {"text": "a"}\n\nevent: delta\ndata: {"te');
    expect(await collect(body(bytes, []))).toEqual([{ event: "delta", data: '{"text": "a"}' }]);
  });
});

describe("SseParser", () => {
  it("joins the data lines of one event with newlines", () => {
    const parser = new SseParser();
    expect(parser.push("event: delta\ndata: first\ndata:second\ndata\n")).toEqual([]);
    expect(parser.push("\n")).toEqual([{ event: "delta", data: "first\nsecond\n" }]);
  });

  it("reads an error event, and names an event without a name 'message'", () => {
    const parser = new SseParser();
    const events = parser.push(
      'event: error\ndata: {"error": {"code": "llm_unavailable", "message": "the model went away"}}\n\ndata: plain\n\n',
    );
    expect(events).toEqual([
      { event: "error", data: '{"error": {"code": "llm_unavailable", "message": "the model went away"}}' },
      { event: "message", data: "plain" },
    ]);
    expect(JSON.parse(events[0]!.data).error.message).toBe("the model went away");
  });

  it("waits for the rest of a CRLF split between two chunks", () => {
    const parser = new SseParser();
    expect(parser.push("data: a\r")).toEqual([]);
    expect(parser.push("\n\r")).toEqual([]);
    expect(parser.push("\n")).toEqual([{ event: "message", data: "a" }]);
  });
});
