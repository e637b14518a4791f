"""Direct uploads: a signed, expiring URL the client sends the bytes to, then an ingest by key.

With the local blob store the URL points at the API itself (`PUT /api/uploads/{token}`); the
bytes wait in `DATA_DIR/uploads/` until `POST /api/images/ingest` takes them. The token carries
the tenant, the collection and the upload id, signed with the server's secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jwt

from lookalike.auth.tokens import ALGORITHM, Principal, secret_key
from lookalike.catalog import new_id
from lookalike.core.config import Settings
from lookalike.core.errors import Conflict, ImageTooLarge, InvalidInput, NotFound, Unauthorized

_AUDIENCE = "lookalike-upload"
_USED = ".used"
_MAX_TTL_S = 24 * 3600
_KEY = re.compile(r"^uploads/([0-9A-HJKMNP-TV-Z]{26})$")


@dataclass(frozen=True)
class Presigned:
    key: str
    url: str
    method: str
    expires_at: datetime
    max_bytes: int


@dataclass(frozen=True)
class StagedUpload:
    key: str
    tenant: str
    collection_id: str
    filename: str | None
    data: bytes


def _dir(settings: Settings) -> Path:
    return settings.data_dir / "uploads"


def presign_upload(
    settings: Settings,
    caller: Principal,
    collection_id: str,
    *,
    filename: str | None = None,
    ttl_s: int = 900,
) -> Presigned:
    """A URL to PUT one image to, valid for `ttl_s` seconds, for the caller's tenant only."""
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
            "exp": expires,
        },
        secret_key(settings),
        algorithm=ALGORITHM,
    )
    base = (settings.public_url or "").rstrip("/")
    return Presigned(
        key=f"uploads/{upload_id}",
        url=f"{base}/api/uploads/{token}",
        method="PUT",
        expires_at=datetime.fromtimestamp(expires, UTC),
        max_bytes=settings.max_image_bytes,
    )


async def receive_upload(settings: Settings, token: str, body: AsyncIterator[bytes]) -> str:
    """Verify `token` and store the streamed body (refused past the byte limit). Returns the key."""
    try:
        claims = jwt.decode(token, secret_key(settings), algorithms=[ALGORITHM], audience=_AUDIENCE)
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the upload URL has expired; ask for a new one") from None
    except jwt.PyJWTError:
        raise Unauthorized("the upload URL is not valid") from None
    upload_id = str(claims["sub"])
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
                if size > settings.max_image_bytes:
                    raise ImageTooLarge(
                        f"the upload is over the limit of {settings.max_image_bytes} bytes"
                    )
                fh.write(chunk)
        if size == 0:
            raise InvalidInput("the upload is empty")
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


def take_upload(settings: Settings, tenant: str, key: str) -> StagedUpload:
    """The staged bytes under `key`, if they belong to `tenant`."""
    match = _KEY.match(key)
    if match is None:
        raise InvalidInput("key: expected 'uploads/<id>' as returned by /api/images/presign")
    upload_id = match.group(1)
    directory = _dir(settings)
    try:
        meta = json.loads((directory / f"{upload_id}.json").read_text())
        data = (directory / upload_id).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"nothing was uploaded under {key!r} (or it was ingested already)") from None
    if meta["tenant"] != tenant:
        raise NotFound(f"nothing was uploaded under {key!r} (or it was ingested already)")
    return StagedUpload(key, meta["tenant"], meta["collection"], meta.get("filename"), data)


def discard_upload(settings: Settings, key: str) -> None:
    """Remove the staged bytes once ingested, and remember until its URL expires that the
    upload was used, so that the URL cannot store a second file."""
    match = _KEY.match(key)
    if match is None:
        return
    directory = _dir(settings)
    upload_id = match.group(1)
    try:
        expires = json.loads((directory / f"{upload_id}.json").read_text())["expires"]
    except (FileNotFoundError, KeyError, ValueError):
        expires = int(time.time()) + _MAX_TTL_S
    (directory / f"{upload_id}{_USED}").write_text(str(expires))
    for name in (upload_id, f"{upload_id}.json"):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    _forget_expired(directory)


def _forget_expired(directory: Path) -> None:
    """Drop the marks of used uploads whose URLs have expired (they cannot be used anyway)."""
    now = time.time()
    for mark in directory.glob(f"*{_USED}"):
        with contextlib.suppress(FileNotFoundError, ValueError):
            if float(mark.read_text()) < now:
                mark.unlink()
