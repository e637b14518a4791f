/**
 * Server-sent events read from a fetch response. The answer of POST /api/ask streams as SSE, and
 * EventSource can only GET, so the body is read here: bytes arrive in chunks cut anywhere (in
 * the middle of a line, of a character), and an event ends at a blank line.
 */

export interface ServerEvent {
  /** The `event:` field; "message" when the block has none. */
  event: string;
  /** The `data:` lines, joined by "\n". */
  data: string;
}

/** Feed text as it arrives; each call returns the events its blank lines completed. */
export class SseParser {
  private buffer = "";
  private event = "";
  private data: string[] = [];

  push(text: string): ServerEvent[] {
    this.buffer += text;
    const out: ServerEvent[] = [];
    for (;;) {
      const match = /\r\n|\n|\r/.exec(this.buffer);
      // A lone "\r" at the end may be the first half of "\r\n": wait for the next chunk.
      if (!match || (match[0] === "\r" && match.index === this.buffer.length - 1)) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.line(line);
      if (event) out.push(event);
    }
    return out;
  }

  /** The end of the stream: an unterminated last event is dropped, as the SSE standard says. */
  end(): ServerEvent[] {
    this.buffer = "";
    this.event = "";
    this.data = [];
    return [];
  }

  private line(line: string): ServerEvent | null {
    if (line === "") {
      if (!this.data.length) {
        this.event = "";
        return null;
      }
      const event = { event: this.event || "message", data: this.data.join("\n") };
      this.event = "";
      this.data = [];
      return event;
    }
    if (line.startsWith(":")) return null; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    return null;
  }
}

/** Every event of `body`, in order, as the bytes arrive; `signal` ends the reading at once. */
export async function* readEvents(body: ReadableStream<Uint8Array>, signal?: AbortSignal): AsyncGenerator<ServerEvent> {
  const reader = body.getReader();
  // Aborting the fetch errors the body too, but only once the browser has the response: this
  // stops a read that is waiting for the next piece at once.
  const stop = () => void reader.cancel().catch(() => undefined);
  signal?.addEventListener("abort", stop, { once: true });
  // `stream: true` keeps a character cut between two chunks for the next one.
  const decoder = new TextDecoder();
  const parser = new SseParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
    yield* parser.push(decoder.decode());
    parser.end();
  } finally {
    signal?.removeEventListener("abort", stop);
    reader.releaseLock();
  }
}
