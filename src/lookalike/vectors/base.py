"""The `VectorIndex` interface and the engine-neutral types it speaks.

Every engine (Qdrant Edge in-process, Qdrant server, Milvus, pgvector) implements `VectorIndex`
and passes `tests/vectors/test_contract.py`. Engines never import the catalog: they see ids,
vectors and payload dicts only.

Point ids are ULID strings (the image ids); an engine that needs another form (Qdrant: UUID)
converts losslessly in both directions.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray

from lookalike.core.errors import InvalidInput

Distance = Literal["cosine", "dot", "euclid"]
PayloadType = Literal["keyword", "integer", "float", "datetime", "bool"]


@dataclass(frozen=True)
class VectorSpec:
    """One named vector of a collection. `multivector` stores a list of vectors per point, scored
    by MaxSim."""

    name: str
    dim: int
    distance: Distance = "cosine"
    multivector: bool = False


@dataclass(frozen=True)
class IndexSettings:
    """How a collection is indexed. `int8` keeps a quantized copy for search (rescored with the
    originals)."""

    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    quantization: Literal["none", "int8"] = "none"
    # Points not yet in the HNSW index are scanned exactly; once this many have gathered,
    # `maybe_build_index` starts a build.
    indexing_threshold: int = 20_000


@dataclass
class Point:
    """A point: a ULID `id`, vectors by name ((dim,) or, for a multivector, (n, dim)) and a
    JSON-like payload. Datetimes in a payload are stored as ISO 8601 strings (naive = UTC)."""

    id: str
    vectors: dict[str, NDArray[np.float32]]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any] | None = None


# --- filters ---------------------------------------------------------------


# Filters are checked when they are made, so that no engine ever sees a value it cannot hold:
# a NaN bound panicked inside Qdrant Edge, and engines keep integers in 64 bits.
_INT64 = range(-(2**63), 2**63)


def _check_value(key: str, value: object) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        raise InvalidInput(f"filter on {key!r}: {value} does not fit in a 64-bit integer")


@dataclass(frozen=True)
class MatchValue:
    """`key` equals `value` (for a list field: contains it)."""

    key: str
    value: str | int | bool

    def __post_init__(self) -> None:
        _check_value(self.key, self.value)


@dataclass(frozen=True)
class MatchAny:
    """`key` equals any of `values` (for a list field: shares one with it)."""

    key: str
    values: tuple[str | int, ...]

    def __post_init__(self) -> None:
        for value in self.values:
            _check_value(self.key, value)


@dataclass(frozen=True)
class Range:
    """Numeric range on `key`; bounds left as None are open. Bounds are finite numbers."""

    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def __post_init__(self) -> None:
        for bound in (self.gt, self.gte, self.lt, self.lte):
            if bound is not None and not math.isfinite(bound):
                raise InvalidInput(f"range on {self.key!r}: bounds must be finite numbers")


@dataclass(frozen=True)
class DatetimeRange:
    """Time range on `key`; bounds are timezone-aware and exist in UTC."""

    key: str
    gt: datetime | None = None
    gte: datetime | None = None
    lt: datetime | None = None
    lte: datetime | None = None

    def __post_init__(self) -> None:
        for bound in (self.gt, self.gte, self.lt, self.lte):
            if bound is None:
                continue
            try:
                bound.astimezone(UTC)
            except (OverflowError, ValueError):
                raise InvalidInput(
                    f"range on {self.key!r}: {bound.isoformat()} is outside the years 1-9999 in UTC"
                ) from None


@dataclass(frozen=True)
class HasId:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class IsEmpty:
    """`key` is missing, null or an empty list."""

    key: str


@dataclass(frozen=True)
class Filter:
    """Boolean combination: all of `must`, at least one of `should` (if any), none of `must_not`.

    Filters nest: a `Filter` is itself a condition.
    """

    must: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()


Condition: TypeAlias = MatchValue | MatchAny | Range | DatetimeRange | HasId | IsEmpty | Filter


@dataclass(frozen=True)
class IndexStatus:
    points: int
    indexed_vectors: int
    # True while an HNSW build runs; searches stay answered (exact scan) meanwhile.
    building: bool
    # Why the last build failed, until one succeeds.
    last_build_error: str | None = None


class VectorIndex(ABC):
    """A store of collections of points with named vectors and payloads."""

    @abstractmethod
    def create_collection(
        self,
        collection: str,
        vectors: Sequence[VectorSpec],
        settings: IndexSettings,
        payload_indexes: Mapping[str, PayloadType],
    ) -> None:
        """Create `collection`; creating one that exists with the same vectors is a no-op."""

    @abstractmethod
    def drop_collection(self, collection: str) -> None:
        """Remove the collection and all its points; an absent one is not an error."""

    @abstractmethod
    def has_collection(self, collection: str) -> bool: ...

    @abstractmethod
    def vector_specs(self, collection: str) -> list[VectorSpec]: ...

    @abstractmethod
    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        """Insert or replace points. A vector of the wrong dimension raises `DimensionMismatch`
        and writes nothing."""

    @abstractmethod
    def set_payload(self, collection: str, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        """Merge `payload` keys into existing points."""

    @abstractmethod
    def delete(self, collection: str, ids: Sequence[str]) -> None: ...

    @abstractmethod
    def retrieve(
        self, collection: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[Point]:
        """The points that exist among `ids`, in the order given; missing ids are skipped."""

    @abstractmethod
    def search(
        self,
        collection: str,
        vector_name: str,
        query: NDArray[np.float32],
        *,
        limit: int = 10,
        offset: int = 0,
        query_filter: Filter | None = None,
        score_threshold: float | None = None,
        ef: int | None = None,
        with_payload: bool = True,
        exact: bool = False,
    ) -> list[Hit]:
        """Nearest points by `vector_name`, best first. For a multivector, `query` may be (n, dim)
        and the score is MaxSim."""

    @abstractmethod
    def count(self, collection: str, query_filter: Filter | None = None) -> int: ...

    @abstractmethod
    def scroll(
        self,
        collection: str,
        *,
        query_filter: Filter | None = None,
        limit: int = 256,
        offset: str | None = None,
        with_vectors: bool = False,
    ) -> tuple[list[Point], str | None]:
        """A page of points in id order and the id to continue from (None at the end)."""

    def iter_points(
        self, collection: str, *, query_filter: Filter | None = None, with_vectors: bool = False
    ) -> Iterator[Point]:
        """Every point matching the filter, page by page."""
        offset: str | None = None
        while True:
            page, offset = self.scroll(
                collection, query_filter=query_filter, offset=offset, with_vectors=with_vectors
            )
            yield from page
            if offset is None:
                return

    @abstractmethod
    def build_index(self, collection: str, *, wait: bool = False) -> None:
        """Start (or with `wait`, run to the end) the HNSW build; searches keep being answered."""

    def maybe_build_index(self, collection: str) -> bool:
        """Start an index build if the collection's policy calls for one now; True if it did.

        Cheap enough to call after every ingest batch. Engines that index by themselves (a
        server) keep this default, which does nothing.
        """
        return False

    @abstractmethod
    def status(self, collection: str) -> IndexStatus: ...

    @abstractmethod
    def close(self) -> None:
        """Flush and release every open collection (and its directory lock)."""
