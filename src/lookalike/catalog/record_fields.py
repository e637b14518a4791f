"""What a record's fields may hold, checked wherever a record is made or changed.

Every entry point (JSON and multipart record create, PATCH, batch upload, presign + ingest, the CLI
and the folder watcher) goes through `check_record_fields`, so a record that was stored can always
be listed and read back: metadata nested deeper than a JSON serializer follows, or tags of a
megabyte, would otherwise be stored and break every page that shows the record.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from lookalike.core.errors import InvalidInput

NAME_MAX = 512
DESCRIPTION_MAX = 100_000
OWNER_MAX = 128
TAGS_MAX = 256
TAG_MAX = 128
METADATA_MAX_DEPTH = 16
METADATA_MAX_BYTES = 64 * 1024


def check_record_fields(
    *,
    name: str | None = None,
    description: str | None = None,
    owner: str | None = None,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Raise `InvalidInput` naming the first field that is out of bounds; None means unchanged."""
    if name is not None:
        if not name.strip():
            raise InvalidInput("name: a record needs a non-empty name")
        _check_length("name", name, NAME_MAX)
    if description is not None:
        _check_length("description", description, DESCRIPTION_MAX)
    if owner is not None:
        if not owner.strip():
            raise InvalidInput("owner: must not be empty")
        _check_length("owner", owner, OWNER_MAX)
    if tags is not None:
        if len(tags) > TAGS_MAX:
            raise InvalidInput(f"tags: at most {TAGS_MAX} tags, got {len(tags)}")
        for tag in tags:
            if not isinstance(tag, str):
                raise InvalidInput("tags: every tag is a string")
            _check_length("a tag", tag, TAG_MAX)
    if metadata is not None:
        check_metadata(metadata)


def check_metadata(metadata: Mapping[str, Any]) -> None:
    """At most `METADATA_MAX_DEPTH` levels and `METADATA_MAX_BYTES` bytes of JSON, finite."""
    if not isinstance(metadata, Mapping):
        raise InvalidInput("metadata: a JSON object is expected")
    _check_depth(metadata, 1)
    size = len(json.dumps(metadata, ensure_ascii=False, allow_nan=False).encode())
    if size > METADATA_MAX_BYTES:
        raise InvalidInput(
            f"metadata: {size} bytes as JSON, over the limit of {METADATA_MAX_BYTES}; keep "
            "large documents elsewhere and store a reference to them"
        )


def metadata_is_valid(metadata: Any) -> bool:
    try:
        check_metadata(metadata)
    except InvalidInput:
        return False
    return True


def _check_depth(value: Any, depth: int) -> None:
    """`depth` is the level of `value` if it is an object or array (the metadata itself is 1);
    recursion stops at METADATA_MAX_DEPTH levels."""
    if isinstance(value, Mapping | list | tuple) and depth > METADATA_MAX_DEPTH:
        raise InvalidInput(
            f"metadata: nested more than {METADATA_MAX_DEPTH} levels deep; flatten it"
        )
    if isinstance(value, Mapping):
        for key, child in value.items():
            if not isinstance(key, str):
                raise InvalidInput("metadata: object keys are strings")
            _check_depth(child, depth + 1)
    elif isinstance(value, list | tuple):
        for child in value:
            _check_depth(child, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput("metadata: numbers must be finite (no NaN or Infinity)")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise InvalidInput(f"metadata: {type(value).__name__} is not a JSON value")


def _check_length(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidInput(f"{field}: at most {limit} characters, got {len(value)}")
