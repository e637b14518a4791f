"""The `Embedder` interface: turns images and texts into L2-normalised float32 vectors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from lookalike.core.errors import InvalidInput, ModelUnavailable
from lookalike.embedding.model_dir import PreprocessConfig

Vectors = NDArray[np.float32]


class BuiltWith(Protocol):
    """What a collection records of its model (`catalog.Collection` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def model_id(self) -> str: ...


class Embedder(ABC):
    """A loaded model. Thread-safe: `preprocess` may run in many threads while one embeds.

    `model_id` names the exact weights (name plus a short content hash) and is what a collection
    records; `vector_name` is the named vector the model's embeddings are stored under.
    """

    name: str
    model_id: str
    vector_name: str
    dim: int
    supports_text: bool
    # Side of the square model input: callers may decode images down to about this size.
    input_size: int
    # How `preprocess` turns an image into the model input, so that another process can do the
    # same (bulk ingest's worker processes).
    preprocess_config: PreprocessConfig
    # A late-interaction model (ColPali-style) also embeds each image into one vector per patch
    # and each text into one per token, matched by MaxSim (`embed_patches`, `embed_text_tokens`);
    # its `embed_preprocessed` and `embed_texts` give the mean-pooled vectors, for the features
    # that need one vector per image (duplicates, anomalies, clusters).
    multivector: bool = False

    @abstractmethod
    def preprocess(self, image: Image.Image) -> NDArray[np.float32]:
        """One RGB image to the model's input tensor (C, H, W), float32. CPU only, no session."""

    @abstractmethod
    def embed_preprocessed(self, batch: NDArray[np.float32]) -> Vectors:
        """A stacked batch (N, C, H, W) from `preprocess` to (N, dim) unit vectors."""

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors:
        """Images to (N, dim) unit vectors, in batches of the configured size."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_preprocessed(np.stack([self.preprocess(im) for im in images]))

    def _check_batch(self, batch: NDArray[np.float32]) -> None:
        """Raise `InvalidInput` unless `batch` is (N, 3, input_size, input_size)."""
        expected = (3, self.input_size, self.input_size)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise InvalidInput(
                f"{self.name} expects a batch of shape (N, {', '.join(map(str, expected))}), "
                f"got {tuple(batch.shape)}"
            )

    @abstractmethod
    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        """Texts to (N, dim) unit vectors. Raises `TextSearchUnavailable` for image-only models."""

    def embed_patches(self, batch: NDArray[np.float32]) -> tuple[Vectors, NDArray[np.float32]]:
        """A batch (N, C, H, W) to its pooled (N, dim) unit vectors and its (N, P, dim) patch
        vectors (unit rows). Late-interaction models only."""
        raise ModelUnavailable(f"{self.name} embeds one vector per image, not one per patch")

    def embed_text_tokens(self, texts: Sequence[str]) -> list[Vectors]:
        """Each text to its (T, dim) token vectors (unit rows, padding left out).
        Late-interaction models only."""
        raise ModelUnavailable(f"{self.name} embeds one vector per text, not one per token")

    def available(self) -> bool:
        """False while the model is known to be failing (a hosted model that just failed):
        a fallback chain then skips it. A model in this process is always available."""
        return True

    def close(self) -> None:
        """Release what the model holds outside this process (a connection pool); the default
        holds nothing of the kind: its sessions go with the object."""
        return None
