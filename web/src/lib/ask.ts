/**
 * Asking a collection (POST /api/ask with `stream: true`): the sources at once, the answer as it
 * is written, then the whole answer with its citations. And the two things the answer view draws
 * from it: the `[n]` markers of the text, and the cited words' boxes over the page image.
 */
import { postForStream } from "@/api/client";
import { ApiError } from "@/api/errors";
import type { AskRequest, AskResponse, AskSource } from "@/api/types";

import { readEvents } from "./sse";

export interface AskHandlers {
  onSources: (sources: AskSource[], mode: AskResponse["mode"]) => void;
  onDelta: (text: string) => void;
  onDone: (response: AskResponse) => void;
}

/** Ask, calling `handlers` as the answer arrives. A model that fails before it begins is an
 * `ApiError` (503); one that fails half-way is an `ApiError` thrown after the partial answer. */
export async function askStream(body: Omit<AskRequest, "stream">, handlers: AskHandlers, signal?: AbortSignal): Promise<void> {
  const response = await postForStream("/api/ask", { ...body, stream: true }, signal);
  if (!(response.headers.get("Content-Type") ?? "").includes("text/event-stream") || !response.body) {
    // A server that answered in one piece.
    const whole = (await response.json()) as AskResponse;
    handlers.onSources(whole.sources, whole.mode);
    handlers.onDone(whole);
    return;
  }
  for await (const { event, data } of readEvents(response.body, signal)) {
    const payload: unknown = JSON.parse(data);
    if (event === "sources") {
      const { sources, mode } = payload as { sources: AskSource[]; mode: AskResponse["mode"] };
      handlers.onSources(sources, mode);
    } else if (event === "delta") {
      handlers.onDelta((payload as { text: string }).text);
    } else if (event === "done") {
      handlers.onDone(payload as AskResponse);
      return;
    } else if (event === "error") {
      throw ApiError.from(502, payload);
    }
  }
  if (signal?.aborted) throw new DOMException("the answer was stopped", "AbortError");
  throw new ApiError(502, "stream_ended", "The answer stopped before it was finished.");
}

/** A piece of answer text: words, or a `[1]` / `[2, 3]` marker citing sources. */
export type AnswerPart = { kind: "text"; text: string } | { kind: "cite"; text: string; sources: number[] };

const MARKER = /\[(\d+(?:\s*,\s*\d+)*)\]/g;

export function splitCitations(answer: string): AnswerPart[] {
  const parts: AnswerPart[] = [];
  let last = 0;
  for (const match of answer.matchAll(MARKER)) {
    if (match.index > last) parts.push({ kind: "text", text: answer.slice(last, match.index) });
    parts.push({ kind: "cite", text: match[0], sources: match[1]!.split(",").map((n) => Number(n.trim())) });
    last = match.index + match[0].length;
  }
  if (last < answer.length) parts.push({ kind: "text", text: answer.slice(last) });
  return parts;
}

export interface Size {
  width: number;
  height: number;
}

/** Where box `[x0, y0, x1, y1]` (the original image's pixels) lies on the image as shown, in
 * pixels of `shown`; clamped to the image. */
export function scaleBox(box: number[], original: Size, shown: Size): { left: number; top: number; width: number; height: number } {
  const [x0 = 0, y0 = 0, x1 = 0, y1 = 0] = box;
  const sx = shown.width / original.width;
  const sy = shown.height / original.height;
  const clampX = (x: number) => Math.min(Math.max(x, 0), original.width);
  const clampY = (y: number) => Math.min(Math.max(y, 0), original.height);
  const left = clampX(Math.min(x0, x1)) * sx;
  const top = clampY(Math.min(y0, y1)) * sy;
  return {
    left,
    top,
    width: clampX(Math.max(x0, x1)) * sx - left,
    height: clampY(Math.max(y0, y1)) * sy - top,
  };
}
