"""CLIP: a visual and a textual graph that embed into one space, plus the text tokenizer."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer

from lookalike.core.errors import InvalidInput, ModelUnavailable
from lookalike.embedding.base import Vectors
from lookalike.embedding.image_model import ImageEmbedder
from lookalike.embedding.model_dir import ModelDir
from lookalike.embedding.sessions import OrtSession

# A query is a sentence; anything this long is a mistake or an attack on the tokenizer's time.
MAX_TEXT_CHARS = 4096


def check_texts(texts: Sequence[str], what: str) -> None:
    """Texts a model can take: a list of strings, none over MAX_TEXT_CHARS."""
    if isinstance(texts, str):
        # A bare string is a sequence of characters; embedding each one is never the intent.
        raise InvalidInput(f"{what} takes a list of strings, not a string")
    for text in texts:
        if not isinstance(text, str):
            raise InvalidInput(f"texts must be strings, got {type(text).__name__}")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidInput(f"text is longer than {MAX_TEXT_CHARS} characters")


class ClipEmbedder(ImageEmbedder):
    """A model directory of kind "clip". Images go through the visual graph (as `ImageEmbedder`),
    texts through the tokenizer and the textual graph; both are loaded lazily and independently,
    so an image-only ingest never pays for the text tower."""

    def __init__(self, model_dir: ModelDir, *, batch_size: int = 16, threads: int = 0) -> None:
        super().__init__(model_dir, batch_size=batch_size, threads=threads)
        text = model_dir.manifest.text
        if model_dir.manifest.kind != "clip" or text is None:
            raise ModelUnavailable(f"{model_dir.path} is not a CLIP model directory")
        self.supports_text = True
        self.context_length = text.context_length
        self._pad_token = text.pad_token
        self._text_lock = threading.Lock()
        self._textual: OrtSession | None = None
        self._tokenizer: Tokenizer | None = None

    def load(self) -> None:
        super().load()
        self._text_parts()

    def _text_parts(self) -> tuple[Tokenizer, OrtSession]:
        tokenizer, session = self._tokenizer, self._textual
        if tokenizer is None or session is None:
            with self._text_lock:
                if self._tokenizer is None:
                    self._tokenizer = self._load_tokenizer()
                if self._textual is None:
                    self._textual = self._open_session("textual")
                tokenizer, session = self._tokenizer, self._textual
        return tokenizer, session

    def _load_tokenizer(self) -> Tokenizer:
        path = self.model_dir.file("tokenizer")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed files
            raise ModelUnavailable(f"cannot load tokenizer {path}: {exc}") from exc
        pad_id = 0
        pad_token = self._pad_token
        if pad_token is not None:
            found = tokenizer.token_to_id(pad_token)
            if found is None:
                raise ModelUnavailable(f"{path}: pad token {pad_token!r} is not in the vocabulary")
            pad_id = found
        else:
            # open_clip pads with id 0; the textual graph pools at the end-of-text token (the
            # highest id), so the padding id only has to be something it does not pool at.
            pad_token = tokenizer.id_to_token(0) or ""
        # Truncation counts the start/end tokens the post-processor adds, so a long text keeps
        # its end-of-text token, which is where CLIP reads the sentence embedding.
        tokenizer.enable_truncation(max_length=self.context_length)
        tokenizer.enable_padding(length=self.context_length, pad_id=pad_id, pad_token=pad_token)
        return tokenizer

    def tokenize(self, texts: Sequence[str]) -> NDArray[np.int64]:
        """Texts to a (N, context_length) int64 array of token ids, padded and truncated."""
        check_texts(texts, "tokenize")
        tokenizer, _ = self._text_parts()
        encodings = tokenizer.encode_batch(list(texts))
        return np.asarray([e.ids for e in encodings], dtype=np.int64).reshape(
            len(texts), self.context_length
        )

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        check_texts(texts, "embed_texts")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self.tokenize(texts)
        _, session = self._text_parts()
        output = "embedding" if "embedding" in session.output_names else None
        chunks = [
            session.run_one(tokens[start : start + self.batch_size], output)
            for start in range(0, len(tokens), self.batch_size)
        ]
        return self._check_and_normalise(np.concatenate(chunks), len(texts))
