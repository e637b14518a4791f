"""Fallback chains: a collection whose hosted model is down keeps ingesting, with another model.

A chain is written as model names joined by `>`, the collection's own model first:
`doubao>clip>offline` (the aliases `clip` and `offline` stand for the configured CLIP model and
the offline model). Each model of the chain gets a named vector of its own when the collection
is created, and the collection records the chain in `vector_settings["chain"]`. Vectors of two
models never share a named vector: an image is embedded by the first model of the chain that
answers and its point holds that model's vector; the catalog's `image.model_id` says which.

An image embedded by a fallback model is queued (`reembed_task`) for the first model; once that
model answers again, `lookalike.ingest.reembed` moves the image to the first model's vector.
Searches use the named vector most of the collection's images have (`search.service`).

A collection without a chain records none and behaves as every collection always did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lookalike.core.config import Settings
from lookalike.core.errors import InvalidInput
from lookalike.embedding.base import BuiltWith
from lookalike.embedding.image_model import DEFAULT_CLIP_MODEL
from lookalike.embedding.providers import is_provider

CHAIN_SEPARATOR = ">"
CHAIN_KEY = "chain"


class HasVectorSettings(Protocol):
    @property
    def vector_settings(self) -> dict[str, Any]: ...


class ChainCollection(BuiltWith, HasVectorSettings, Protocol):
    """What a collection records of its models (`catalog.Collection` has it)."""


@dataclass(frozen=True)
class ChainModel:
    """One model of a chain as the collection records it."""

    model: str
    model_id: str
    vector_name: str
    dim: int

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_id": self.model_id,
            "vector_name": self.vector_name,
            "dim": self.dim,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ChainModel:
        return cls(
            str(raw["model"]), str(raw["model_id"]), str(raw["vector_name"]), int(raw["dim"])
        )


@dataclass(frozen=True)
class ChainBuiltWith:
    """A chain model in the shape `Models.for_collection` and `query_batcher` take."""

    name: str  # the collection's, for messages
    model: str
    model_id: str


def chain_names(settings: Settings, model: str | None, fallback: Sequence[str] = ()) -> list[str]:
    """The models of a chain, aliases resolved: from `model` written `a>b>c`, and/or the
    `fallback` names after it. Empty when neither asks for a chain (a plain collection)."""
    names = [n.strip() for n in (model or "").split(CHAIN_SEPARATOR)] if model else []
    if fallback:
        if not names:
            names = [settings.model]
        names += [n.strip() for n in fallback]
    if len(names) < 2:
        return []
    if any(not n for n in names):
        raise InvalidInput(f"a fallback chain names a model at every step, not {model!r}")
    resolved = [resolve_alias(settings, n) for n in names]
    if len(set(resolved)) != len(resolved):
        raise InvalidInput(f"a fallback chain names each model once: {' > '.join(resolved)}")
    return resolved


def resolve_alias(settings: Settings, name: str) -> str:
    """`offline` is the offline model; `clip` the configured model, or the default CLIP model
    where the configured one is a hosted provider."""
    if name == "offline":
        return settings.offline_model
    if name == "clip":
        return DEFAULT_CLIP_MODEL if is_provider(settings.model) else settings.model
    return name


def chain_of(collection: HasVectorSettings) -> tuple[ChainModel, ...]:
    """The collection's chain, its own model first; empty for a collection without one."""
    raw = (collection.vector_settings or {}).get(CHAIN_KEY) or []
    return tuple(ChainModel.from_json(item) for item in raw)


def has_chain(collection: HasVectorSettings) -> bool:
    return bool((collection.vector_settings or {}).get(CHAIN_KEY))


def built_with(collection: ChainCollection, member: ChainModel) -> ChainBuiltWith:
    return ChainBuiltWith(collection.name, member.model, member.model_id)
