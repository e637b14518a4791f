"""What every vector engine checks and converts the same way: collection names, vector specs,
index settings, vectors, payloads and point ids.

Each engine calls these before anything reaches its store, so a bad name, a NaN or a vector of
the wrong shape gets the same clear error on every engine.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from ulid import ULID

from lookalike.core.errors import DimensionMismatch, InvalidInput
from lookalike.vectors.base import DatetimeRange, IndexSettings, VectorSpec

# Collection names become directory, table and collection names: no separators, no leading dot.
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
DISTANCES = ("cosine", "dot", "euclid")


def check_name(collection: str) -> None:
    if not NAME.match(collection):
        raise InvalidInput(
            f"collection name {collection!r}: use 1-128 letters, digits, '_', '.' or '-', "
            "not starting with '.' or '-'"
        )


def check_specs(vectors: Sequence[VectorSpec]) -> list[VectorSpec]:
    specs = list(vectors)
    if not specs:
        raise InvalidInput("a collection needs at least one named vector")
    names = [v.name for v in specs]
    if len(set(names)) != len(names):
        raise InvalidInput(f"vector names repeat: {names}")
    for v in specs:
        if not v.name:
            raise InvalidInput("a vector needs a non-empty name")
        if v.dim < 1:
            raise InvalidInput(f"vector {v.name!r}: dimension must be >= 1, not {v.dim}")
        if v.distance not in DISTANCES:
            raise InvalidInput(f"vector {v.name!r}: unknown distance {v.distance!r}")
    return specs


def check_settings(settings: IndexSettings) -> None:
    if settings.hnsw_m < 2 or settings.hnsw_ef_construct < 4:
        raise InvalidInput("hnsw_m must be >= 2 and hnsw_ef_construct >= 4")
    if settings.quantization not in ("none", "int8"):
        raise InvalidInput(f"unknown quantization {settings.quantization!r}")
    if settings.indexing_threshold < 0:
        raise InvalidInput("indexing_threshold must be >= 0")


def describe(specs: Sequence[VectorSpec]) -> str:
    return ", ".join(
        f"{v.name}: {v.dim}-d {v.distance}{' multivector' if v.multivector else ''}" for v in specs
    )


def to_uuid(point_id: str) -> uuid.UUID:
    try:
        return ULID.from_str(point_id).to_uuid()
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"point id {point_id!r} is not a ULID: {exc}") from None


def as_uuid(point_id: Any) -> uuid.UUID:
    return point_id if isinstance(point_id, uuid.UUID) else uuid.UUID(str(point_id))


def to_ulid(point_id: Any) -> str:
    return str(ULID.from_uuid(as_uuid(point_id)))


def vector_array(spec: VectorSpec, value: Any, what: str) -> NDArray[np.float32]:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what}: not a numeric vector ({exc})") from None
    want = f"(n, {spec.dim})" if spec.multivector else f"({spec.dim},)"
    ok_shape = (
        array.ndim == 2 and array.shape[0] >= 1 and array.shape[1] == spec.dim
        if spec.multivector
        else array.ndim == 1 and array.shape[0] == spec.dim
    )
    if not ok_shape:
        raise DimensionMismatch(
            f"{what}: vector {spec.name!r} needs shape {want}, got {tuple(array.shape)}; "
            "was it made by another model?"
        )
    if not np.isfinite(array).all():
        raise InvalidInput(f"{what}: vector {spec.name!r} holds NaN or infinity")
    return array


def query_vector(spec: VectorSpec, query: Any) -> list[float] | list[list[float]]:
    array = np.asarray(query, dtype=np.float32)
    if spec.multivector and array.ndim == 1:
        array = array[None, :]
    checked = vector_array(spec, array, "query")
    result: list[float] | list[list[float]] = checked.tolist()
    return result


def payload_in(value: Any) -> Any:
    """Payload as the engine takes it: JSON types; datetimes become ISO 8601 strings (UTC 'Z'
    for aware ones), numpy scalars and arrays plain numbers and lists."""
    if isinstance(value, Mapping):
        return {str(k): payload_in(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [payload_in(v) for v in value]
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def iso_utc(value: dt.datetime) -> str:
    """RFC 3339 for the engine; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def iso_bounds(condition: DatetimeRange) -> dict[str, str | None]:
    """A datetime range's bounds (gt, gte, lt, lte) as RFC 3339 UTC strings, None where open:
    what the Qdrant engines take."""
    return {
        name: iso_utc(bound) if (bound := getattr(condition, name)) is not None else None
        for name in ("gt", "gte", "lt", "lte")
    }
