"""`RemoteEmbedder`: an `Embedder` whose model runs in an embedding service (LOOKALIKE_EMBED_URL).

Images are still decoded and preprocessed in this process, with the model's own preprocessing
config fetched from the service, so the pixels are the ones the in-process model would see; only
the resized pixels travel (see `wire.py`). The service reports the same model id a local copy of
the model would, so collections built either way are the same collection. Every request carries
the service's key, `LOOKALIKE_EMBED_API_KEY`, when it is set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from lookalike.core.backoff import jittered_backoff
from lookalike.core.config import Settings
from lookalike.core.errors import (
    Busy,
    EmbedServiceUnavailable,
    InvalidInput,
    LookalikeError,
    ModelMismatch,
    ModelUnavailable,
    TextSearchUnavailable,
)
from lookalike.embedding.base import Embedder, Vectors
from lookalike.embedding.image_model import vector_name_for
from lookalike.embedding.model_dir import PreprocessConfig
from lookalike.embedding.preprocess import ImagePreprocessor
from lookalike.embedding.wire import (
    HEADER_DTYPE,
    HEADER_MODEL,
    HEADER_MODEL_VERSION,
    HEADER_SHAPE,
    OCTET_STREAM,
    VECTOR_DTYPE,
    format_shape,
    parse_shape,
)

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 5.0
# A 503 that says the model is missing will say so again on the next try.
_PERMANENT_CODES = frozenset({"model_unavailable", "model_mismatch"})

_guard = threading.Lock()
_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}


def _in_flight_slots(url: str, limit: int) -> threading.BoundedSemaphore:
    """One bound per service URL, shared by every model this process asks it for."""
    with _guard:
        return _slots.setdefault((url, limit), threading.BoundedSemaphore(limit))


class RemoteEmbedder(Embedder):
    """A model served by `lookalike embed-server` at `settings.embed_url`.

    Construction asks the service about the model (raising `ModelUnavailable` when it cannot
    answer); embedding calls retry connection errors and 5xx answers with exponential back-off
    and jitter, at most `embed_retries` times, and never have more than `embed_max_in_flight`
    requests open to the service from this process. A refused key is `EmbedServiceUnavailable`
    at once: trying again cannot fix a setting.
    """

    def __init__(
        self,
        settings: Settings,
        name: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not settings.embed_url:
            raise ModelUnavailable("no embedding service configured (LOOKALIKE_EMBED_URL)")
        self.url = settings.embed_url.rstrip("/")
        self.retries = settings.embed_retries
        self.backoff_s = settings.embed_retry_backoff_s
        self.acquire_timeout_s = settings.embed_timeout_s
        self._sends_key = bool(settings.embed_api_key)
        self._slots = _in_flight_slots(self.url, settings.embed_max_in_flight)
        headers = (
            {"Authorization": f"Bearer {settings.embed_api_key}"} if settings.embed_api_key else {}
        )
        # Internal traffic: a web proxy from the environment must not sit in between.
        self._client = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(
                settings.embed_timeout_s, connect=settings.embed_connect_timeout_s
            ),
            limits=httpx.Limits(
                max_connections=settings.embed_max_in_flight,
                max_keepalive_connections=settings.embed_max_in_flight,
            ),
            trust_env=False,
            transport=transport,
            headers=headers,
        )
        try:
            info = self._info(name)
        except BaseException:
            self._client.close()
            raise
        self.name = str(info["model_name"])
        self.model_id = str(info["model_version"])
        self.vector_name = vector_name_for(self.model_id)
        self.dim = int(info["dim"])
        self.supports_text = bool(info["supports_text"])
        self.input_size = int(info["input_size"])
        self.max_batch = max(1, int(info.get("max_batch", 16)))
        self.text_unavailable = info.get("text_unavailable") or (
            f"text search is unavailable: {self.name} is an image-only model"
        )
        self.preprocess_config = PreprocessConfig.model_validate(info["preprocess"])
        self._preprocessor = ImagePreprocessor(self.preprocess_config)
        if self._preprocessor.size != self.input_size:
            raise ModelUnavailable(f"{self.url}: inconsistent model info for {self.name}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id} at {self.url}, dim={self.dim})"

    def close(self) -> None:
        self._client.close()

    # --- Embedder

    def preprocess(self, image: Image.Image) -> NDArray[np.float32]:
        return self._preprocessor.prepare(image, self.name)

    def embed_preprocessed(self, batch: NDArray[np.float32]) -> Vectors:
        self._check_batch(batch)
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = [
            self._embed_chunk(batch[start : start + self.max_batch])
            for start in range(0, len(batch), self.max_batch)
        ]
        return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise InvalidInput("embed_texts takes a list of strings, not a string")
        if not self.supports_text:
            raise TextSearchUnavailable(self.text_unavailable)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = []
        for start in range(0, len(texts), self.max_batch):
            part = list(texts[start : start + self.max_batch])
            response = self._request(
                "POST", "/embed/text", json={"texts": part, "model": self.name}
            )
            body = response.json()
            self._check_model(str(body.get("model_version")))
            vectors = np.asarray(body["embeddings"], dtype=np.float32)
            if vectors.shape != (len(part), self.dim):
                raise ModelUnavailable(
                    f"{self.url} answered vectors of shape {vectors.shape} for {len(part)} texts"
                )
            chunks.append(vectors)
        return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]

    # --- HTTP

    def _info(self, name: str | None) -> dict[str, Any]:
        params = {"model": name} if name else None
        response = self._request("GET", "/embed/info", params=params)
        try:
            info = response.json()
            missing = [
                key
                for key in ("model_name", "model_version", "dim", "input_size", "preprocess")
                if key not in info
            ]
            if missing:
                raise KeyError(", ".join(missing))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelUnavailable(
                f"{self.url} does not answer like a Lookalike embedding service "
                f"(GET /embed/info: {exc!r}); check LOOKALIKE_EMBED_URL"
            ) from exc
        if not isinstance(info, dict):
            raise ModelUnavailable(f"{self.url}/embed/info did not answer a JSON object")
        return info

    def _embed_chunk(self, chunk: NDArray[np.float32]) -> Vectors:
        pixels = self._preprocessor.input_to_pixels(chunk)
        if pixels is not None:
            dtype, shape, body = "uint8", pixels.shape, pixels.tobytes()
        else:
            wire = np.ascontiguousarray(chunk, dtype=VECTOR_DTYPE)
            dtype, shape, body = "float32", wire.shape, wire.tobytes()
        response = self._request(
            "POST",
            "/embed/preprocessed",
            content=body,
            headers={
                "Content-Type": OCTET_STREAM,
                HEADER_DTYPE: dtype,
                HEADER_SHAPE: format_shape(shape),
                HEADER_MODEL: self.name,
                HEADER_MODEL_VERSION: self.model_id,
            },
        )
        self._check_model(response.headers.get(HEADER_MODEL_VERSION))
        n, dim = parse_shape(response.headers.get(HEADER_SHAPE), 2)
        if (n, dim) != (len(chunk), self.dim) or len(response.content) != n * dim * 4:
            raise ModelUnavailable(
                f"{self.url} answered {len(response.content)} bytes of shape {(n, dim)} for "
                f"{len(chunk)} images of a {self.dim}-d model"
            )
        vectors: Vectors = np.frombuffer(response.content, dtype=VECTOR_DTYPE).reshape(n, dim)
        return vectors.astype(np.float32)  # a writable, native-order copy

    def _check_model(self, model_version: str | None) -> None:
        if model_version != self.model_id:
            raise ModelMismatch(
                f"the embedding service at {self.url} now runs {model_version}, not "
                f"{self.model_id}; vectors of two models must not mix (restart this process "
                "after changing the service's model)"
            )

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, retried on connection errors and 5xx, within the in-flight bound."""
        attempts = self.retries + 1
        problem = ""
        response: httpx.Response | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self._backoff(attempt))
            if not self._slots.acquire(timeout=self.acquire_timeout_s):
                raise Busy(
                    f"the embedding service at {self.url} is saturated: all "
                    "LOOKALIKE_EMBED_MAX_IN_FLIGHT requests stayed busy; try again shortly"
                )
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                response = None
                problem = _describe(exc)
                log.debug("embedding service %s%s: %s (try %d)", self.url, path, problem, attempt)
                continue
            finally:
                self._slots.release()
            if response.status_code < 400:
                return response
            error = _error_of(response)
            if response.status_code == 401:
                raise self._key_refused(error)
            if response.status_code < 500 or error.code in _PERMANENT_CODES:
                raise error
            problem = f"HTTP {response.status_code}: {error.message}"
            log.debug("embedding service %s%s: %s (try %d)", self.url, path, problem, attempt)
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if response is not None:
            error = _error_of(response)
            if isinstance(error, Busy):
                error.message = f"the embedding service at {self.url} is busy: {error.message}"
                raise error
            raise EmbedServiceUnavailable(
                f"the embedding service at {self.url} keeps failing ({problem}, {tries}); "
                "see its log"
            )
        raise EmbedServiceUnavailable(
            f"the embedding service at {self.url} is unreachable ({problem}, {tries}); start "
            "it with `lookalike embed-server`, or fix or unset LOOKALIKE_EMBED_URL to run the "
            "model in this process"
        )

    def _key_refused(self, error: LookalikeError) -> EmbedServiceUnavailable:
        # Not Unauthorized: this process's setting is wrong, not the credentials of whoever
        # called the API; and not a plain ModelUnavailable, which would try another model.
        if self._sends_key:
            problem = "refused this process's key: set LOOKALIKE_EMBED_API_KEY to the service's"
        else:
            problem = "needs a key: set LOOKALIKE_EMBED_API_KEY to the key it runs with"
        return EmbedServiceUnavailable(
            f"the embedding service at {self.url} {problem} (it answered: {error.message})"
        )

    def _backoff(self, attempt: int) -> float:
        return jittered_backoff(attempt, self.backoff_s, _MAX_BACKOFF_S)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _error_classes() -> dict[str, type[LookalikeError]]:
    found: dict[str, type[LookalikeError]] = {}
    pending: list[type[LookalikeError]] = [LookalikeError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


def _error_of(response: httpx.Response) -> LookalikeError:
    """The service's `{"error": {"code", "message"}}` as the same domain error here."""
    code, message = "error", f"HTTP {response.status_code}"
    try:
        body = response.json()
        code = str(body["error"]["code"])
        message = str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        if response.text:
            message = f"HTTP {response.status_code}: {response.text[:200]}"
    cls = _error_classes().get(code)
    if cls is not None and cls.status == response.status_code:
        try:
            return cls(message)
        except TypeError:
            pass
    error = LookalikeError(message)
    error.code = code
    error.status = response.status_code if response.status_code >= 400 else 502
    return error
