"""Images: catalog fields and preview, thumbnail and original bytes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse

from lookalike.api.deps import Caller, Runtime
from lookalike.api.schemas import ImageOut
from lookalike.catalog.repository import get_image
from lookalike.core.errors import NotFound
from lookalike.dedup.verdicts import records_of
from lookalike.records.thumbnails import thumbnail_of

router = APIRouter(prefix="/api/images", tags=["images"])

# Blobs are content-addressed, so a URL's bytes never change. Uploaded bytes are served as the
# image type they were validated as and nothing else: no sniffing (a GIF that is also HTML stays
# a GIF), and a sandbox with no scripts should a browser render one as a page anyway.
_IMMUTABLE = {
    "Cache-Control": "private, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
}
# A presigned original's lifetime (blobs on S3): long enough to start a download, short for a
# leaked link.
_ORIGINAL_URL_TTL_S = 300


@router.get("/{image_id}")
def read_image(image_id: str, rt: Runtime, caller: Caller) -> ImageOut:
    with rt.catalog.session() as session:
        image = ImageOut.model_validate(get_image(session, caller.tenant, image_id))
    update: dict[str, Any] = {"enrichment": rt.enrichment.queue.of_image(image.id)}
    if image.duplicate is not None:
        # Name the record the verdict points at, as upload results do.
        found = records_of(rt.catalog, [image.duplicate.image_id]).get(image.duplicate.image_id)
        if found is not None:
            record_id, name = found
            update["duplicate"] = image.duplicate.model_copy(
                update={"record_id": record_id, "record_name": name}
            )
    return image.model_copy(update=update)


@router.get("/{image_id}/thumbnail", response_class=Response)
def read_thumbnail(image_id: str, rt: Runtime, caller: Caller) -> Response:
    with rt.catalog.session() as session:
        image = get_image(session, caller.tenant, image_id)
    return Response(thumbnail_of(rt, image), media_type="image/webp", headers=_IMMUTABLE)


@router.get(
    "/{image_id}/original",
    response_class=Response,
    responses={307: {"description": "Blobs on S3: a short-lived presigned URL of the original."}},
)
def read_original(image_id: str, rt: Runtime, caller: Caller) -> Response:
    """The original bytes, or with blobs on S3 a redirect to a presigned URL that S3 serves them
    from, as the validated image type and under the uploaded file's name."""
    with rt.catalog.session() as session:
        image = get_image(session, caller.tenant, image_id)
    if image.blob_key is None:
        raise NotFound(f"image {image_id!r} has no stored original")
    url = rt.blobs.download_url(
        image.blob_key,
        content_type=image.mime or "application/octet-stream",
        filename=image.filename,
        expires_in=_ORIGINAL_URL_TTL_S,
    )
    if url is not None:
        # The redirect may be reused while its URL is valid: the browser then asks S3 for the
        # same URL again, and its cache answers (each new URL would be a new download).
        return RedirectResponse(
            url,
            status_code=307,
            headers={"Cache-Control": f"private, max-age={_ORIGINAL_URL_TTL_S - 60}"},
        )
    return Response(rt.blobs.get(image.blob_key), media_type=image.mime, headers=_IMMUTABLE)
