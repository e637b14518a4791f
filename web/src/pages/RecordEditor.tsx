import { ArrowLeft, Trash2 } from "lucide-react";
import { useEffect, useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { toast } from "sonner";

import { useAddImages, useCollection, useCreateRecord, useDeleteRecord, useRecord, useRemoveImage, useUpdateRecord } from "@/api/queries";
import type { CatalogRecord, ImageInfo } from "@/api/types";
import { AuthImage } from "@/components/AuthImage";
import { ConfirmDialog } from "@/components/Dialog";
import { Dropzone } from "@/components/Dropzone";
import { FilePreviews } from "@/components/FilePreviews";
import { StatusBadge } from "@/components/StatusBadge";
import { TagInput } from "@/components/TagInput";
import { Button, Card, ErrorState, Field, Input, LoadingBlock, PageHeader, Skeleton, Textarea } from "@/components/ui";
import { formatBytes, formatDate } from "@/lib/format";
import { announceResults } from "@/lib/results";

interface Fields {
  name: string;
  description: string;
  tags: string[];
}

function RecordFields({ fields, onChange }: { fields: Fields; onChange: (fields: Fields) => void }) {
  return (
    <div className="space-y-4">
      <Field label="Name">
        {(props) => (
          <Input {...props} name="name" required maxLength={512} value={fields.name} onChange={(e) => onChange({ ...fields, name: e.target.value })} />
        )}
      </Field>
      <Field label="Description">
        {(props) => (
          <Textarea {...props} name="description" value={fields.description} onChange={(e) => onChange({ ...fields, description: e.target.value })} />
        )}
      </Field>
      <TagInput value={fields.tags} onChange={(tags) => onChange({ ...fields, tags })} />
    </div>
  );
}

function NewRecord({ collectionId }: { collectionId: string }) {
  const navigate = useNavigate();
  const collection = useCollection(collectionId);
  const create = useCreateRecord(collectionId);
  const [fields, setFields] = useState<Fields>({ name: "", description: "", tags: [] });
  const [files, setFiles] = useState<File[]>([]);

  function submit(event: FormEvent) {
    event.preventDefault();
    create.mutate(
      { fields: { ...fields, name: fields.name.trim() }, files },
      {
        onSuccess: ({ record, results }) => {
          toast.success(`Record “${record.name}” created`);
          announceResults(results);
          navigate(`/records/${record.id}`, { replace: true });
        },
      },
    );
  }

  return (
    <>
      <Link to={`/collections/${collectionId}`} className="mb-2 inline-flex items-center gap-1 text-sm text-slate-500 hover:underline">
        <ArrowLeft className="size-4" aria-hidden /> {collection.data?.name ?? "Records"}
      </Link>
      <PageHeader title="New record" description="A name, a description, tags and any number of images." />
      <form onSubmit={submit} className="grid gap-6 lg:grid-cols-[minmax(0,1fr)_minmax(0,1.2fr)]">
        <Card className="p-5">
          <RecordFields fields={fields} onChange={setFields} />
        </Card>
        <Card className="space-y-4 p-5">
          <h2 className="text-sm font-medium text-slate-700">Images</h2>
          <Dropzone onFiles={(picked) => setFiles((prev) => [...prev, ...picked])} inputLabel="Add images to the record" />
          <FilePreviews files={files} onRemove={(file) => setFiles((prev) => prev.filter((f) => f !== file))} />
        </Card>
        <div className="flex justify-end gap-2 lg:col-span-2">
          <Button onClick={() => navigate(-1)}>Cancel</Button>
          <Button type="submit" variant="primary" busy={create.isPending} disabled={!fields.name.trim()}>
            Create record
          </Button>
        </div>
      </form>
    </>
  );
}

function ImageTile({ image, onRemove }: { image: ImageInfo; onRemove: () => void }) {
  return (
    <li className="overflow-hidden rounded-lg border border-slate-200 bg-white" data-testid="record-image">
      <AuthImage src={image.thumbnail_url} alt={image.filename ?? image.id} className="aspect-square w-full" />
      <div className="space-y-1 p-2 text-xs">
        <div className="flex items-center justify-between gap-1">
          <StatusBadge status={image.status} title={image.error ?? undefined} />
          <Button variant="ghost" size="sm" className="h-7 px-1.5" aria-label={`Remove image ${image.filename ?? image.id}`} onClick={onRemove}>
            <Trash2 className="size-3.5" aria-hidden />
          </Button>
        </div>
        <p className="truncate text-slate-700" title={image.filename ?? image.id}>
          {image.filename ?? image.id}
        </p>
        <p className="text-slate-500">
          {image.width}×{image.height} · {formatBytes(image.bytes)}
        </p>
        {image.error && <p className="text-red-700">{image.error}</p>}
      </div>
    </li>
  );
}

function EditRecord({ record }: { record: CatalogRecord }) {
  const navigate = useNavigate();
  const update = useUpdateRecord(record.id);
  const addImages = useAddImages(record.id);
  const removeImage = useRemoveImage(record.id);
  const deleteRecord = useDeleteRecord();
  const [fields, setFields] = useState<Fields>({ name: record.name, description: record.description, tags: record.tags });
  const [removing, setRemoving] = useState<ImageInfo | null>(null);
  const [deleting, setDeleting] = useState(false);
  const dirty =
    fields.name !== record.name || fields.description !== record.description || fields.tags.join("\u0000") !== record.tags.join("\u0000");

  useEffect(() => {
    setFields({ name: record.name, description: record.description, tags: record.tags });
  }, [record.name, record.description, record.tags]);

  function save(event: FormEvent) {
    event.preventDefault();
    update.mutate(
      { name: fields.name.trim(), description: fields.description, tags: fields.tags },
      { onSuccess: () => toast.success("Record saved") },
    );
  }

  const pending = record.images.filter((i) => i.status === "pending").length;
  return (
    <>
      <Link to={`/collections/${record.collection_id}`} className="mb-2 inline-flex items-center gap-1 text-sm text-slate-500 hover:underline">
        <ArrowLeft className="size-4" aria-hidden /> Records
      </Link>
      <PageHeader
        title={record.name}
        description={`Owner ${record.owner} · created ${formatDate(record.created_at)}`}
        actions={
          <Button variant="danger" onClick={() => setDeleting(true)}>
            <Trash2 className="size-4" aria-hidden /> Delete record
          </Button>
        }
      />
      <div className="grid gap-6 lg:grid-cols-[minmax(0,1fr)_minmax(0,1.2fr)]">
        <Card className="p-5">
          <form onSubmit={save} className="space-y-4">
            <RecordFields fields={fields} onChange={setFields} />
            <div className="flex justify-end">
              <Button type="submit" variant="primary" busy={update.isPending} disabled={!dirty || !fields.name.trim()}>
                Save changes
              </Button>
            </div>
          </form>
        </Card>
        <Card className="space-y-4 p-5">
          <div className="flex items-center justify-between">
            <h2 className="text-sm font-medium text-slate-700">
              Images <span className="text-slate-500">({record.images.length})</span>
            </h2>
            {pending > 0 && (
              <span role="status" className="text-xs text-amber-700">
                {pending} waiting for embedding…
              </span>
            )}
          </div>
          {record.images.length > 0 ? (
            <ul className="grid grid-cols-2 gap-3 sm:grid-cols-3" aria-label="Images of this record">
              {record.images.map((image) => (
                <ImageTile key={image.id} image={image} onRemove={() => setRemoving(image)} />
              ))}
            </ul>
          ) : (
            <p className="text-sm text-slate-500">This record has no images yet: add some below.</p>
          )}
          <Dropzone
            compact
            label={addImages.isPending ? "Adding…" : "Drop images to add them to this record"}
            disabled={addImages.isPending}
            inputLabel="Add images to the record"
            onFiles={(files) => addImages.mutate(files, { onSuccess: announceResults })}
          />
        </Card>
      </div>
      <ConfirmDialog
        open={removing !== null}
        onOpenChange={(open) => !open && setRemoving(null)}
        title="Remove this image?"
        description="The image leaves the record and the search index."
        confirmLabel="Remove image"
        busy={removeImage.isPending}
        onConfirm={() => {
          if (!removing) return;
          removeImage.mutate(removing.id, { onSuccess: () => toast.success("Image removed") });
          setRemoving(null);
        }}
      />
      <ConfirmDialog
        open={deleting}
        onOpenChange={setDeleting}
        title={`Delete “${record.name}”?`}
        description="The record and all its images are removed for good."
        confirmLabel="Delete record"
        busy={deleteRecord.isPending}
        onConfirm={() =>
          deleteRecord.mutate(record, {
            onSuccess: () => {
              toast.success(`Deleted “${record.name}”`);
              navigate(`/collections/${record.collection_id}`, { replace: true });
            },
          })
        }
      />
    </>
  );
}

export function RecordEditorPage() {
  const { collectionId, recordId } = useParams<{ collectionId: string; recordId: string }>();
  const record = useRecord(recordId);
  if (collectionId) return <NewRecord collectionId={collectionId} />;
  if (record.isLoading) {
    return (
      <LoadingBlock label="Loading the record">
        <Skeleton className="mb-6 h-10 w-72" />
        <div className="grid gap-6 lg:grid-cols-2">
          <Skeleton className="h-80" />
          <Skeleton className="h-80" />
        </div>
      </LoadingBlock>
    );
  }
  if (record.error || !record.data) return <ErrorState error={record.error} title="This record cannot be opened" />;
  return <EditRecord record={record.data} />;
}
