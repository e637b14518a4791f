import { screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { mockApi } from "@/test/api";
import { renderWithProviders } from "@/test/render";

import type { UploadProgress } from "@/lib/upload";

import { UploadRow } from "./UploadRow";

const file = new File([new Uint8Array(2048)], "shoe.jpg", { type: "image/jpeg" });

describe("UploadRow", () => {
  it("shows the progress while the bytes go up", () => {
    renderWithProviders(<UploadRow file={file} progress={{ phase: "uploading", sent: 0.42 }} />);
    expect(screen.getByRole("progressbar", { name: "Upload of shoe.jpg" })).toHaveAttribute("aria-valuenow", "42");
    expect(screen.getByText(/Uploading 42%/)).toBeInTheDocument();
  });

  it("names the record a duplicate belongs to", async () => {
    mockApi({ "GET /api/records/R1": () => ({ body: { id: "R1", name: "Red sneaker", images: [] } }) });
    renderWithProviders(
      <UploadRow
        file={file}
        progress={{
          phase: "done",
          sent: 1,
          result: { filename: "shoe.jpg", status: "duplicate", image_id: "I1", record_id: "R1" },
        }}
      />,
    );
    expect(await screen.findByRole("link", { name: "Red sneaker" })).toHaveAttribute("href", "/records/R1");
    expect(screen.getByTestId("upload-row")).toHaveAttribute("data-status", "duplicate");
  });

  it("gives the reason of a rejection", () => {
    renderWithProviders(
      <UploadRow
        file={file}
        progress={{
          phase: "done",
          sent: 1,
          result: {
            filename: "shoe.jpg",
            status: "rejected",
            image_id: null,
            record_id: null,
            error: { code: "not_an_image", message: "The file is not an image" },
          },
        }}
      />,
    );
    expect(screen.getByText("Rejected: The file is not an image")).toBeInTheDocument();
  });

  it("follows an added image to its embedding", () => {
    renderWithProviders(
      <UploadRow
        file={file}
        progress={{
          phase: "done",
          sent: 1,
          result: { filename: "shoe.jpg", status: "added", image_id: "I2", record_id: "R2", job_id: "J2" },
          job: {
            id: "J2",
            kind: "embed",
            status: "done",
            error: null,
            image_id: "I2",
            collection_id: "C",
            created_at: "2026-01-01T00:00:00Z",
            updated_at: "2026-01-01T00:00:01Z",
          },
        }}
      />,
    );
    expect(screen.getByText("embedded")).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "open record" })).toHaveAttribute("href", "/records/R2");
  });

  it("says which record an added image is a near-exact copy of, once its check has run", async () => {
    let reads = 0;
    mockApi({
      // The duplicate check is queued on the first look and done on the next.
      "GET /api/images/I3": () => ({
        body: {
          id: "I3",
          record_id: "R3",
          enrichment: { duplicate: reads++ > 0 ? "done" : "pending" },
          duplicate: reads > 1 ? { tier: "near_exact", image_id: "I1", score: 0.97 } : null,
        },
      }),
      "GET /api/images/I1": () => ({ body: { id: "I1", record_id: "R1" } }),
      "GET /api/records/R1": () => ({ body: { id: "R1", name: "Red sneaker", images: [] } }),
    });
    renderWithProviders(
      <UploadRow
        file={file}
        progress={{
          phase: "done",
          sent: 1,
          result: { filename: "shoe.jpg", status: "added", image_id: "I3", record_id: "R3", job_id: "J3" },
          job: {
            id: "J3",
            kind: "embed",
            status: "done",
            error: null,
            image_id: "I3",
            collection_id: "C",
            created_at: "2026-01-01T00:00:00Z",
            updated_at: "2026-01-01T00:00:01Z",
          },
        }}
      />,
    );
    const link = await screen.findByRole("link", { name: "Red sneaker" }, { timeout: 5000 });
    expect(link).toHaveAttribute("href", "/records/R1");
    expect(screen.getByTestId("verdict")).toHaveTextContent("Near-exact copy of Red sneaker");
  });

  it("uses the verdict an upload that waited was answered with", () => {
    renderWithProviders(
      <UploadRow
        file={file}
        progress={{
          phase: "done",
          sent: 1,
          result: {
            filename: "shoe.jpg",
            status: "added",
            image_id: "I4",
            record_id: "R4",
            duplicate: { tier: "similar", image_id: "I1", score: 0.8, record_id: "R1", record_name: "Red sneaker" },
          },
        }}
      />,
    );
    expect(screen.getByTestId("verdict")).toHaveTextContent("Similar to Red sneaker");
  });

  describe("a PDF", () => {
    const pdf = new File([new Uint8Array(4096)], "bridges.pdf", { type: "application/pdf" });
    const added = { filename: "bridges.pdf", status: "added" as const, image_id: "P1", record_id: "R9", job_id: "J9" };

    it("shows the bytes going up, then each page embedded, then done", () => {
      const step = (progress: UploadProgress) => renderWithProviders(<UploadRow file={pdf} progress={progress} />).unmount;

      let unmount = step({ phase: "uploading", sent: 0.5 });
      expect(screen.getByRole("progressbar", { name: "Upload of bridges.pdf" })).toHaveAttribute("aria-valuenow", "50");
      unmount();

      unmount = step({ phase: "embedding", sent: 1, result: added });
      expect(screen.getByTestId("page-progress")).toHaveTextContent("Reading the pages");
      unmount();

      unmount = step({ phase: "embedding", sent: 1, result: added, pages: { embedded: 1, failed: 0, total: 3 } });
      expect(screen.getByTestId("page-progress")).toHaveTextContent("page 1 of 3 embedded");
      expect(screen.getByRole("progressbar", { name: "Pages of bridges.pdf" })).toHaveAttribute("aria-valuenow", "33");
      expect(screen.getByTestId("upload-row")).toHaveAttribute("data-phase", "embedding");
      unmount();

      step({ phase: "done", sent: 1, result: added, pages: { embedded: 3, failed: 0, total: 3 } });
      expect(screen.getByTestId("page-progress")).toHaveTextContent("Added: 3 of 3 pages embedded");
      expect(screen.queryByRole("progressbar")).not.toBeInTheDocument();
      expect(screen.getByRole("link", { name: "open record" })).toHaveAttribute("href", "/records/R9");
      expect(screen.getByTestId("upload-row")).toHaveAttribute("data-phase", "done");
    });

    it("counts the pages that failed", () => {
      renderWithProviders(<UploadRow file={pdf} progress={{ phase: "done", sent: 1, result: added, pages: { embedded: 2, failed: 1, total: 3 } }} />);
      expect(screen.getByTestId("page-progress")).toHaveTextContent("Added: 2 of 3 pages embedded1 failed");
    });

    it("gives the server's reason for a PDF it cannot read", () => {
      renderWithProviders(<UploadRow file={pdf} progress={{ phase: "failed", sent: 0, error: "the PDF is encrypted" }} />);
      expect(screen.getByText("the PDF is encrypted")).toBeInTheDocument();
      expect(screen.getByTestId("upload-row")).toHaveAttribute("data-status", "failed");
    });
  });
});
