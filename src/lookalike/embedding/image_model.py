"""An image-only model: one visual graph, no text tower."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from lookalike.core.errors import ModelUnavailable, TextSearchUnavailable
from lookalike.embedding.base import Embedder, Vectors
from lookalike.embedding.model_dir import ModelDir
from lookalike.embedding.preprocess import ImagePreprocessor
from lookalike.embedding.sessions import OrtSession, ort_session

DEFAULT_CLIP_MODEL = "clip-vit-b-32-laion2b"


def text_search_hint(clip_model: str = DEFAULT_CLIP_MODEL, models_dir: Path | None = None) -> str:
    """What to do to get text search, for error messages of image-only models."""
    where = f" ({models_dir / clip_model})" if models_dir is not None else ""
    return (
        f"To search by text, make the CLIP model {clip_model} available: run `lookalike model "
        f"pull {clip_model}` where the model hub is reachable, or copy its model directory into "
        f"the model cache by hand{where}, or export one with `pip install 'lookalike[export]'` "
        f"and `lookalike model export`; then set LOOKALIKE_MODEL={clip_model}, restart and "
        "re-embed the collection."
    )


def vector_name_for(model_id: str) -> str:
    """`efficientnet-lite0@1a2b3c4d5e6f` -> `efficientnet_lite0_1a2b3c4d5e6f`: safe as a named
    vector in every engine and as an SQL identifier, and different whenever the weights are."""
    name = re.sub(r"[^a-z0-9]+", "_", model_id.lower()).strip("_")
    return name if name[:1].isalpha() else f"m_{name}"


def l2_normalise(vectors: NDArray[np.float32]) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    # An all-zero output (possible for a degenerate input) stays zero instead of becoming NaN.
    normalised: Vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return normalised


class ImageEmbedder(Embedder):
    """A model directory of kind "image" (also the image half of a CLIP model).

    The ONNX session is created on first use, under a lock, so constructing an embedder is cheap
    and two requests arriving together load the graph once.
    """

    def __init__(
        self,
        model_dir: ModelDir,
        *,
        batch_size: int = 16,
        threads: int = 0,
        text_hint: str | None = None,
    ) -> None:
        manifest = model_dir.manifest
        self.model_dir = model_dir
        self.name = manifest.name
        self.model_id = manifest.model_id
        self.vector_name = vector_name_for(manifest.model_id)
        self.dim = manifest.dim
        self.supports_text = False
        self.batch_size = batch_size
        self.threads = threads
        self.text_hint = text_hint or text_search_hint()
        self.input_size = manifest.preprocess.size
        self.preprocess_config = manifest.preprocess
        self._preprocessor = ImagePreprocessor(manifest.preprocess)
        self._lock = threading.Lock()
        self._visual: OrtSession | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id}, dim={self.dim})"

    def load(self) -> None:
        """Load every session now instead of on first use (for start-up warm-up)."""
        self._visual_session()

    def _visual_session(self) -> OrtSession:
        session = self._visual
        if session is None:
            with self._lock:
                if self._visual is None:
                    self._visual = self._open_session("visual")
                session = self._visual
        return session

    def _open_session(self, role: str) -> OrtSession:
        session = ort_session(self.model_dir.file(role), threads=self.threads)
        if len(session.input_names) != 1 and role == "visual":
            raise ModelUnavailable(
                f"{self.name}: the visual graph must take one input, it takes {session.input_names}"
            )
        return session

    def preprocess(self, image: Image.Image) -> NDArray[np.float32]:
        return self._preprocessor.prepare(image, self.name)

    def embed_preprocessed(self, batch: NDArray[np.float32]) -> Vectors:
        self._check_batch(batch)
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        session = self._visual_session()
        output = "embedding" if "embedding" in session.output_names else None
        chunks = [
            session.run_one(batch[start : start + self.batch_size], output)
            for start in range(0, len(batch), self.batch_size)
        ]
        return self._check_and_normalise(np.concatenate(chunks), len(batch))

    def _check_and_normalise(self, raw: NDArray[np.float32], n: int) -> Vectors:
        vectors = np.asarray(raw, dtype=np.float32).reshape(n, -1)
        if vectors.shape[1] != self.dim:
            raise ModelUnavailable(
                f"{self.name}: the graph returns {vectors.shape[1]}-d vectors, the manifest "
                f"says {self.dim}"
            )
        return l2_normalise(vectors)

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        raise TextSearchUnavailable(
            f"text search is unavailable: {self.name} is an image-only model. {self.text_hint}"
        )
