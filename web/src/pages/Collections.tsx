import * as DropdownMenu from "@radix-ui/react-dropdown-menu";
import { clsx } from "clsx";
import { FolderOpen, MoreHorizontal, Pencil, Plus, Trash2 } from "lucide-react";
import { useState, type FormEvent } from "react";
import { Link } from "react-router-dom";
import { toast } from "sonner";

import { useCreateCollection, useDeleteCollection, useUpdateCollection } from "@/api/queries";
import type { Collection } from "@/api/types";
import { ConfirmDialog, Dialog } from "@/components/Dialog";
import { Badge, Button, Card, EmptyState, ErrorState, Field, Input, LoadingBlock, PageHeader, Select, Skeleton, Textarea } from "@/components/ui";
import { useCurrentCollection } from "@/lib/collection";
import { formatDate, pluralize } from "@/lib/format";

const menuItem =
  "flex cursor-pointer items-center gap-2 px-3 py-1.5 text-sm outline-none data-[highlighted]:bg-slate-100";

const KNOWN_MODELS = ["clip-vit-b-32-laion2b", "clip-vit-b-32-laion2b-int8", "efficientnet-lite0"];

function CreateCollectionDialog({ open, onOpenChange }: { open: boolean; onOpenChange: (open: boolean) => void }) {
  const create = useCreateCollection();
  const { select } = useCurrentCollection();
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [model, setModel] = useState("");
  const [quantization, setQuantization] = useState<"" | "int8" | "none">("");
  const [hnswM, setHnswM] = useState("");

  function submit(event: FormEvent) {
    event.preventDefault();
    create.mutate(
      {
        name: name.trim(),
        description,
        model: model.trim() || null,
        quantization: quantization || null,
        hnsw_m: hnswM ? Number(hnswM) : null,
      },
      {
        onSuccess: (collection) => {
          toast.success(`Collection “${collection.name}” created`);
          select(collection.id);
          onOpenChange(false);
          setName("");
          setDescription("");
          setModel("");
          setQuantization("");
          setHnswM("");
        },
      },
    );
  }

  return (
    <Dialog open={open} onOpenChange={onOpenChange} title="New collection" description="Images in a collection share one embedding model.">
      <form onSubmit={submit} className="space-y-4">
        <Field label="Name">
          {(props) => (
            <Input {...props} name="name" required maxLength={128} value={name} onChange={(e) => setName(e.target.value)} autoFocus />
          )}
        </Field>
        <Field label="Description">
          {(props) => <Textarea {...props} name="description" value={description} onChange={(e) => setDescription(e.target.value)} />}
        </Field>
        <Field label="Model" hint="Leave empty for the server's default model. It cannot be changed later.">
          {(props) => (
            <>
              <Input {...props} name="model" list="known-models" placeholder="server default" value={model} onChange={(e) => setModel(e.target.value)} />
              <datalist id="known-models">
                {KNOWN_MODELS.map((m) => (
                  <option key={m} value={m} />
                ))}
              </datalist>
            </>
          )}
        </Field>
        <div className="grid grid-cols-2 gap-3">
          <Field label="Quantization">
            {(props) => (
              <Select {...props} value={quantization} onChange={(e) => setQuantization(e.target.value as "" | "int8" | "none")}>
                <option value="">server default</option>
                <option value="int8">int8</option>
                <option value="none">none</option>
              </Select>
            )}
          </Field>
          <Field label="HNSW m">
            {(props) => (
              <Input {...props} type="number" min={4} max={128} placeholder="16" value={hnswM} onChange={(e) => setHnswM(e.target.value)} />
            )}
          </Field>
        </div>
        <div className="flex justify-end gap-2 pt-2">
          <Button onClick={() => onOpenChange(false)}>Cancel</Button>
          <Button type="submit" variant="primary" busy={create.isPending} disabled={!name.trim()}>
            Create collection
          </Button>
        </div>
      </form>
    </Dialog>
  );
}

function RenameDialog({ collection, onClose }: { collection: Collection; onClose: () => void }) {
  const update = useUpdateCollection();
  const [name, setName] = useState(collection.name);
  const [description, setDescription] = useState(collection.description);
  function submit(event: FormEvent) {
    event.preventDefault();
    update.mutate(
      { id: collection.id, body: { name: name.trim(), description } },
      {
        onSuccess: (updated) => {
          toast.success(`Saved “${updated.name}”`);
          onClose();
        },
      },
    );
  }
  return (
    <Dialog open onOpenChange={(open) => !open && onClose()} title="Edit collection">
      <form onSubmit={submit} className="space-y-4">
        <Field label="Name">
          {(props) => <Input {...props} required value={name} onChange={(e) => setName(e.target.value)} autoFocus />}
        </Field>
        <Field label="Description">
          {(props) => <Textarea {...props} value={description} onChange={(e) => setDescription(e.target.value)} />}
        </Field>
        <div className="flex justify-end gap-2">
          <Button onClick={onClose}>Cancel</Button>
          <Button type="submit" variant="primary" busy={update.isPending} disabled={!name.trim()}>
            Save
          </Button>
        </div>
      </form>
    </Dialog>
  );
}

/** One setting of the card; a `wide` one (a model name, a date) has a row to itself. Values wrap
 * rather than being cut: they are what a person compares collections by. */
function Setting({ label, value, wide = false }: { label: string; value: string; wide?: boolean }) {
  return (
    <div className={clsx("min-w-0", wide && "col-span-2")}>
      <dt className="text-xs text-slate-500">{label}</dt>
      <dd className="text-sm font-medium break-words text-slate-800">{value}</dd>
    </div>
  );
}

function CollectionCard({ collection, onEdit, onDelete }: { collection: Collection; onEdit: () => void; onDelete: () => void }) {
  const counts = collection.counts ?? {};
  const settings = collection.vector_settings as Record<string, unknown>;
  const pending = counts.images_pending ?? 0;
  const failed = counts.images_failed ?? 0;
  return (
    <Card className="flex flex-col p-5" data-testid="collection-card">
      <div className="flex items-start justify-between gap-3">
        <div className="min-w-0">
          <h2 className="truncate text-base font-semibold">
            <Link to={`/collections/${collection.id}`} className="hover:underline">
              {collection.name}
            </Link>
          </h2>
          <p className="mt-0.5 line-clamp-2 text-sm text-slate-600">{collection.description || "No description"}</p>
        </div>
        <DropdownMenu.Root>
          <DropdownMenu.Trigger asChild>
            <Button variant="ghost" size="sm" aria-label={`Actions for ${collection.name}`}>
              <MoreHorizontal className="size-4" aria-hidden />
            </Button>
          </DropdownMenu.Trigger>
          <DropdownMenu.Portal>
            <DropdownMenu.Content align="end" className="z-50 w-40 rounded-md border border-slate-200 bg-white py-1 shadow-lg">
              <DropdownMenu.Item onSelect={onEdit} className={menuItem}>
                <Pencil className="size-4" aria-hidden /> Rename
              </DropdownMenu.Item>
              <DropdownMenu.Item onSelect={onDelete} className={`${menuItem} text-red-700 data-[highlighted]:bg-red-50`}>
                <Trash2 className="size-4" aria-hidden /> Delete
              </DropdownMenu.Item>
            </DropdownMenu.Content>
          </DropdownMenu.Portal>
        </DropdownMenu.Root>
      </div>
      <div className="mt-3 flex flex-wrap gap-1.5">
        <Badge>{pluralize(counts.records ?? 0, "record")}</Badge>
        <Badge tone="green">{pluralize(counts.images ?? 0, "image")}</Badge>
        {pending > 0 && <Badge tone="amber">{pending} embedding</Badge>}
        {failed > 0 && <Badge tone="red">{failed} failed</Badge>}
        <Badge tone={collection.supports_text ? "blue" : "slate"}>{collection.supports_text ? "text search" : "image search only"}</Badge>
      </div>
      <dl className="mt-4 grid grid-cols-2 gap-x-4 gap-y-2 border-t border-slate-100 pt-4">
        <Setting label="Model" value={collection.model} wide />
        <Setting label="Dimensions" value={String(collection.dim)} />
        <Setting label="Quantization" value={String(settings.quantization ?? "–")} />
        <Setting label="HNSW m / ef" value={`${String(settings.hnsw_m ?? "–")} / ${String(settings.hnsw_ef_construct ?? "–")}`} />
        <Setting label="Distance" value={String(settings.distance ?? "cosine")} />
        <Setting label="Created" value={formatDate(collection.created_at)} wide />
      </dl>
      <div className="mt-4 flex gap-2">
        <Link to={`/collections/${collection.id}`} className="text-sm font-medium text-brand-700 hover:underline">
          Open records →
        </Link>
      </div>
    </Card>
  );
}

export function CollectionsPage() {
  const { collections, isLoading, error } = useCurrentCollection();
  const remove = useDeleteCollection();
  const [creating, setCreating] = useState(false);
  const [editing, setEditing] = useState<Collection | null>(null);
  const [deleting, setDeleting] = useState<Collection | null>(null);

  const newButton = (
    <Button variant="primary" onClick={() => setCreating(true)}>
      <Plus className="size-4" aria-hidden /> New collection
    </Button>
  );

  return (
    <>
      <PageHeader title="Collections" description="Records and images grouped under one embedding model." actions={newButton} />
      {isLoading ? (
        <LoadingBlock label="Loading collections">
          <div className="grid gap-4 md:grid-cols-2 xl:grid-cols-3">
            {[0, 1, 2].map((i) => (
              <Skeleton key={i} className="h-56" />
            ))}
          </div>
        </LoadingBlock>
      ) : error ? (
        <ErrorState error={error} />
      ) : collections.length === 0 ? (
        <EmptyState icon={<FolderOpen className="size-10" />} title="No collections yet" action={newButton}>
          Create a collection, then add records and images to it, or upload a batch of photos.
        </EmptyState>
      ) : (
        <div className="grid gap-4 md:grid-cols-2 xl:grid-cols-3">
          {collections.map((c) => (
            <CollectionCard key={c.id} collection={c} onEdit={() => setEditing(c)} onDelete={() => setDeleting(c)} />
          ))}
        </div>
      )}
      <CreateCollectionDialog open={creating} onOpenChange={setCreating} />
      {editing && <RenameDialog collection={editing} onClose={() => setEditing(null)} />}
      <ConfirmDialog
        open={deleting !== null}
        onOpenChange={(open) => !open && setDeleting(null)}
        title={`Delete “${deleting?.name ?? ""}”?`}
        description="Its records, images and vectors are removed for good."
        confirmLabel="Delete collection"
        busy={remove.isPending}
        onConfirm={() =>
          deleting &&
          remove.mutate(deleting.id, {
            onSuccess: () => {
              toast.success(`Deleted “${deleting.name}”`);
              setDeleting(null);
            },
          })
        }
      />
    </>
  );
}
