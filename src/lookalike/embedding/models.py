"""`Models`: the one owner of the loaded models of a process.

A process that embeds (the API server, the CLI, the embedding server, a test) makes one `Models`
for its settings and asks it for embedders by name; it loads each model once, in-process or as a
`RemoteEmbedder` when `settings.embed_url` names an embedding service, and closes them with
itself. Nothing else keeps a loaded model: `open_embedder` and `load_embedder` give the caller an
embedder of its own.
"""

from __future__ import annotations

import logging
import threading

from lookalike.core.config import Settings
from lookalike.core.errors import EmbedServiceUnavailable, ModelUnavailable, UnknownModel
from lookalike.embedding.base import BuiltWith, Embedder
from lookalike.embedding.batching import QueryBatcher
from lookalike.embedding.clip import ClipEmbedder
from lookalike.embedding.fallback import ChainCollection, built_with, chain_of
from lookalike.embedding.image_model import DEFAULT_CLIP_MODEL, ImageEmbedder, text_search_hint
from lookalike.embedding.known import KNOWN_MODELS
from lookalike.embedding.late_interaction import LateInteractionEmbedder
from lookalike.embedding.model_cache import ensure_model_dir
from lookalike.embedding.model_dir import ModelDir
from lookalike.embedding.providers import is_provider, provider_embedder
from lookalike.embedding.remote import RemoteEmbedder

log = logging.getLogger(__name__)


def open_embedder(model_dir: ModelDir, settings: Settings) -> Embedder:
    """An embedder for a validated model directory; sessions load on first use."""
    if model_dir.manifest.kind == "clip":
        return ClipEmbedder(
            model_dir, batch_size=settings.embed_batch_size, threads=settings.embed_threads
        )
    if model_dir.manifest.kind == "late_interaction":
        return LateInteractionEmbedder(
            model_dir, batch_size=settings.embed_batch_size, threads=settings.embed_threads
        )
    return ImageEmbedder(
        model_dir,
        batch_size=settings.embed_batch_size,
        threads=settings.embed_threads,
        text_hint=text_search_hint(_wanted_clip_model(settings), settings.models_dir),
    )


def _wanted_clip_model(settings: Settings) -> str:
    """The CLIP model to tell users to install: the configured one unless that is image-only."""
    spec = KNOWN_MODELS.get(settings.model)
    return settings.model if spec is None or spec.kind == "clip" else DEFAULT_CLIP_MODEL


def load_embedder(settings: Settings, name: str | None = None) -> Embedder:
    """A new embedder for model `name` (default `settings.model`), fetched or built if needed;
    with `settings.embed_url`, the service's model under the same model id. The caller owns it:
    a long-lived process asks its `Models` instead, which loads each model once."""
    name = name or settings.model
    if is_provider(name):  # a hosted model (`doubao`, `openai-embed`), wherever we run
        return provider_embedder(settings, name)
    if settings.embed_url:
        return RemoteEmbedder(settings, name)
    return open_embedder(ensure_model_dir(settings, name), settings)


class Models:
    """The models one process has loaded, by name, plus the query batchers in front of them.

    Thread-safe. A failure to load is not remembered, so a later call tries again (after the
    model has been placed by hand, say).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._embedders: dict[str, Embedder] = {}
        self._default: Embedder | None = None
        self._batchers: dict[str, QueryBatcher] = {}

    def get(self, name: str | None = None) -> Embedder:
        """Model `name` (default `settings.model`), loaded once; raises `ModelUnavailable`."""
        name = name or self.settings.model
        with self._lock:
            embedder = self._embedders.get(name)
            if embedder is not None:
                return embedder
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:  # one loader per model; a second caller waits and reuses the result
            with self._lock:
                embedder = self._embedders.get(name)
            if embedder is None:
                embedder = load_embedder(self.settings, name)
                with self._lock:
                    self._embedders[name] = embedder
            return embedder

    def default(self) -> Embedder:
        """The model new collections get: `settings.model`, or, when it cannot be had, the
        offline model with one loud warning (once per process, not once per request)."""
        if self._default is not None:
            return self._default
        settings = self.settings
        try:
            embedder = self.get(settings.model)
        except EmbedServiceUnavailable:
            raise  # the service is down or refuses us: another model name cannot help
        except (ModelUnavailable, UnknownModel) as exc:
            if settings.model == settings.offline_model:
                raise
            embedder = self.get(settings.offline_model)
            self._warn_fallback(exc.message, embedder)
        self._default = embedder
        return embedder

    @property
    def loaded_default(self) -> Embedder | None:
        """The default model if it is loaded already; never loads it (for health and metrics)."""
        return self._default

    def for_collection(self, collection: BuiltWith) -> Embedder:
        """The model a collection was built with; never a different one under the same name."""
        embedder = self.get(collection.model)
        if embedder.model_id != collection.model_id:
            raise ModelUnavailable(
                f"collection {collection.name!r} was embedded with {collection.model_id} but "
                f"{embedder.model_id} is installed; restore that model or re-embed the collection"
            )
        return embedder

    def for_ingest(self, collection: ChainCollection) -> Embedder:
        """The model new images of `collection` are embedded with: its own, or, for a collection
        with a fallback chain (`embedding.fallback`), the first model of the chain that loads
        and is not known to be failing. Raises `ModelUnavailable` when none is left."""
        chain = chain_of(collection)
        if not chain:
            return self.for_collection(collection)
        problems = []
        for member in chain:
            try:
                embedder = self.for_collection(built_with(collection, member))
            except ModelUnavailable as exc:
                problems.append(f"{member.model}: {exc.message}")
                continue
            if embedder.available():
                return embedder
            problems.append(f"{member.model}: failing, retried later")
        raise ModelUnavailable(
            f"no model of collection {collection.name!r}'s fallback chain is available "
            f"({'; '.join(problems)})"
        )

    def query_batcher(self, collection: BuiltWith) -> QueryBatcher:
        """Embeds search queries for `collection`, batching concurrent ones into one call."""
        embedder = self.for_collection(collection)
        with self._lock:
            batcher = self._batchers.get(embedder.model_id)
            if batcher is None:
                batcher = self._batchers[embedder.model_id] = QueryBatcher(
                    embedder, max_batch=self.settings.embed_batch_size
                )
            return batcher

    def close(self) -> None:
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), {}
            embedders, self._embedders = list(self._embedders.values()), {}
            self._default = None
        for batcher in batchers:
            batcher.close()
        for embedder in embedders:
            embedder.close()

    def _warn_fallback(self, reason: str, embedder: Embedder) -> None:
        settings = self.settings
        fallback = (
            f"offline image-only model {embedder.name}; text search disabled"
            if not embedder.supports_text
            else f"offline model {embedder.name}"
        )
        if settings.embed_url:
            log.warning(
                "model %s is unavailable at the embedding service %s: %s; falling back to %s",
                settings.model,
                settings.embed_url,
                reason,
                fallback,
            )
            return
        spec = KNOWN_MODELS.get(settings.model)
        what = "model" if spec is not None and spec.kind != "clip" else "CLIP model"
        log.warning(
            "%s %s unavailable: %s; falling back to %s; to fix: run `lookalike model pull %s` "
            "where the model hub is reachable (or copy its model directory to %s), then restart",
            what,
            settings.model,
            reason,
            fallback,
            settings.model,
            settings.models_dir / settings.model,
        )
