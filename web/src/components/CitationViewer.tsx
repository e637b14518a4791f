/**
 * A cited page, large, with the words that support the answer highlighted: the citation's boxes
 * are in the original image's pixels, placed here as fractions of its width and height, so they
 * stay on the words whatever size the image is shown at.
 */
import { useImage } from "@/api/queries";
import { scaleBox } from "@/lib/ask";

import { AuthImage } from "./AuthImage";
import { Dialog } from "./Dialog";
import { ErrorState, Skeleton } from "./ui";

export interface CitedPage {
  source: number;
  imageId: string;
  name: string;
  page: number | null;
  /** The supporting sentence; null when a source is opened that the answer does not cite. */
  text: string | null;
  boxes: number[][];
}

const PERCENT = { width: 100, height: 100 };

export function Highlights({ boxes, width, height }: { boxes: number[][]; width: number; height: number }) {
  return (
    <>
      {boxes.map((box, i) => {
        const { left, top, width: w, height: h } = scaleBox(box, { width, height }, PERCENT);
        return (
          <div
            key={i}
            data-testid="highlight"
            aria-hidden
            className="pointer-events-none absolute rounded-sm bg-amber-300/45 ring-1 ring-amber-500/70 mix-blend-multiply"
            style={{ left: `${left}%`, top: `${top}%`, width: `${w}%`, height: `${h}%` }}
          />
        );
      })}
    </>
  );
}

export function CitationViewer({ cited, onClose }: { cited: CitedPage | null; onClose: () => void }) {
  const image = useImage(cited?.imageId);
  const title = cited ? `[${cited.source}] ${cited.name}${cited.page ? ` · page ${cited.page}` : ""}` : "";
  const info = image.data;
  return (
    <Dialog open={cited !== null} onOpenChange={(open) => !open && onClose()} title={title} className="max-w-4xl">
      {cited && (
        <div className="space-y-4">
          {image.isError ? (
            <ErrorState title="Cannot show this page" error={image.error} />
          ) : !info ? (
            <Skeleton className="mx-auto aspect-[3/4] w-full max-w-md" />
          ) : (
            <div
              className="relative mx-auto"
              data-testid="cited-page"
              // As wide as fits, but never taller than most of the window.
              style={{ aspectRatio: `${info.width} / ${info.height}`, width: `min(100%, calc(70vh * ${info.width / info.height}))` }}
            >
              <AuthImage src={info.original_url} alt={title} fit="contain" eager className="size-full rounded border border-slate-200" />
              <Highlights boxes={cited.boxes} width={info.width} height={info.height} />
            </div>
          )}
          {cited.text ? (
            <blockquote className="border-l-4 border-amber-400 bg-amber-50 px-4 py-2 text-sm text-slate-800" data-testid="supporting-text">
              {cited.text}
            </blockquote>
          ) : (
            <p className="text-sm text-slate-500">The answer does not cite this source.</p>
          )}
        </div>
      )}
    </Dialog>
  );
}
