"""The pHash gate: keep only images whose perceptual hash is within a Hamming distance.

Multi-index hashing: each 64-bit pHash is stored in the vector payload as four 16-bit chunks
(`phash_q0`..`phash_q3`, keyword-indexed). Two hashes within distance d differ in at most
floor(d / 4) bits of at least one chunk (pigeonhole), so the candidates are the points sharing a
chunk with one of the query's chunk variants at that radius; the engine finds them through its
payload index, and the exact distance is checked afterwards.
"""

from __future__ import annotations

from itertools import combinations

from lookalike.imaging import phash_hamming, phash_int
from lookalike.imaging.hashes import PHASH_CHUNK_BITS as CHUNK_BITS
from lookalike.imaging.hashes import PHASH_CHUNKS as CHUNKS
from lookalike.vectors.base import Condition, Filter, MatchAny

MAX_GATE = 11  # radius 2 per chunk: 137 variants a chunk; beyond that the gate stops being cheap


def _variants(chunk: int, radius: int) -> list[str]:
    out = []
    for r in range(radius + 1):
        for bits in combinations(range(CHUNK_BITS), r):
            flipped = chunk
            for b in bits:
                flipped ^= 1 << b
            out.append(f"{flipped:04x}")
    return out


def candidate_filter(phash: str, max_distance: int) -> Filter:
    """Matches every point whose pHash may be within `max_distance` of `phash` (and others)."""
    if not 0 <= max_distance <= MAX_GATE:
        raise ValueError(f"the pHash gate is 0..{MAX_GATE} bits")
    radius = max_distance // CHUNKS
    value = phash_int(phash)
    should: list[Condition] = []
    for i in range(CHUNKS):
        chunk = (value >> (CHUNK_BITS * (CHUNKS - 1 - i))) & 0xFFFF
        should.append(MatchAny(f"phash_q{i}", tuple(_variants(chunk, radius))))
    return Filter(should=tuple(should))


def within(phash: str | None, query: str, max_distance: int) -> bool:
    return phash is not None and phash_hamming(phash, query) <= max_distance
