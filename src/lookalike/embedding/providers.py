"""Hosted embedding models behind HTTP APIs, as `Embedder`s: Doubao (Ark's multimodal endpoint)
and any OpenAI-compatible `/embeddings` endpoint.

They are used by name like any model (`doubao`, `openai-embed`: `PROVIDER_NAMES`), so a
collection records them the same way: `model_id` is provider, model and vector size
(`doubao/doubao-embedding-vision-250615@2048`), which changes whenever the vectors would.

The ingest pipeline hands every embedder a model-input tensor made by `preprocess`; here that
tensor is the image itself, downscaled to fit `provider_image_size` (padded to a square, whole,
never cropped) with the pixel values kept as they are, so the request can carry it as a JPEG
data URL. The image is therefore decoded and shrunk once, in the prepare stage, as for a local
model, and only a few hundred kilobytes go on the wire.

Every request goes through one `_Client`: a token bucket per base URL shared by the whole process
(the provider's limit is per key, not per model), retries with jittered exponential back-off on
connection errors, timeouts and 5xx, 429 answered by waiting its `Retry-After`, and 401/403
raised at once as a configuration error, since no retry can fix a key.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import SecretStr

from lookalike.core.backoff import jittered_backoff, retry_after_seconds
from lookalike.core.config import Settings
from lookalike.core.errors import (
    EmbeddingProviderError,
    EmbeddingProviderMisconfigured,
    EmbeddingProviderUnavailable,
    ImageEmbeddingUnsupported,
    InvalidInput,
    ModelUnavailable,
)
from lookalike.embedding.base import Embedder, Vectors
from lookalike.embedding.image_model import l2_normalise, vector_name_for
from lookalike.embedding.model_dir import PreprocessConfig
from lookalike.embedding.preprocess import ImagePreprocessor

log = logging.getLogger(__name__)

DOUBAO = "doubao"
OPENAI_EMBED = "openai-embed"
PROVIDER_NAMES = frozenset({DOUBAO, OPENAI_EMBED})

# The vector size of the Doubao models we know, when `doubao_dimensions` leaves it open.
DOUBAO_DIMENSIONS = {
    "doubao-embedding-vision-250615": 2048,
    "doubao-embedding-vision-250328": 2048,
}
_MAX_BACKOFF_S = 10.0
_DOWN_MAX_S = 300.0
_OPENAI_MAX_BATCH = 16


def is_provider(name: str) -> bool:
    return name in PROVIDER_NAMES


def provider_embedder(
    settings: Settings, name: str, *, transport: httpx.BaseTransport | None = None
) -> ProviderEmbedder:
    """The embedder model name `name` (one of `PROVIDER_NAMES`) stands for."""
    if name == DOUBAO:
        return DoubaoEmbedder(settings, transport=transport)
    if name == OPENAI_EMBED:
        return OpenAIEmbedder(settings, transport=transport)
    raise ModelUnavailable(f"{name!r} is not a remote embedding provider")


# --- the rate limit ------------------------------------------------------------------


class TokenBucket:
    """`rate` requests a second on average, up to `burst` at once. Thread-safe."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Take a token, waiting for one to accrue if there is none."""
        if self.rate <= 0:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            time.sleep(wait)


_buckets_guard = threading.Lock()
_buckets: dict[tuple[str, float, int], TokenBucket] = {}


def rate_limiter(url: str, rate: float, burst: int) -> TokenBucket:
    """The bucket of one provider base URL, shared by every embedder of this process."""
    with _buckets_guard:
        return _buckets.setdefault((url, rate, burst), TokenBucket(rate, burst))


# --- HTTP ------------------------------------------------------------------------


class _Client:
    """One provider's HTTP client: rate limit, retries, back-off, and errors in our terms."""

    def __init__(
        self,
        settings: Settings,
        *,
        url: str,
        api_key: SecretStr | None,
        key_setting: str,
        what: str,
        transport: httpx.BaseTransport | None,
    ) -> None:
        self.url = url.rstrip("/")
        self.what = what
        self.key_setting = key_setting
        self.retries = settings.provider_retries
        self.backoff_s = settings.provider_retry_backoff_s
        self.max_retry_after_s = settings.provider_max_retry_after_s
        self.bucket = rate_limiter(
            self.url, settings.provider_rate_limit_per_s, settings.provider_rate_burst
        )
        key = api_key.get_secret_value() if api_key is not None else ""
        self._sends_key = bool(key)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(
                settings.provider_timeout_s, connect=settings.provider_connect_timeout_s
            ),
            limits=httpx.Limits(
                max_connections=settings.provider_max_in_flight,
                max_keepalive_connections=settings.provider_max_in_flight,
            ),
            headers=headers,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        """POST `body`, retried as the module says; the answer's JSON."""
        attempts = self.retries + 1
        problem = ""
        for attempt in range(attempts):
            self.bucket.acquire()
            try:
                response = self._http.post(path, json=body)
            except httpx.TransportError as exc:
                problem = _describe(exc)
                log.debug("%s %s: %s (try %d)", self.what, path, problem, attempt + 1)
                if attempt + 1 < attempts:
                    time.sleep(self._backoff(attempt + 1))
                continue
            status = response.status_code
            if status < 400:
                try:
                    return response.json()
                except ValueError:
                    raise EmbeddingProviderError(
                        f"{self.what} at {self.url} answered something that is not JSON "
                        f"(HTTP {status}: {response.text[:200]!r})"
                    ) from None
            message = _error_message(response)
            if status in (401, 403):
                raise self._refused(status, message)
            if status == 429:
                problem = f"HTTP 429: {message}"
                if attempt + 1 < attempts:
                    time.sleep(self._retry_after(response, attempt + 1))
                continue
            if status >= 500:
                problem = f"HTTP {status}: {message}"
                log.debug("%s %s: %s (try %d)", self.what, path, problem, attempt + 1)
                if attempt + 1 < attempts:
                    time.sleep(self._backoff(attempt + 1))
                continue
            raise EmbeddingProviderError(
                f"{self.what} at {self.url} refused the request: {message}"
            )
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        raise EmbeddingProviderUnavailable(
            f"{self.what} at {self.url} is unavailable ({problem}, {tries})"
        )

    def _refused(self, status: int, message: str) -> EmbeddingProviderMisconfigured:
        if self._sends_key:
            fix = f"it refused this process's key: check {self.key_setting}"
        else:
            fix = f"it needs a key: set {self.key_setting}"
        return EmbeddingProviderMisconfigured(
            f"{self.what} at {self.url} answered HTTP {status}; {fix} (it said: {message})"
        )

    def _backoff(self, attempt: int) -> float:
        return jittered_backoff(attempt, self.backoff_s, _MAX_BACKOFF_S)

    def _retry_after(self, response: httpx.Response, attempt: int) -> float:
        """The wait a 429 asks for (seconds or an HTTP date), else the usual back-off."""
        wanted = retry_after_seconds(response.headers.get("Retry-After"))
        if wanted is None:
            return self._backoff(attempt)
        if wanted > self.max_retry_after_s:
            raise EmbeddingProviderUnavailable(
                f"{self.what} at {self.url} is rate limiting this key for {wanted:.0f} s "
                "(Retry-After), longer than LOOKALIKE_PROVIDER_MAX_RETRY_AFTER_S; lower "
                "LOOKALIKE_PROVIDER_RATE_LIMIT_PER_S"
            )
        return wanted


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _error_message(response: httpx.Response) -> str:
    """Ark and OpenAI both answer `{"error": {"code", "message"}}`; anything else verbatim."""
    try:
        error = response.json()["error"]
        if isinstance(error, dict):
            code = error.get("code")
            message = str(error.get("message", ""))
            return f"{code}: {message}" if code else message
        return str(error)
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or f"HTTP {response.status_code}"


# --- the embedders ---------------------------------------------------------------


class ProviderEmbedder(Embedder):
    """What both providers share: the wire image, unit vectors, the health of the provider.

    `available()` is False for a while after the provider failed (`provider_down_s`, doubling
    while it keeps failing), so ingest of a collection with a fallback chain goes straight to
    the next model instead of waiting through every retry again for each batch.
    """

    provider: str
    remote_model: str
    dimensions: int | None

    def __init__(self, settings: Settings, client: _Client) -> None:
        self._client = client
        self.max_in_flight = settings.provider_max_in_flight
        self.jpeg_quality = settings.provider_jpeg_quality
        self.input_size = settings.provider_image_size
        # Pixels as they are (x / 255 - 0) / (1 / 255): the "tensor" is the image, padded.
        self.preprocess_config = PreprocessConfig(
            size=settings.provider_image_size,
            mean=(0.0, 0.0, 0.0),
            std=(1 / 255, 1 / 255, 1 / 255),
            resize_mode="pad",
            interpolation="bicubic",
            fill_color=0,
        )
        self._preprocessor = ImagePreprocessor(self.preprocess_config)
        self._down_s = settings.provider_down_s
        self._health = threading.Lock()
        self._down_until = 0.0
        self._down_for = 0.0

    def _identify(self, dim: int) -> None:
        self.dim = dim
        self.model_id = f"{self.provider}/{self.remote_model}@{dim}"
        self.vector_name = vector_name_for(self.model_id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id} at {self._client.url})"

    def close(self) -> None:
        self._client.close()

    # --- health

    def available(self) -> bool:
        with self._health:
            return time.monotonic() >= self._down_until

    def _tracked(self, call: Callable[[], Vectors]) -> Vectors:
        try:
            vectors = call()
        except ModelUnavailable:
            with self._health:
                self._down_for = min(_DOWN_MAX_S, self._down_for * 2 or self._down_s)
                self._down_until = time.monotonic() + self._down_for
            raise
        with self._health:
            self._down_for = 0.0
            self._down_until = 0.0
        return vectors

    # --- Embedder

    def preprocess(self, image: Image.Image) -> NDArray[np.float32]:
        return self._preprocessor.prepare(image, self.name)

    def embed_preprocessed(self, batch: NDArray[np.float32]) -> Vectors:
        self._check_batch(batch)
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        urls = [self._data_url(pixels) for pixels in batch]
        return self._tracked(lambda: self._embed_image_urls(urls))

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise InvalidInput("embed_texts takes a list of strings, not a string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if any(not text for text in texts):
            raise InvalidInput(f"{self.name} cannot embed an empty text")
        return self._tracked(lambda: self._embed_texts(list(texts)))

    def _data_url(self, tensor: NDArray[np.float32]) -> str:
        """A preprocessed image (3, H, W) as a JPEG data URL."""
        pixels = np.clip(np.rint(tensor.transpose(1, 2, 0)), 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=self.jpeg_quality)
        return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")

    def _vector(self, raw: object, what: str) -> NDArray[np.float32]:
        """One answered embedding, checked: a list of `dim` finite numbers."""
        try:
            vector = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError):
            vector = np.zeros(0, dtype=np.float32)
        if vector.ndim != 1 or not np.all(np.isfinite(vector)) or vector.size == 0:
            raise EmbeddingProviderError(
                f"{self.name} ({self.remote_model}) answered no usable embedding for {what}"
            )
        if vector.shape[0] != self.dim:
            raise EmbeddingProviderError(
                f"{self.name} ({self.remote_model}) answered a {vector.shape[0]}-d vector for "
                f"{what}, not {self.dim}-d; vectors of two sizes must not mix (check the "
                "dimensions setting against the collection)"
            )
        return vector

    def _in_parallel(self, calls: Sequence[Callable[[], NDArray[np.float32]]]) -> Vectors:
        """One request per call, up to `provider_max_in_flight` at a time, in input order."""
        if len(calls) == 1:
            rows = [calls[0]()]
        else:
            with ThreadPoolExecutor(min(self.max_in_flight, len(calls))) as pool:
                rows = list(pool.map(lambda call: call(), calls))
        return l2_normalise(np.stack(rows))

    def _embed_image_urls(self, urls: list[str]) -> Vectors:
        raise NotImplementedError

    def _embed_texts(self, texts: list[str]) -> Vectors:
        raise NotImplementedError


class DoubaoEmbedder(ProviderEmbedder):
    """Doubao embedding-vision on Volcengine Ark: `POST {url}/embeddings/multimodal`.

    Ark fuses the parts of one request's `input` into one embedding (`data.embedding`), so each
    image and each text is a request of its own; `provider_max_in_flight` of them run at once.
    """

    name = DOUBAO
    provider = DOUBAO
    supports_text = True

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None) -> None:
        client = _Client(
            settings,
            url=settings.doubao_url,
            api_key=settings.doubao_api_key,
            key_setting="LOOKALIKE_DOUBAO_API_KEY",
            what="Doubao",
            transport=transport,
        )
        super().__init__(settings, client)
        self.remote_model = settings.doubao_model
        self.dimensions = settings.doubao_dimensions
        dim = self.dimensions or DOUBAO_DIMENSIONS.get(self.remote_model)
        if dim is None:
            # An unknown model: its size is whatever it answers (one request, once).
            self.dim = 0
            dim = len(self._request([{"type": "text", "text": "dimension probe"}], "a probe"))
        self._identify(dim)

    def _embed_image_urls(self, urls: list[str]) -> Vectors:
        return self._in_parallel(
            [
                partial(
                    self._checked, [{"type": "image_url", "image_url": {"url": url}}], f"image {n}"
                )
                for n, url in enumerate(urls)
            ]
        )

    def _embed_texts(self, texts: list[str]) -> Vectors:
        return self._in_parallel(
            [
                partial(self._checked, [{"type": "text", "text": text}], f"text {n}")
                for n, text in enumerate(texts)
            ]
        )

    def _checked(self, parts: list[dict[str, Any]], what: str) -> NDArray[np.float32]:
        return self._vector(self._request(parts, what), what)

    def _request(self, parts: list[dict[str, Any]], what: str) -> list[Any]:
        body: dict[str, Any] = {
            "model": self.remote_model,
            "input": parts,
            "encoding_format": "float",
        }
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        answer = self._client.post_json("/embeddings/multimodal", body)
        try:
            embedding = answer["data"]["embedding"]
        except (KeyError, TypeError):
            raise EmbeddingProviderError(
                f"Doubao answered without data.embedding for {what}: {str(answer)[:200]}"
            ) from None
        if not isinstance(embedding, list):
            raise EmbeddingProviderError(f"Doubao answered a non-list embedding for {what}")
        return embedding


class OpenAIEmbedder(ProviderEmbedder):
    """An OpenAI-compatible `POST {url}/embeddings` (`{"model", "input": [...]}` ->
    `{"data": [{"embedding", "index"}]}`): texts always; images, as data URLs in `input`, only
    with `openai_embed_images`, since most such endpoints embed texts only."""

    name = OPENAI_EMBED
    provider = "openai"
    supports_text = True

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None) -> None:
        if not settings.openai_embed_url or not settings.openai_embed_model:
            raise ModelUnavailable(
                "model openai-embed needs LOOKALIKE_OPENAI_EMBED_URL and "
                "LOOKALIKE_OPENAI_EMBED_MODEL"
            )
        client = _Client(
            settings,
            url=settings.openai_embed_url,
            api_key=settings.openai_embed_api_key,
            key_setting="LOOKALIKE_OPENAI_EMBED_API_KEY",
            what="the embedding endpoint",
            transport=transport,
        )
        super().__init__(settings, client)
        self.remote_model = settings.openai_embed_model
        self.dimensions = settings.openai_embed_dimensions
        self.accepts_images = settings.openai_embed_images
        dim = self.dimensions
        if dim is None:
            self.dim = 0
            (probe,) = self._request(["dimension probe"])
            dim = len(probe)
        self._identify(dim)

    def embed_preprocessed(self, batch: NDArray[np.float32]) -> Vectors:
        if not self.accepts_images:
            raise ImageEmbeddingUnsupported(
                f"{self.name} ({self.remote_model} at {self._client.url}) embeds texts only; "
                "set LOOKALIKE_OPENAI_EMBED_IMAGES=true if the endpoint takes images as data "
                "URLs, or use another model for image collections"
            )
        return super().embed_preprocessed(batch)

    def _embed_image_urls(self, urls: list[str]) -> Vectors:
        return self._batched(urls, "image")

    def _embed_texts(self, texts: list[str]) -> Vectors:
        return self._batched(texts, "text")

    def _batched(self, inputs: list[str], kind: str) -> Vectors:
        chunks = [
            inputs[start : start + _OPENAI_MAX_BATCH]
            for start in range(0, len(inputs), _OPENAI_MAX_BATCH)
        ]
        rows: list[NDArray[np.float32]] = []
        for chunk in chunks:
            answered = self._request(chunk)
            rows += [self._vector(raw, f"{kind} {len(rows) + n}") for n, raw in enumerate(answered)]
        return l2_normalise(np.stack(rows))

    def _request(self, inputs: list[str]) -> list[Any]:
        body: dict[str, Any] = {"model": self.remote_model, "input": inputs}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        answer = self._client.post_json("/embeddings", body)
        try:
            data = answer["data"]
            by_index = {int(item["index"]): item["embedding"] for item in data}
        except (KeyError, TypeError, ValueError):
            raise EmbeddingProviderError(
                f"the embedding endpoint answered without data[].embedding/index: "
                f"{str(answer)[:200]}"
            ) from None
        if sorted(by_index) != list(range(len(inputs))):
            raise EmbeddingProviderError(
                f"the embedding endpoint answered {len(by_index)} embeddings for "
                f"{len(inputs)} inputs"
            )
        return [by_index[i] for i in range(len(inputs))]
