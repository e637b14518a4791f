"""The quality and NSFW enrichment stages: each image's scores, in the catalog row and in the
vector payload (where filters read them), computed after the image is searchable.

The NSFW score comes from the model that is already there when it can: with a CLIP collection it
is a zero-shot reading of the image embedding against a few prompts (two dot products, no model
call); with an image-only model, the NudeNet detector runs on the batch's pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Table, bindparam, update

from lookalike.catalog import Catalog, Collection, Image
from lookalike.embedding.base import Embedder
from lookalike.embedding.models import Models
from lookalike.enrichment.runner import StageBatch
from lookalike.quality.nsfw import INPUT_SIZE, NsfwDetector
from lookalike.quality.scores import OVERALL_WEIGHTS, WORKING_SIZE, quality_score
from lookalike.vectors.base import VectorIndex

log = logging.getLogger(__name__)

# Zero-shot NSFW prompts: the score is the softmax weight of the first group against all.
UNSAFE_PROMPTS = (
    "an explicit pornographic photo",
    "a photo of a naked person showing genitals",
    "a photo of a topless woman with bare breasts",
    "a photo of people having sex",
)
SAFE_PROMPTS = (
    "a photo",
    "a photo of a person wearing clothes",
    "a photo of a person in a swimsuit at the beach",
    "a photo of an object",
    "a photo of a landscape",
    "a photo of an animal",
)
LOGIT_SCALE = 100.0  # CLIP's learned temperature


def _store_scores(
    catalog: Catalog,
    vectors: VectorIndex,
    collection: Collection,
    column: str,
    payload_key: str,
    scores: Mapping[str, float | None],
    also: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """One catalog statement for the batch (each image's score in `column`, and the columns
    in `also[image_id]`), one payload update per image."""
    if not scores:
        return
    table = cast(Table, Image.__table__)
    with catalog.engine.begin() as conn:
        conn.execute(
            update(table).where(table.c.id == bindparam("b_id")),
            [
                {"b_id": image_id, column: score, **(also or {}).get(image_id, {})}
                for image_id, score in scores.items()
            ],
        )
    for image_id, score in scores.items():
        vectors.set_payload(collection.id, [image_id], {payload_key: score})


class QualityStage:
    """Sharpness, exposure and resolution in one 0..1 score (`quality.scores`)."""

    name = "quality"

    def __init__(self, catalog: Catalog, vectors: VectorIndex) -> None:
        self.catalog = catalog
        self.vectors = vectors

    def pixels_for(self, collection: Collection) -> int | None:
        return WORKING_SIZE

    def needs_vector(self, collection: Collection) -> bool:
        return False

    def run(self, batch: StageBatch) -> Mapping[str, str]:
        scores: dict[str, float | None] = {}
        # Why it scored low, for the review queue (which puts junk first).
        why: dict[str, dict[str, Any]] = {}
        for item in batch.items:
            assert item.pixels is not None
            size = (item.image.width, item.image.height)
            score = quality_score(item.pixels.image, size, jpeg_quality=item.pixels.jpeg_quality)
            scores[item.image.id] = round(score.overall, 4)
            worst = min(getattr(score, name) for name in OVERALL_WEIGHTS)
            why[item.image.id] = {
                "quality_worst": round(worst, 4),
                "quality_issues": score.weakest(),
            }
        _store_scores(
            self.catalog, self.vectors, batch.collection, "quality_score", "quality", scores, why
        )
        return {}


class NsfwStage:
    """The NSFW score: zero-shot from the CLIP embedding, or the NudeNet detector."""

    name = "nsfw"

    def __init__(
        self,
        catalog: Catalog,
        vectors: VectorIndex,
        models: Models,
        detector: NsfwDetector,
        *,
        cache_dir: Path | None = None,
    ) -> None:
        self.catalog = catalog
        self.vectors = vectors
        self.models = models
        self.detector = detector
        # The prompts' embeddings per model, kept here across processes (a second or more of
        # text-tower time for a ViT-B/32 on a small CPU, every time a process starts otherwise).
        self.cache_dir = cache_dir
        self._prompts: dict[str, NDArray[np.float32]] = {}
        self._lock = threading.Lock()

    def _zero_shot(self, collection: Collection) -> bool:
        return self.models.for_collection(collection).supports_text

    def pixels_for(self, collection: Collection) -> int | None:
        return None if self._zero_shot(collection) else INPUT_SIZE

    def needs_vector(self, collection: Collection) -> bool:
        return self._zero_shot(collection)

    def run(self, batch: StageBatch) -> Mapping[str, str]:
        if self._zero_shot(batch.collection):
            scores = self._from_embeddings(batch)
        else:
            found = self.detector.scores([item.pixels.image for item in batch.items if item.pixels])
            if found is None:
                # No detector installed: nothing to score with; the images stay unscored.
                for image_id in batch.image_ids:
                    batch.skip(image_id)
                return {}
            scores = {
                item.image.id: round(score, 4)
                for item, score in zip(batch.items, found, strict=True)
            }
        _store_scores(self.catalog, self.vectors, batch.collection, "nsfw_score", "nsfw", scores)
        return {}

    def prompt_vectors(self, collection: Collection) -> NDArray[np.float32]:
        """The prompts' text embeddings for the collection's model, made once per model."""
        embedder = self.models.for_collection(collection)
        with self._lock:
            found = self._prompts.get(embedder.model_id)
            if found is None:
                found = self._cached(embedder)
                self._prompts[embedder.model_id] = found
            return found

    def _cached(self, embedder: Embedder) -> NDArray[np.float32]:
        prompts = [*UNSAFE_PROMPTS, *SAFE_PROMPTS]
        digest = hashlib.sha256("\n".join([embedder.model_id, *prompts]).encode()).hexdigest()
        path = self.cache_dir / f"nsfw-prompts-{digest[:24]}.npy" if self.cache_dir else None
        if path is not None and path.is_file():
            with contextlib.suppress(OSError, ValueError):
                stored: NDArray[np.float32] = np.load(path, allow_pickle=False)
                if stored.shape == (len(prompts), embedder.dim):
                    return stored
        vectors = embedder.embed_texts(prompts)
        if path is not None:
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(f".{path.name}.{os.getpid()}")
                with partial.open("wb") as out:
                    np.save(out, vectors, allow_pickle=False)
                os.replace(partial, path)
        return vectors

    def _from_embeddings(self, batch: StageBatch) -> dict[str, float | None]:
        prompts = self.prompt_vectors(batch.collection)
        images = np.stack([item.vector for item in batch.items if item.vector is not None])
        scores = zero_shot_nsfw(images, prompts)
        return {
            item.image.id: round(float(score), 4)
            for item, score in zip(batch.items, scores, strict=True)
        }


def zero_shot_nsfw(
    images: NDArray[np.float32], prompts: NDArray[np.float32]
) -> NDArray[np.float64]:
    """P(unsafe prompt) of each image: a softmax over its cosine to every prompt (rows are unit
    vectors), the first `len(UNSAFE_PROMPTS)` prompts being the unsafe ones."""
    logits = LOGIT_SCALE * (images.astype(np.float64) @ prompts.astype(np.float64).T)
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    unsafe: NDArray[np.float64] = weights[:, : len(UNSAFE_PROMPTS)].sum(axis=1)
    return np.clip(unsafe, 0.0, 1.0)
