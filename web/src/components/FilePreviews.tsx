/** Files picked but not sent yet, as thumbnails that can be taken out again. */
import { X } from "lucide-react";
import { useEffect, useMemo } from "react";

import { formatBytes } from "@/lib/format";

export function FilePreviews({ files, onRemove }: { files: File[]; onRemove: (file: File) => void }) {
  const urls = useMemo(() => files.map((f) => URL.createObjectURL(f)), [files]);
  useEffect(() => () => urls.forEach((u) => URL.revokeObjectURL(u)), [urls]);
  if (!files.length) return null;
  return (
    <ul className="grid grid-cols-3 gap-3 sm:grid-cols-4 md:grid-cols-6" aria-label="Images to add">
      {files.map((file, i) => (
        <li key={`${file.name}-${i}`} className="group relative overflow-hidden rounded-md border border-slate-200 bg-white">
          <img src={urls[i]} alt={file.name} className="aspect-square w-full object-cover" />
          <div className="truncate px-2 py-1 text-xs text-slate-600" title={file.name}>
            {file.name} · {formatBytes(file.size)}
          </div>
          <button
            type="button"
            onClick={() => onRemove(file)}
            aria-label={`Remove ${file.name}`}
            className="absolute right-1 top-1 rounded-full bg-white/90 p-1 shadow hover:bg-white"
          >
            <X className="size-3.5" aria-hidden />
          </button>
        </li>
      ))}
    </ul>
  );
}
