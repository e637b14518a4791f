import { useQueryClient } from "@tanstack/react-query";
import { UploadCloud } from "lucide-react";
import { useCallback, useRef, useState } from "react";
import { Link } from "react-router-dom";
import { toast } from "sonner";

import { errorMessage } from "@/api/errors";
import { keys } from "@/api/queries";
import { Dropzone, IMAGE_AND_PDF_TYPES } from "@/components/Dropzone";
import { TagInput } from "@/components/TagInput";
import { UploadRow } from "@/components/UploadRow";
import { Badge, Button, Card, EmptyState, PageHeader } from "@/components/ui";
import { useCurrentCollection } from "@/lib/collection";
import { pluralize } from "@/lib/format";
import { eachLimited, uploadImage, uploadOutcome, type UploadOutcome, type UploadProgress } from "@/lib/upload";

interface Item {
  id: number;
  file: File;
  progress: UploadProgress;
}

const PARALLEL = 3;

export function UploadPage() {
  const { collection, isLoading } = useCurrentCollection();
  const client = useQueryClient();
  const [items, setItems] = useState<Item[]>([]);
  const [tags, setTags] = useState<string[]>([]);
  const nextId = useRef(0);

  const update = useCallback((id: number, progress: UploadProgress) => {
    setItems((prev) => prev.map((item) => (item.id === id ? { ...item, progress } : item)));
  }, []);

  const start = useCallback(
    async (files: File[]) => {
      if (!collection) return;
      const batch = files.map((file) => ({ id: nextId.current++, file, progress: { phase: "queued", sent: 0 } as UploadProgress }));
      setItems((prev) => [...batch, ...prev]);
      await eachLimited(batch, PARALLEL, async (item) => {
        try {
          await uploadImage(item.file, { collection: collection.id, tags }, (p) => update(item.id, p));
        } catch (error) {
          update(item.id, { phase: "failed", sent: 0, error: errorMessage(error) });
        }
      });
      void client.invalidateQueries({ queryKey: keys.collections });
      void client.invalidateQueries({ queryKey: keys.records(collection.id) });
      toast.success(`Batch of ${batch.length} processed`);
    },
    [collection, tags, update, client],
  );

  if (!isLoading && !collection) {
    return (
      <>
        <PageHeader title="Upload" />
        <EmptyState icon={<UploadCloud className="size-10" />} title="No collection to upload into" action={<Link className="font-medium text-brand-700 underline" to="/collections">Create a collection</Link>}>
          Uploads go into a collection. Create one first.
        </EmptyState>
      </>
    );
  }

  const counts: Record<UploadOutcome, number> = { active: 0, added: 0, duplicate: 0, rejected: 0 };
  for (const item of items) counts[uploadOutcome(item.progress)] += 1;
  const { active, added, duplicate: duplicates, rejected } = counts;

  return (
    <>
      <PageHeader
        title="Upload"
        description={
          <>
            Into <span className="font-medium text-slate-800">{collection?.name ?? "…"}</span>: one record per file, named after it; a PDF is one
            record with an image per page.
            Files are checked by content; exact copies are reported, not stored twice.
          </>
        }
      />
      <div className="grid gap-6 lg:grid-cols-[minmax(0,1fr)_20rem]">
        <div className="space-y-4">
          <Dropzone
            onFiles={(files) => void start(files)}
            label="Drop many images or PDFs here, or click to choose"
            hint="JPEG, PNG, WebP, GIF, AVIF, HEIC or PDF"
            inputLabel="Choose images to upload"
            accept={IMAGE_AND_PDF_TYPES}
            disabled={!collection}
          />
          {items.length > 0 && (
            <Card>
              <div className="flex flex-wrap items-center gap-2 border-b border-slate-100 px-4 py-3 text-sm" aria-live="polite" data-testid="upload-summary">
                <span className="font-medium">{pluralize(items.length, "file")}</span>
                {active > 0 && <Badge tone="amber">{active} in progress</Badge>}
                <Badge tone="green">{added} added</Badge>
                <Badge tone="blue">{pluralize(duplicates, "duplicate")}</Badge>
                <Badge tone="red">{rejected} rejected</Badge>
                <Button size="sm" variant="ghost" className="ml-auto" disabled={active > 0} onClick={() => setItems([])}>
                  Clear list
                </Button>
              </div>
              <ul className="divide-y divide-slate-100" aria-label="Uploads">
                {items.map((item) => (
                  <UploadRow key={item.id} file={item.file} progress={item.progress} />
                ))}
              </ul>
            </Card>
          )}
        </div>
        <Card className="h-fit space-y-3 p-5">
          <h2 className="text-sm font-semibold">Options</h2>
          <TagInput label="Tags for the new records" value={tags} onChange={setTags} />
          <p className="text-xs text-slate-500">
            Each file is sent straight to storage through a signed URL, then checked and embedded in the background.
          </p>
        </Card>
      </div>
    </>
  );
}
