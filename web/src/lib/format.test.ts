import { describe, expect, it } from "vitest";

import { formatBytes, formatScore, parseTags, pluralize } from "./format";
import { eachLimited, stem } from "./upload";

describe("format", () => {
  it("formats sizes, scores and counts", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KB");
    expect(formatBytes(5 * 1024 * 1024)).toBe("5.0 MB");
    expect(formatBytes(null)).toBe("–");
    expect(formatScore(0.98765)).toBe("0.988");
    expect(formatScore(undefined)).toBe("–");
    expect(pluralize(1, "image")).toBe("1 image");
    expect(pluralize(3, "duplicate")).toBe("3 duplicates");
  });

  it("parses tags once each, trimmed", () => {
    expect(parseTags(" red, shoe ,red,, ")).toEqual(["red", "shoe"]);
  });

  it("names a record after its file", () => {
    expect(stem("photos/red-shoe.final.jpg")).toBe("red-shoe.final");
    expect(stem(".hidden")).toBe(".hidden");
    expect(stem("")).toBe("untitled");
  });
});

describe("eachLimited", () => {
  it("never runs more than the limit at once, and runs every item", async () => {
    let running = 0;
    let peak = 0;
    const done: number[] = [];
    await eachLimited([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      running += 1;
      peak = Math.max(peak, running);
      await new Promise((resolve) => setTimeout(resolve, 5));
      done.push(n);
      running -= 1;
    });
    expect(peak).toBe(3);
    expect(done.sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });
});
