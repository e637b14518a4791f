/** Drop files here or pick them: react-dropzone's behaviour with the app's look. */
import { clsx } from "clsx";
import { ImagePlus } from "lucide-react";
import { useDropzone, type FileRejection } from "react-dropzone";

// What the server accepts (it checks the content, not the name, and refuses the rest).
export const IMAGE_TYPES = {
  "image/jpeg": [".jpg", ".jpeg"],
  "image/png": [".png"],
  "image/webp": [".webp"],
  "image/gif": [".gif"],
  "image/avif": [".avif"],
  "image/heic": [".heic"],
  "image/heif": [".heif"],
};

/** Images, and PDFs: a PDF becomes a record of its own, an image per page. */
export const IMAGE_AND_PDF_TYPES = { ...IMAGE_TYPES, "application/pdf": [".pdf"] };

export function Dropzone({
  onFiles,
  onRejected,
  multiple = true,
  label = "Drop images here, or click to choose",
  hint = "JPEG, PNG, WebP, GIF, AVIF or HEIC",
  compact = false,
  disabled = false,
  inputLabel,
  accept = IMAGE_TYPES,
}: {
  onFiles: (files: File[]) => void;
  onRejected?: (rejections: FileRejection[]) => void;
  multiple?: boolean;
  label?: string;
  hint?: string;
  compact?: boolean;
  disabled?: boolean;
  /** The accessible name of the hidden file input (tests and screen readers find it by it). */
  inputLabel?: string;
  /** What the picker offers, by MIME type and extension. */
  accept?: Record<string, string[]>;
}) {
  const { getRootProps, getInputProps, isDragActive } = useDropzone({
    onDrop: (accepted, rejected) => {
      if (accepted.length) onFiles(accepted);
      if (rejected.length) onRejected?.(rejected);
    },
    // The server decides what is an image (by content); the browser only filters the picker.
    accept,
    multiple,
    disabled,
  });
  return (
    <div
      {...getRootProps({
        className: clsx(
          "flex cursor-pointer flex-col items-center justify-center rounded-lg border-2 border-dashed text-center transition-colors",
          "focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600",
          compact ? "gap-1 px-4 py-5" : "gap-2 px-6 py-10",
          isDragActive ? "border-brand-500 bg-brand-50" : "border-slate-300 bg-white hover:border-slate-400",
          disabled && "pointer-events-none opacity-60",
        ),
      })}
    >
      <input {...getInputProps({ "aria-label": inputLabel ?? label })} />
      <ImagePlus className={clsx("text-slate-400", compact ? "size-6" : "size-8")} aria-hidden />
      <p className="text-sm font-medium text-slate-700">{isDragActive ? "Drop to add" : label}</p>
      {hint && <p className="text-xs text-slate-500">{hint}</p>}
    </div>
  );
}
