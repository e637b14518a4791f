"""`LocalBlobStore`: blobs as files in a directory tree, named by their sha256."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from lookalike.core.errors import NotFound, StorageError
from lookalike.storage.base import BlobStore, Referenced, StoredObject

__all__ = ["LocalBlobStore"]

# Keys are exactly what `hashlib.sha256().hexdigest()` returns. Checking this before a key
# touches the file system is what makes `../`, absolute paths and odd bytes impossible.
_KEY_RE = re.compile(r"[0-9a-f]{64}")
_TEMP_PREFIX = ".tmp-"
_DOOMED_PREFIX = ".doomed-"


class LocalBlobStore(BlobStore):
    """Content-addressed files under `root`, sharded as `root/ab/cd/<sha256>`.

    Two levels of 256 directories keep every directory small at millions of blobs. Writes go
    to a temporary file in the target directory, are fsynced and then renamed over the final
    name, so a reader or a crash never sees half a blob; the same bytes always land on the
    same name, so concurrent writers of one blob simply both succeed. The local store keeps
    no content type: the catalog holds each image's MIME type and thumbnails are always WebP.
    """

    def __init__(self, root: Path | str, *, fsync: bool = True) -> None:
        self.root = Path(root)
        # fsync makes a returned key durable: the catalog row that names it is committed right
        # after. Only tests that do not care about power loss should turn it off.
        self._fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    # --- BlobStore -----------------------------------------------------------

    def put(self, data: bytes, *, content_type: str, durable: bool = True) -> str:
        """Store `data` under its sha256 hex digest and return that key (idempotent)."""
        key = hashlib.sha256(data).hexdigest()
        final = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            # Same name and same size: the same bytes (the name is their hash). A wrong size
            # means the file was damaged outside this store, and writing it again repairs it.
            if final.stat().st_size == len(data):
                return key
        directory = final.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=directory)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    if self._fsync and durable:
                        os.fsync(handle.fileno())
                # Atomic on POSIX and Windows; a concurrent writer of the same key renames
                # identical bytes over it, which readers cannot tell apart.
                os.replace(temp_name, final)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp_name)
                raise
            if self._fsync and durable:
                _fsync_directory(directory)
        except OSError as exc:
            raise StorageError(
                f"Could not write a blob under {self.root}: {exc}. "
                "Check that the data directory is writable and the disk is not full."
            ) from exc
        return key

    def get(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError as exc:
            # Deleted between the check and the read.
            raise _not_found(key) from exc

    def exists(self, key: str) -> bool:
        return _KEY_RE.fullmatch(key) is not None and self._path(key).is_file()

    def delete(self, key: str) -> None:
        if _KEY_RE.fullmatch(key) is None:
            return
        # Shard directories stay: removing an empty one could race with a put into it.
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def delete_unreferenced(self, keys: Iterable[str], referenced: Referenced) -> list[str]:
        """Each unreferenced blob is first renamed aside, then the references are asked again:
        a writer whose row committed in between gets its blob renamed back; one that commits
        after finds no file and writes it again. Either way its original stays."""
        candidates = {k for k in keys if _KEY_RE.fullmatch(k)}
        candidates -= referenced(candidates)
        moved: dict[str, Path] = {}
        for key in sorted(candidates):
            final = self._path(key)
            aside = final.with_name(f"{_DOOMED_PREFIX}{key}.{os.getpid()}.{threading.get_ident()}")
            with contextlib.suppress(FileNotFoundError):
                os.rename(final, aside)
                moved[key] = aside
        if not moved:
            return []
        revived = referenced(set(moved))
        for key, aside in moved.items():
            if key in revived:
                # A writer may have stored the same bytes again meanwhile: identical either way.
                os.replace(aside, self._path(key))
            else:
                aside.unlink()
        return sorted(set(moved) - revived)

    def iter_keys(self) -> list[str]:
        """Every stored key, sorted. Ignores temporary files and anything not named like a key."""
        keys: list[str] = []
        for first in _subdirs(self.root):
            for second in _subdirs(first):
                prefix = first.name + second.name
                with os.scandir(second) as entries:
                    keys.extend(
                        entry.name
                        for entry in entries
                        if entry.is_file()
                        and _KEY_RE.fullmatch(entry.name)
                        and entry.name.startswith(prefix)
                    )
        keys.sort()
        return keys

    def list_blobs(self) -> list[StoredObject]:
        """Every stored blob with its size and modification time, sorted by key."""
        found: list[StoredObject] = []
        for key in self.iter_keys():
            with contextlib.suppress(FileNotFoundError):  # deleted since the listing
                stat = self._path(key).stat()
                found.append(StoredObject(key, stat.st_size, stat.st_mtime))
        return found

    def clean_leftovers(
        self, referenced: Referenced, *, older_than: float, fix: bool = True
    ) -> list[str]:
        """Blobs a collector renamed aside (`.doomed-<key>...`) and never came back to: renamed
        back when still referenced and the blob is not there again, deleted otherwise."""
        aside: dict[Path, str] = {}
        for first in _subdirs(self.root):
            for second in _subdirs(first):
                with os.scandir(second) as entries:
                    for entry in entries:
                        key = entry.name[len(_DOOMED_PREFIX) : len(_DOOMED_PREFIX) + 64]
                        if not entry.name.startswith(_DOOMED_PREFIX) or not _KEY_RE.fullmatch(key):
                            continue
                        with contextlib.suppress(FileNotFoundError):
                            # A rename keeps the mtime of the blob's write; the ctime is the
                            # rename's, which is when the collector set it aside.
                            if entry.stat(follow_symlinks=False).st_ctime < older_than:
                                aside[Path(entry.path)] = key
        if fix and aside:
            revived = referenced(set(aside.values()))
            for path, key in aside.items():
                with contextlib.suppress(FileNotFoundError):
                    if key in revived and not self._path(key).exists():
                        os.replace(path, self._path(key))
                    else:
                        path.unlink()
        return sorted(str(path.relative_to(self.root)) for path in aside)

    def open(self, key: str) -> BinaryIO:
        """The blob's file, opened for binary reading (streams without loading it whole)."""
        try:
            return self.path_for(key).open("rb")
        except FileNotFoundError as exc:
            raise _not_found(key) from exc

    # --- local only ----------------------------------------------------------

    def path_for(self, key: str) -> Path:
        """The file that holds `key`, for serving it with a file response.

        Raises `NotFound` for a malformed or absent key.
        """
        if _KEY_RE.fullmatch(key) is None:
            raise _not_found(key)
        path = self._path(key)
        if not path.is_file():
            raise _not_found(key)
        return path

    def _path(self, key: str) -> Path:
        return self.root / key[0:2] / key[2:4] / key


def _not_found(key: str) -> NotFound:
    shown = key if len(key) <= 80 else key[:77] + "..."
    return NotFound(f"No blob with key {shown!r}. Keys are sha256 hex digests of stored bytes.")


def _subdirs(directory: Path) -> list[Path]:
    with os.scandir(directory) as entries:
        return [
            Path(entry.path)
            for entry in entries
            if entry.is_dir(follow_symlinks=False) and re.fullmatch(r"[0-9a-f]{2}", entry.name)
        ]


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself; without this a crash can forget the new name (POSIX)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
