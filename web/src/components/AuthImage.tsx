/**
 * An image from the API. Image routes need the bearer token, which an <img src> cannot send,
 * so the bytes are fetched with it, once the image scrolls near the viewport, and cached.
 */
import { useQuery } from "@tanstack/react-query";
import { clsx } from "clsx";
import { ImageOff } from "lucide-react";
import { useEffect, useState } from "react";
import { useInView } from "react-intersection-observer";

import { ApiError } from "@/api/errors";
import { authHeaders } from "@/api/token";

async function fetchBlob(src: string): Promise<Blob> {
  const response = await fetch(src, { headers: authHeaders() });
  if (!response.ok) throw ApiError.from(response.status, await response.json().catch(() => null));
  return response.blob();
}

export function useImageBlob(src: string | null | undefined, enabled = true) {
  return useQuery({
    queryKey: ["blob", src],
    queryFn: () => fetchBlob(src!),
    enabled: Boolean(src) && enabled,
    staleTime: Infinity,
    gcTime: 5 * 60_000,
    retry: 1,
  });
}

export function AuthImage({
  src,
  alt,
  className,
  fit = "cover",
  eager = false,
}: {
  src: string | null | undefined;
  alt: string;
  className?: string;
  fit?: "cover" | "contain";
  eager?: boolean;
}) {
  const { ref, inView } = useInView({ triggerOnce: true, rootMargin: "300px", skip: eager });
  const blob = useImageBlob(src, eager || inView);
  const [url, setUrl] = useState<string | null>(null);

  useEffect(() => {
    if (!blob.data) return;
    const objectUrl = URL.createObjectURL(blob.data);
    setUrl(objectUrl);
    return () => URL.revokeObjectURL(objectUrl);
  }, [blob.data]);

  return (
    <div ref={ref} className={clsx("relative overflow-hidden bg-slate-100", className)}>
      {url ? (
        <img src={url} alt={alt} className={clsx("size-full", fit === "cover" ? "object-cover" : "object-contain")} />
      ) : blob.isError ? (
        <div className="flex size-full items-center justify-center text-slate-400" role="img" aria-label={`${alt} (not available)`}>
          <ImageOff className="size-6" aria-hidden />
        </div>
      ) : (
        <div className="size-full animate-pulse bg-slate-200" role="img" aria-label={`${alt} (loading)`} />
      )}
    </div>
  );
}
