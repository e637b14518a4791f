"""Content hashes: sha256 for exact identity, a 64-bit perceptual hash (pHash) for look-alikes."""

from __future__ import annotations

import hashlib
import re

import imagehash
from PIL import Image

__all__ = ["phash_chunks", "phash_hamming", "phash_hex", "phash_int", "sha256_hex"]

_PHASH_RE = re.compile(r"[0-9a-f]{16}")
_PHASH_PREREDUCE_TO = 256


def sha256_hex(data: bytes) -> str:
    """The sha256 of `data` as 64 lowercase hex characters (also the blob key)."""
    return hashlib.sha256(data).hexdigest()


def phash_hex(image: Image.Image) -> str:
    """The 64-bit DCT perceptual hash of `image` as 16 lowercase hex characters.

    Resizing, recompression and small edits move it by a few bits; different photos differ in
    about half of them. It is computed on a 32x32 grayscale copy, so an image already reduced
    by `decode_image(..., reduce_for=...)` hashes just as well.
    """
    gray = image.convert("L")
    # A cheap box reduction first: LANCZOS straight from 12 Mpx to 32x32 took ~40 ms, and the
    # hash of the reduced copy differed from it by 0-2 bits on the sample photos.
    factor = min(gray.size) // _PHASH_PREREDUCE_TO
    if factor >= 2:
        gray = gray.reduce(factor)
    return str(imagehash.phash(gray, hash_size=8))


def phash_int(value: str) -> int:
    """A pHash hex string as an unsigned 64-bit integer; `ValueError` when it is not one."""
    normalized = value.strip().lower()
    if not _PHASH_RE.fullmatch(normalized):
        raise ValueError(f"a pHash is 16 hex characters, got {value!r}")
    return int(normalized, 16)


PHASH_CHUNKS = 4
PHASH_CHUNK_BITS = 16


def phash_chunks(phash: str) -> dict[str, str]:
    """A pHash as four 16-bit chunks (`phash_q0`..`phash_q3`, 4 hex digits each).

    Stored in the vector payload, they let the engine's keyword index find near pHashes
    (multi-index hashing; see `lookalike.imaging.phash_index`).
    """
    value = phash_int(phash)
    return {
        f"phash_q{i}": f"{(value >> (PHASH_CHUNK_BITS * (PHASH_CHUNKS - 1 - i))) & 0xFFFF:04x}"
        for i in range(PHASH_CHUNKS)
    }


def phash_hamming(a: str, b: str) -> int:
    """How many of the 64 bits differ between two pHash hex strings (0 = same picture)."""
    return (phash_int(a) ^ phash_int(b)).bit_count()
