"""Late-interaction models (ColPali / ColQwen-style): one vector per image patch and one per text
token, matched by MaxSim.

    visual:  pixels (N, 3, S, S) -> (N, P, dim) patch vectors
    textual: token ids (N, T) -> (N, T, dim) token vectors, and optionally a `mask` output (N, T)
             that is 0 where a position does not count; a graph with an `attention_mask` input
             gets the tokenizer's (1 for a token, 0 for padding)

Every patch and token vector is L2-normalised, and padding positions are dropped, so a text's
multivector has one row per token the tokenizer made. A collection of such a model stores each
image's patch vectors as the multivector `<vector_name>-patches` and, under `vector_name`, their
mean (normalised again): the one vector per image that duplicates, anomalies and clusters use.

The score. The vector engines compute MaxSim as Qdrant does: for each query row the best dot
product with any row of the point, summed over the query's rows. Search reports that sum divided
by the query's row count (`maxsim`): the mean of the best similarities, in [-1, 1] like a cosine,
so a score threshold means the same for a 3-token text as for a 20-token one, and an image found
by its own patches scores 1.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer

from lookalike.core.errors import InvalidInput, ModelUnavailable
from lookalike.embedding.base import Vectors
from lookalike.embedding.clip import check_texts
from lookalike.embedding.image_model import ImageEmbedder, l2_normalise
from lookalike.embedding.model_dir import ModelDir
from lookalike.embedding.sessions import OrtSession

__all__ = [
    "PATCHES_SUFFIX",
    "LateInteractionEmbedder",
    "maxsim",
    "patches_vector_for",
    "patches_vector_name",
    "pool",
]

PATCHES_SUFFIX = "-patches"


def patches_vector_name(vector_name: str) -> str:
    """The multivector holding the patch vectors of the images whose pooled vector is
    `vector_name`."""
    return f"{vector_name}{PATCHES_SUFFIX}"


def patches_vector_for(vector_name: str, vector_settings: Mapping[str, Any] | None) -> str | None:
    """The patch multivector of a collection with these `vector_settings`; None when its model
    is not a late-interaction one."""
    if vector_settings and vector_settings.get("late_interaction"):
        return patches_vector_name(vector_name)
    return None


def maxsim(query: NDArray[np.float32], document: NDArray[np.float32]) -> float:
    """The score search reports: for each query row its best dot product with a row of
    `document`, averaged over the query's rows (see the module docstring)."""
    return float((query.astype(np.float64) @ document.astype(np.float64).T).max(axis=1).mean())


def pool(multivectors: NDArray[np.float32]) -> Vectors:
    """(N, P, dim) unit rows to (N, dim) unit vectors: each item's mean row, normalised."""
    return l2_normalise(multivectors.mean(axis=1))


def _unit_rows(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    # An all-zero row (possible for a degenerate input) stays zero instead of becoming NaN.
    unit: NDArray[np.float32] = (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return unit


class LateInteractionEmbedder(ImageEmbedder):
    """A model directory of kind "late_interaction". The visual graph runs as `ImageEmbedder`'s
    does (lazily, under a lock); the tokenizer and textual graph load on the first text."""

    multivector = True

    def __init__(self, model_dir: ModelDir, *, batch_size: int = 16, threads: int = 0) -> None:
        super().__init__(model_dir, batch_size=batch_size, threads=threads)
        text = model_dir.manifest.text
        if model_dir.manifest.kind != "late_interaction" or text is None:
            raise ModelUnavailable(f"{model_dir.path} is not a late-interaction model directory")
        self.supports_text = True
        self.context_length = text.context_length
        self._pad_token = text.pad_token
        self._text_lock = threading.Lock()
        self._textual: OrtSession | None = None
        self._tokenizer: Tokenizer | None = None

    def load(self) -> None:
        super().load()
        self._text_parts()

    # --- images ---------------------------------------------------------------

    def embed_preprocessed(self, batch: NDArray[np.float32]) -> Vectors:
        return self.embed_patches(batch)[0]

    def embed_patches(self, batch: NDArray[np.float32]) -> tuple[Vectors, NDArray[np.float32]]:
        self._check_batch(batch)
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32), np.zeros((0, 0, self.dim), np.float32)
        session = self._visual_session()
        output = "embedding" if "embedding" in session.output_names else None
        chunks = [
            session.run_one(batch[start : start + self.batch_size], output)
            for start in range(0, len(batch), self.batch_size)
        ]
        patches = _unit_rows(self._checked(np.concatenate(chunks), len(batch), "visual"))
        return pool(patches), patches

    def _checked(self, raw: NDArray[Any], n: int, role: str) -> NDArray[np.float32]:
        array = np.asarray(raw, dtype=np.float32)
        if array.ndim != 3 or array.shape[0] != n or array.shape[2] != self.dim:
            raise ModelUnavailable(
                f"{self.name}: the {role} graph returns shape {tuple(array.shape)}, a "
                f"late-interaction model must give ({n}, rows, {self.dim})"
            )
        return array

    # --- texts ----------------------------------------------------------------

    def _text_parts(self) -> tuple[Tokenizer, OrtSession]:
        tokenizer, session = self._tokenizer, self._textual
        if tokenizer is None or session is None:
            with self._text_lock:
                if self._textual is None:
                    self._textual = self._open_session("textual")
                if self._tokenizer is None:
                    self._tokenizer = self._load_tokenizer(self._textual)
                tokenizer, session = self._tokenizer, self._textual
        return tokenizer, session

    def _load_tokenizer(self, session: OrtSession) -> Tokenizer:
        path = self.model_dir.file("tokenizer")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed files
            raise ModelUnavailable(f"cannot load tokenizer {path}: {exc}") from exc
        pad_token = self._pad_token or tokenizer.id_to_token(0) or ""
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ModelUnavailable(f"{path}: pad token {pad_token!r} is not in the vocabulary")
        # A graph exported with a fixed sequence length takes exactly that many ids; one with a
        # free length gets each batch padded to its longest text only.
        fixed = session.input_shapes[session.input_name][1:2]
        length = fixed[0] if fixed and isinstance(fixed[0], int) and fixed[0] > 0 else None
        tokenizer.enable_truncation(max_length=length or self.context_length)
        tokenizer.enable_padding(length=length, pad_id=pad_id, pad_token=pad_token)
        return tokenizer

    def embed_text_tokens(self, texts: Sequence[str]) -> list[Vectors]:
        check_texts(texts, "embed_text_tokens")
        tokenizer, session = self._text_parts()
        output = "embedding" if "embedding" in session.output_names else session.output_names[0]
        outputs = [output, "mask"] if "mask" in session.output_names else [output]
        result: list[Vectors] = []
        for start in range(0, len(texts), self.batch_size):
            encodings = tokenizer.encode_batch(list(texts[start : start + self.batch_size]))
            ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
            # The tokenizer's attention mask is 0 exactly at the padding it added: comparing ids
            # with the pad id would also drop a real token that shares it (open_clip pads with 0).
            keep = np.asarray([e.attention_mask for e in encodings], dtype=bool)
            feed = {session.input_name: ids}
            if "attention_mask" in session.input_names:
                feed["attention_mask"] = keep.astype(np.int64)
            found = session.run(feed, outputs)
            tokens = _unit_rows(self._checked(found[0], len(ids), "textual"))
            if tokens.shape[1] != ids.shape[1]:
                raise ModelUnavailable(
                    f"{self.name}: the textual graph gives {tokens.shape[1]} rows for "
                    f"{ids.shape[1]} tokens"
                )
            if len(found) > 1:
                keep &= np.asarray(found[1]).reshape(keep.shape) > 0
            for row, kept in zip(tokens, keep, strict=True):
                if not kept.any():
                    raise InvalidInput(f"{self.name} keeps no token of the text")
                result.append(np.ascontiguousarray(row[kept]))
        return result

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        """Each text's mean token vector, normalised: for the features that compare one vector
        per text with one per image (zero-shot scores); search matches the tokens by MaxSim."""
        tokens = self.embed_text_tokens(texts)
        if not tokens:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(np.stack([t.mean(axis=0) for t in tokens]))
