"""Direct uploads: a signed, expiring URL the client sends the bytes to, then an ingest by key.

Where the bytes wait depends on the blob store:

- local: the URL points at the API itself (`PUT /api/uploads/{token}`); the bytes wait in
  `DATA_DIR/uploads/` until `POST /api/images/ingest` takes them. The token in the URL carries
  the tenant, the collection and the upload id, signed with the server's secret.
- S3 (a store with `UploadStaging`): the URL is a presigned PUT from S3 itself, so a browser
  sends the bytes straight to the bucket (`PREFIX/uploads/<id>`) and they never touch the API's
  disk. The same signed token waits beside them as `PREFIX/uploads/<id>.ticket`, written by the
  API at presign time: the ingest reads the tenant and collection from it, so that any API
  replica can take the upload and nobody can pick its own collection by writing to the bucket.

Either way a staged upload lives until it is ingested or until the reconciler's sweep finds it
older than the URL's lifetime (`sweep_staged_uploads`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from lookalike.auth.tokens import ALGORITHM, Principal, secret_key
from lookalike.catalog import new_id
from lookalike.core.config import Settings
from lookalike.core.errors import (
    Conflict,
    ImageTooLarge,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from lookalike.storage.base import BlobStore, UploadStaging

__all__ = [
    "UPLOAD_TTL_S",
    "Presigned",
    "StagedUpload",
    "discard_upload",
    "presign_upload",
    "receive_upload",
    "sweep_staged_uploads",
    "take_upload",
]

# How long a presigned URL lives; the sweep deletes what is staged this long after its last write.
UPLOAD_TTL_S = 900
_AUDIENCE = "lookalike-upload"
_USED = ".used"
_TICKET = ".ticket"
_MAX_TTL_S = 24 * 3600
_MAX_TICKET_BYTES = 64 * 1024
_ID = r"[0-9A-HJKMNP-TV-Z]{26}"
_KEY = re.compile(rf"^uploads/({_ID})$")
# Names in DATA_DIR/uploads: <id>, <id>.json, .<id>.part, <id>.used (and S3's <id>.ticket).
_STAGED_NAME = re.compile(rf"^\.?({_ID})(?:\.json|\.part|\.ticket)?$")


@dataclass(frozen=True)
class Presigned:
    """Where and how to send one upload: `method` to `url` with `headers`, at most `max_bytes`,
    before `expires_at`; then ingest it by `key`."""

    key: str
    url: str
    method: str
    expires_at: datetime
    max_bytes: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StagedUpload:
    key: str
    tenant: str
    collection_id: str
    filename: str | None
    data: bytes


def _dir(settings: Settings) -> Path:
    return settings.data_dir / "uploads"


def _not_uploaded(key: str) -> NotFound:
    return NotFound(f"nothing was uploaded under {key!r} (or it was ingested already)")


def upload_limit(settings: Settings, filename: str | None) -> int:
    """The most bytes an upload may have: a PDF's limit for a file named `*.pdf` (the ingest
    checks the bytes are a PDF), the image limit otherwise."""
    if filename is not None and filename.lower().endswith(".pdf"):
        return settings.pdf_max_bytes
    return settings.max_image_bytes


def presign_upload(
    settings: Settings,
    blobs: BlobStore,
    caller: Principal,
    collection_id: str,
    *,
    filename: str | None = None,
    size: int | None = None,
    ttl_s: int = UPLOAD_TTL_S,
) -> Presigned:
    """A URL to PUT one image to, valid for `ttl_s` seconds, for the caller's tenant only.

    With `size` (the bytes the client is about to send) an image over the limit is refused
    now, and the URL takes exactly that many bytes: S3 checks it itself, the local endpoint on
    receipt. Without it the limit is enforced when the upload is ingested.
    """
    limit = upload_limit(settings, filename)
    if size is not None and size > limit:
        raise ImageTooLarge(f"the upload is {size} bytes, over the limit of {limit} bytes")
    upload_id = new_id()
    expires = int(time.time()) + ttl_s
    token = jwt.encode(
        {
            "aud": _AUDIENCE,
            "sub": upload_id,
            "tenant": caller.tenant,
            "user": caller.user,
            "collection": collection_id,
            "filename": filename,
            "size": size,
            "exp": expires,
        },
        secret_key(settings),
        algorithm=ALGORITHM,
    )
    staging = blobs.upload_staging()
    headers: dict[str, str] = {}
    if staging is None:
        base = (settings.public_url or "").rstrip("/")
        url = f"{base}/api/uploads/{token}"
    else:
        # The ticket first: an upload that arrives finds it in place.
        staging.staging_write(f"{upload_id}{_TICKET}", token.encode())
        url, headers = staging.staging_put_url(upload_id, expires_in=ttl_s, content_length=size)
    return Presigned(
        key=f"uploads/{upload_id}",
        url=url,
        method="PUT",
        expires_at=datetime.fromtimestamp(expires, UTC),
        max_bytes=limit,
        headers=headers,
    )


async def receive_upload(
    settings: Settings, blobs: BlobStore, token: str, body: AsyncIterator[bytes]
) -> str:
    """Verify `token` and store the streamed body (refused past the byte limit). Returns the key.

    Only with the local blob store: with S3 the bytes go to the bucket, never to this disk.
    """
    if blobs.upload_staging() is not None:
        raise NotFound(
            "this server takes uploads straight into its blob store: PUT the bytes to the URL "
            "that POST /api/images/presign returns"
        )
    try:
        claims = jwt.decode(token, secret_key(settings), algorithms=[ALGORITHM], audience=_AUDIENCE)
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the upload URL has expired; ask for a new one") from None
    except jwt.PyJWTError:
        raise Unauthorized("the upload URL is not valid") from None
    upload_id = str(claims["sub"])
    declared = claims.get("size")
    limit = upload_limit(settings, claims.get("filename"))
    directory = _dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / upload_id
    temp = directory / f".{upload_id}.part"
    used = Conflict(
        "this upload URL was used already; ask for a new one (POST /api/images/presign)"
    )
    if final.exists() or (directory / f"{upload_id}{_USED}").exists():
        raise used
    try:
        fh = temp.open("xb")  # a second PUT of the same URL at the same time gets the 409
    except FileExistsError:
        raise used from None
    size = 0
    try:
        with fh:
            async for chunk in body:
                size += len(chunk)
                if size > limit:
                    raise ImageTooLarge(f"the upload is over the limit of {limit} bytes")
                fh.write(chunk)
        if size == 0:
            raise InvalidInput("the upload is empty")
        if declared is not None and size != declared:
            # As S3 refuses a body of another length than the URL was signed for.
            raise InvalidInput(f"the upload is {size} bytes; the URL was made for {declared}")
        meta = {
            "tenant": claims["tenant"],
            "collection": claims["collection"],
            "filename": claims.get("filename"),
            "expires": claims["exp"],
        }
        (directory / f"{upload_id}.json").write_text(json.dumps(meta))
        os.replace(temp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return f"uploads/{upload_id}"


def take_upload(settings: Settings, blobs: BlobStore, tenant: str, key: str) -> StagedUpload:
    """The staged bytes under `key`, if they belong to `tenant` (read into memory, at most the
    byte limit of them)."""
    match = _KEY.match(key)
    if match is None:
        raise InvalidInput("key: expected 'uploads/<id>' as returned by /api/images/presign")
    upload_id = match.group(1)
    staging = blobs.upload_staging()
    if staging is not None:
        return _take_staged(settings, staging, tenant, key, upload_id)
    directory = _dir(settings)
    try:
        meta = json.loads((directory / f"{upload_id}.json").read_text())
        data = (directory / upload_id).read_bytes()
    except FileNotFoundError:
        raise _not_uploaded(key) from None
    if meta["tenant"] != tenant:
        raise _not_uploaded(key)
    return StagedUpload(key, meta["tenant"], meta["collection"], meta.get("filename"), data)


def _take_staged(
    settings: Settings, staging: UploadStaging, tenant: str, key: str, upload_id: str
) -> StagedUpload:
    claims = _read_ticket(settings, staging, key, upload_id)
    if claims.get("tenant") != tenant:
        raise _not_uploaded(key)  # another tenant's upload does not exist for this one
    limit = upload_limit(settings, claims.get("filename"))
    try:
        size, body = staging.staging_open(upload_id)
    except NotFound:
        raise NotFound(
            f"nothing has been sent for {key!r} yet: PUT the file to the URL that "
            "POST /api/images/presign returned, then ingest it"
        ) from None
    with body:
        if size > limit:
            # Never read: the caller must start again with a smaller file.
            staging.staging_delete([upload_id, f"{upload_id}{_TICKET}"])
            raise ImageTooLarge(f"the upload is {size} bytes, over the limit of {limit} bytes")
        # One more byte than allowed: an object replaced since it was opened cannot slip past.
        data = body.read(limit + 1)
    if len(data) > limit:
        staging.staging_delete([upload_id, f"{upload_id}{_TICKET}"])
        raise ImageTooLarge(f"the upload is over the limit of {limit} bytes")
    if not data:
        raise InvalidInput("the upload is empty")
    return StagedUpload(
        key, str(claims["tenant"]), str(claims["collection"]), claims.get("filename"), data
    )


def _read_ticket(
    settings: Settings, staging: UploadStaging, key: str, upload_id: str
) -> dict[str, Any]:
    try:
        size, body = staging.staging_open(f"{upload_id}{_TICKET}")
    except NotFound:
        raise _not_uploaded(key) from None
    with body:
        token = body.read(_MAX_TICKET_BYTES) if size <= _MAX_TICKET_BYTES else b""
    try:
        # The URL's expiry limits when bytes may be sent, not when they may be ingested: the
        # sweep removes what waits too long.
        claims: dict[str, Any] = jwt.decode(
            token,
            secret_key(settings),
            algorithms=[ALGORITHM],
            audience=_AUDIENCE,
            options={"verify_exp": False},
        )
    except jwt.PyJWTError:
        # Written by someone with access to the bucket but not the server's secret.
        raise _not_uploaded(key) from None
    if claims.get("sub") != upload_id:
        raise _not_uploaded(key)
    return claims


def discard_upload(settings: Settings, blobs: BlobStore, key: str) -> None:
    """Remove the staged bytes once ingested, so that the key cannot be ingested twice.

    Locally, also remember until its URL expires that the upload was used, so that the URL
    cannot store a second file. A presigned S3 URL can be used again until it expires; what a
    second PUT leaves has no ticket, cannot be ingested, and goes with the next sweep.
    """
    match = _KEY.match(key)
    if match is None:
        return
    upload_id = match.group(1)
    staging = blobs.upload_staging()
    if staging is not None:
        # The ticket first: without it the key is unknown, whatever happens next.
        staging.staging_delete([f"{upload_id}{_TICKET}", upload_id])
        return
    directory = _dir(settings)
    try:
        expires = json.loads((directory / f"{upload_id}.json").read_text())["expires"]
    except (FileNotFoundError, KeyError, ValueError):
        expires = int(time.time()) + _MAX_TTL_S
    (directory / f"{upload_id}{_USED}").write_text(str(expires))
    for name in (upload_id, f"{upload_id}.json"):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    _forget_expired(directory)


def sweep_staged_uploads(
    settings: Settings, blobs: BlobStore, *, older_than: float, fix: bool = True
) -> list[str]:
    """The keys of staged uploads nothing has written to since `older_than` (seconds since the
    epoch): presigned and never sent, or sent and never ingested. With `fix` they are deleted.

    An upload's age is that of its newest part (ticket or bytes), so bytes sent just before
    the URL expired still have a whole URL lifetime to be ingested.
    """
    staging = blobs.upload_staging()
    groups: dict[str, list[tuple[str, float]]] = {}
    if staging is not None:
        for item in staging.staging_list():
            match = _STAGED_NAME.match(item.name)
            if match is not None:
                groups.setdefault(match.group(1), []).append((item.name, item.modified))
    else:
        directory = _dir(settings)
        if not directory.is_dir():
            return []
        _forget_expired(directory)
        # `.used` marks stay: each holds its URL's expiry, and goes once that has passed.
        for path in directory.iterdir():
            match = _STAGED_NAME.match(path.name)
            if match is not None:
                with contextlib.suppress(FileNotFoundError):
                    modified = path.stat().st_mtime
                    groups.setdefault(match.group(1), []).append((path.name, modified))
    stale = sorted(
        upload_id
        for upload_id, parts in groups.items()
        if max(modified for _, modified in parts) < older_than
    )
    if fix:
        for upload_id in stale:
            names = [name for name, _ in groups[upload_id]]
            if staging is not None:
                # The ticket first, as `discard_upload` does.
                staging.staging_delete(sorted(names, key=lambda n: not n.endswith(_TICKET)))
            else:
                for name in names:
                    with contextlib.suppress(FileNotFoundError):
                        (_dir(settings) / name).unlink()
    return [f"uploads/{upload_id}" for upload_id in stale]


def _forget_expired(directory: Path) -> None:
    """Drop the marks of used uploads whose URLs have expired (they cannot be used anyway)."""
    now = time.time()
    for mark in directory.glob(f"*{_USED}"):
        with contextlib.suppress(FileNotFoundError, ValueError):
            if float(mark.read_text()) < now:
                mark.unlink()
