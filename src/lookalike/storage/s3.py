"""`S3BlobStore`: blobs as objects in an S3 bucket (AWS, MinIO, SeaweedFS), named by their sha256.

Objects live at `PREFIX/<sha256>` in one flat "folder": S3 has no directories to keep small. An
S3 PUT is atomic (readers see the old object or the whole new one), which is what the local
store's temporary file and rename buy, so a put is one upload, and large blobs go up in parts
through boto3's managed transfer. Clients upload to `PREFIX/uploads/` through presigned PUT
URLs (`UploadStaging`) and download originals through presigned GET URLs, so neither the
bytes of an upload nor those of a download pass through the API's disk. Every failure to reach
or use S3 becomes a `StorageError` that names the endpoint and bucket; the callers above never
see botocore's exceptions.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast
from urllib.parse import quote

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lookalike.core.errors import BlobStoreUnavailable, Misconfigured, NotFound, StorageError
from lookalike.storage.base import BlobStore, Referenced, StoredObject, UploadStaging

__all__ = ["MULTIPART_THRESHOLD", "S3BlobStore"]

_KEY_RE = re.compile(r"[0-9a-f]{64}")
# Blobs the collector has set aside while it asks the catalog again (see delete_unreferenced).
_DOOMED = ".doomed/"
# Objects clients upload directly, until the API ingests them.
_STAGING = "uploads/"
_STAGING_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")
MULTIPART_THRESHOLD = 8 * 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3BlobStore(BlobStore, UploadStaging):
    """Content-addressed objects under `s3://bucket/prefix/`, and clients' direct uploads under
    `s3://bucket/prefix/uploads/` until they are ingested.

    The bucket must exist: the store never creates one, so a typo in `LOOKALIKE_BLOBS` fails at
    start-up with the bucket's name rather than filling a new, unintended bucket.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
    ) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self._threshold = multipart_threshold
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                # Path-style addressing works on every S3 server; virtual hosts need DNS for
                # each bucket, which MinIO and SeaweedFS set-ups rarely have.
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
                # The ingest pipeline and the enrichment stages share one client.
                max_pool_connections=32,
            ),
        )
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(multipart_threshold, 5 * 1024 * 1024),
            use_threads=True,
        )
        self._check_bucket()

    def __repr__(self) -> str:
        return f"S3BlobStore('s3://{self.bucket}/{self.prefix}', endpoint={self.endpoint_url!r})"

    # --- BlobStore -----------------------------------------------------------

    def put(self, data: bytes, *, content_type: str, durable: bool = True) -> str:
        """Store `data` under its sha256 hex digest and return that key (idempotent).

        `durable` has no effect: S3 acknowledges a PUT only once the object is stored.
        """
        digest = hashlib.sha256(data)
        key = digest.hexdigest()
        with self._errors(f"store blob {key}"):
            head = self._head(key)
            # Same name and same size: the same bytes (the name is their hash).
            if head is not None and head.get("ContentLength") == len(data):
                return key
            if len(data) < self._threshold:
                # S3 checks the bytes against the checksum: what it stores is what we hashed.
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=self._object(key),
                    Body=data,
                    ContentType=content_type,
                    ChecksumSHA256=base64.b64encode(digest.digest()).decode(),
                )
            else:
                self._client.upload_fileobj(
                    io.BytesIO(data),
                    self.bucket,
                    self._object(key),
                    ExtraArgs={"ContentType": content_type},
                    Config=self._transfer,
                )
        return key

    def get(self, key: str) -> bytes:
        handle = self.open(key)
        # The body streams: a connection can still fail while it is read.
        with self._errors(f"read blob {key}"), handle:
            return handle.read()

    def exists(self, key: str) -> bool:
        if _KEY_RE.fullmatch(key) is None:
            return False
        with self._errors(f"look up blob {key}"):
            return self._head(key) is not None

    def delete(self, key: str) -> None:
        if _KEY_RE.fullmatch(key) is None:
            return
        with self._errors(f"delete blob {key}"):
            # Deleting an absent object succeeds in S3.
            self._client.delete_object(Bucket=self.bucket, Key=self._object(key))

    def delete_unreferenced(self, keys: Iterable[str], referenced: Referenced) -> list[str]:
        """As the local store does, with a server-side copy in place of the rename: each
        unreferenced blob is copied aside and deleted, then the references are asked again; a
        writer whose row committed in between gets its blob copied back, one that commits after
        finds no object and uploads it again."""
        candidates = {k for k in keys if _KEY_RE.fullmatch(k)}
        candidates -= referenced(candidates)
        moved: dict[str, str] = {}
        tag = f"{os.getpid()}.{threading.get_ident()}"
        with self._errors("collect unreferenced blobs"):
            for key in sorted(candidates):
                aside = f"{self.prefix}{_DOOMED}{key}.{tag}"
                if self._copy(self._object(key), aside):
                    self._client.delete_object(Bucket=self.bucket, Key=self._object(key))
                    moved[key] = aside
            if not moved:
                return []
            revived = referenced(set(moved))
            for key, aside in moved.items():
                if key in revived:
                    # A writer may have uploaded the same bytes again meanwhile: identical.
                    self._copy(aside, self._object(key))
                self._client.delete_object(Bucket=self.bucket, Key=aside)
        return sorted(set(moved) - revived)

    def iter_keys(self) -> list[str]:
        """Every stored key, sorted. Ignores objects under the prefix not named like a key."""
        keys: list[str] = []
        with self._errors("list blobs"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    name = str(item["Key"])[len(self.prefix) :]
                    if _KEY_RE.fullmatch(name):
                        keys.append(name)
        keys.sort()
        return keys

    def list_blobs(self) -> list[StoredObject]:
        """Every stored blob with its size and S3's time of last write, sorted by key."""
        return sorted(
            (
                StoredObject(name, size, modified)
                for name, size, modified in self._list(self.prefix)
                if _KEY_RE.fullmatch(name)
            ),
            key=lambda blob: blob.name,
        )

    def clean_leftovers(
        self, referenced: Referenced, *, older_than: float, fix: bool = True
    ) -> list[str]:
        """Blobs set aside under `PREFIX/.doomed/` by a collector that never came back (copied
        back when still referenced and absent, then dropped), and multipart uploads under the
        prefix never completed (aborted: S3 keeps, and bills, their parts until then)."""
        found: list[str] = []
        with self._errors("clean up after interrupted operations"):
            aside = {
                name: name[:64]
                for name, _, modified in self._list(f"{self.prefix}{_DOOMED}")
                if modified < older_than and _KEY_RE.fullmatch(name[:64])
            }
            found += [f"{_DOOMED}{name}" for name in sorted(aside)]
            if fix and aside:
                revived = referenced(set(aside.values()))
                for name, key in aside.items():
                    source = f"{self.prefix}{_DOOMED}{name}"
                    if key in revived and self._head(key) is None:
                        self._copy(source, self._object(key))
                    self._client.delete_object(Bucket=self.bucket, Key=source)
            pages = self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"].timestamp() >= older_than:
                        continue  # may be a put in progress
                    found.append(f"multipart:{upload['Key']}")
                    if fix:
                        with contextlib.suppress(ClientError):  # completed or aborted meanwhile
                            self._client.abort_multipart_upload(
                                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                            )
        return found

    def download_url(
        self, key: str, *, content_type: str, filename: str | None, expires_in: int
    ) -> str | None:
        """A presigned GET that S3 answers with `content_type`, the download name and a
        year-long private cache lifetime (the bytes under a key never change)."""
        params = {
            "Key": self.object_key(key),
            "ResponseContentType": content_type,
            "ResponseCacheControl": "private, max-age=31536000, immutable",
        }
        if filename:
            params["ResponseContentDisposition"] = _inline(filename)
        return self._presign("get_object", params, expires_in)

    def upload_staging(self) -> UploadStaging:
        return self

    # --- UploadStaging -------------------------------------------------------

    def staging_put_url(
        self, name: str, *, expires_in: int, content_length: int | None = None
    ) -> tuple[str, dict[str, str]]:
        """A presigned PUT to `PREFIX/uploads/<name>`. With `content_length` the signature
        covers the Content-Length header, which every HTTP client sets from the body, so S3
        answers any other size with 403 and the client need send no header of its own. The
        Content-Type is not signed: a browser sends the file's, and the ingest decides the
        type from the bytes anyway."""
        params: dict[str, Any] = {"Key": self._staged(name)}
        if content_length is not None:
            params["ContentLength"] = content_length
        return self._presign("put_object", params, expires_in), {}

    def staging_write(self, name: str, data: bytes) -> None:
        with self._errors(f"write the staged object {name}"):
            self._client.put_object(Bucket=self.bucket, Key=self._staged(name), Body=data)

    def staging_open(self, name: str) -> tuple[int, BinaryIO]:
        with self._errors(f"read the staged object {name}"):
            try:
                answer = self._client.get_object(Bucket=self.bucket, Key=self._staged(name))
            except ClientError as exc:
                if _error_code(exc) in _MISSING:
                    raise NotFound(f"No staged upload named {name!r}.") from None
                raise
        return int(answer["ContentLength"]), cast(BinaryIO, answer["Body"])

    def staging_delete(self, names: Iterable[str]) -> None:
        with self._errors("delete staged uploads"):
            for name in names:
                self._client.delete_object(Bucket=self.bucket, Key=self._staged(name))

    def staging_list(self) -> list[StoredObject]:
        with self._errors("list staged uploads"):
            return [
                StoredObject(name, size, modified)
                for name, size, modified in self._list(f"{self.prefix}{_STAGING}")
                if _STAGING_NAME.fullmatch(name)
            ]

    def open(self, key: str) -> BinaryIO:
        """The object's body, streamed from S3 as it is read."""
        if _KEY_RE.fullmatch(key) is None:
            raise _not_found(key)
        with self._errors(f"read blob {key}"):
            try:
                answer = self._client.get_object(Bucket=self.bucket, Key=self._object(key))
            except ClientError as exc:
                if _error_code(exc) in _MISSING:
                    raise _not_found(key) from None
                raise
        return cast(BinaryIO, answer["Body"])

    # --- S3 only -------------------------------------------------------------

    def object_key(self, key: str) -> str:
        """The S3 object name of blob `key` in `bucket` (raises `NotFound` for a malformed key)."""
        if _KEY_RE.fullmatch(key) is None:
            raise _not_found(key)
        return self._object(key)

    def presigned_get_url(self, key: str, *, expires_in: int = 900) -> str:
        """A URL that lets anyone holding it GET blob `key` from S3 for `expires_in` seconds,
        so that a client fetches originals from S3 rather than through the API."""
        return self._presign("get_object", {"Key": self.object_key(key)}, expires_in)

    def presigned_put_url(
        self, sha256: str, *, content_type: str, expires_in: int = 900
    ) -> tuple[str, dict[str, str]]:
        """A URL and the headers to PUT the bytes whose sha256 hex digest is `sha256` straight
        to S3. The URL signs the checksum: S3 itself refuses any other bytes, so the object is
        content-addressed however the client behaves."""
        name = self.object_key(sha256)
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        url = self._presign(
            "put_object",
            {
                "Key": name,
                "ContentType": content_type,
                "ChecksumSHA256": checksum,
            },
            expires_in,
        )
        return url, {"Content-Type": content_type, "x-amz-checksum-sha256": checksum}

    # --- helpers -------------------------------------------------------------

    def _object(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _staged(self, name: str) -> str:
        if _STAGING_NAME.fullmatch(name) is None:
            raise NotFound(f"No staged upload named {name[:80]!r}.")
        return f"{self.prefix}{_STAGING}{name}"

    def _list(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        """(name after `prefix`, size, last write) of the objects right under `prefix`."""
        with self._errors("list objects"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    name = str(item["Key"])[len(prefix) :]
                    yield name, int(item["Size"]), item["LastModified"].timestamp()

    def _presign(self, method: str, params: dict[str, Any], expires_in: int) -> str:
        with self._errors("sign a URL"):
            url = self._client.generate_presigned_url(
                method, Params={"Bucket": self.bucket, **params}, ExpiresIn=expires_in
            )
        return str(url)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return cast(
                dict[str, Any],
                self._client.head_object(Bucket=self.bucket, Key=self._object(key)),
            )
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                return None
            raise

    def _copy(self, source: str, target: str) -> bool:
        """Server-side copy; False when `source` is gone."""
        try:
            self._client.copy(
                {"Bucket": self.bucket, "Key": source}, self.bucket, target, Config=self._transfer
            )
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                return False
            raise
        return True

    def _check_bucket(self) -> None:
        with self._errors("check the bucket"):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _error_code(exc) in {"404", "NoSuchBucket", "NotFound"}:
                    raise Misconfigured(
                        f"The S3 bucket {self.bucket!r} does not exist at {self._where()}. "
                        f"Create it (e.g. `aws s3 mb s3://{self.bucket}`), or point "
                        "LOOKALIKE_BLOBS at an existing one."
                    ) from None
                raise

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or _error_code(exc) in _BUSY_CODES:
                # The server is there but cannot serve now (starting, overloaded, a volume
                # away): an outage to wait out, not a fault of this blob.
                raise BlobStoreUnavailable(
                    f"Could not {doing} in the S3 blob store {self._location()}: "
                    f"{error.get('Code', '?')} {error.get('Message', '')}".rstrip()
                ) from exc
            raise StorageError(
                f"Could not {doing} in the S3 blob store {self._location()}: "
                f"{error.get('Code', '?')} {error.get('Message', '')}".rstrip()
                + _hint(_error_code(exc))
            ) from exc
        except (BotoCoreError, Boto3Error) as exc:
            raise BlobStoreUnavailable(
                f"Could not {doing} in the S3 blob store {self._location()}: {exc}. Check that "
                "the endpoint is reachable (LOOKALIKE_S3_ENDPOINT) and the AWS credentials."
            ) from exc

    def _location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self._where()}"

    def _where(self) -> str:
        return self.endpoint_url or "the AWS default endpoint"


def _inline(filename: str) -> str:
    """A Content-Disposition that shows the image and names it `filename` when saved: an ASCII
    fallback without quotes or controls, and the exact name in RFC 5987 form."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1][:200] or "image"
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


_BUSY_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling"}
)


def _hint(code: str) -> str:
    if code in {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
        return ". Check the AWS credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)."
    return ""


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _not_found(key: str) -> NotFound:
    shown = key if len(key) <= 80 else key[:77] + "..."
    return NotFound(f"No blob with key {shown!r}. Keys are sha256 hex digests of stored bytes.")
