"""The embedding service: the model alone behind HTTP (`lookalike embed-server`).

The API process uses it through `RemoteEmbedder` when `LOOKALIKE_EMBED_URL` is set, so N API
replicas can share a few (GPU) model servers. Other tools call it directly:

- `POST /embed/image`: one image as multipart `file`, or JSON `{"image_b64": ...}` or
  `{"url": ...}` (only URLs under `LOOKALIKE_EMBED_ALLOWED_URLS`); `POST /embed/image/batch`:
  several multipart `files`, or JSON `{"images": [base64 | {"image_b64"} | {"url"}, ...]}`.
- `POST /embed/text`: `{"text": ...}` or `{"texts": [...]}`.
- `POST /embed/preprocessed`: already-resized pixels, the internal fast path (`wire.py`).
- `GET /embed/info`: what `RemoteEmbedder` needs to preprocess exactly as the model does.
- `GET /healthz`, `GET /readyz`, `GET /metrics`; and the routes of the CLIP feature service
  other tools already call: `GET /health`, `POST /extract-features`, `POST /extract-features-batch`.

Every request may name a `model` (a form field, a JSON field, or the `X-Lookalike-Model` header);
the default is the model the service resolved at start-up (`Models.default`). Every
answer names the model that made the vectors: `model_name`, `model_version` (its model id, which
is what a collection records) and `dim`.

Anyone who can reach the service can make it burn CPU and fetch URLs, so every route but the
probes takes the shared key `LOOKALIKE_EMBED_API_KEY` (`ServiceAccess`); the service refuses to
start without one unless `LOOKALIKE_EMBED_OPEN` is set and it listens on loopback only. A URL is
fetched only under an allow-list prefix and, since a listed name can resolve to anything, only
from the public addresses it resolved to when checked (`fetch_addresses`, `pinned_request`).

Bodies are read and errors answered by `lookalike.serving`, which the API uses too: a mistake
gets the same status and code from both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any

import httpx
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from lookalike import __version__
from lookalike.core.config import Settings
from lookalike.core.errors import (
    ImageTooLarge,
    InvalidInput,
    LookalikeError,
    Misconfigured,
    ModelMismatch,
    ModelUnavailable,
    Unauthorized,
    UrlFetchFailed,
    UrlNotAllowed,
)
from lookalike.embedding.base import Embedder, Vectors
from lookalike.embedding.image_model import ImageEmbedder
from lookalike.embedding.model_dir import PreprocessConfig
from lookalike.embedding.models import Models
from lookalike.embedding.preprocess import ImagePreprocessor
from lookalike.embedding.wire import (
    HEADER_DIM,
    HEADER_DTYPE,
    HEADER_MODEL,
    HEADER_MODEL_NAME,
    HEADER_MODEL_VERSION,
    HEADER_SHAPE,
    OCTET_STREAM,
    VECTOR_DTYPE,
    WIRE_DTYPES,
    format_shape,
    parse_shape,
)
from lookalike.imaging import decode_image
from lookalike.serving.bodies import is_multipart, json_body, read_body, read_files
from lookalike.serving.errors import install_error_handlers

log = logging.getLogger(__name__)

MAX_TEXT_BATCH = 1024
_MAX_REDIRECTS = 3
# JSON around a base64 image: the encoding grows it by 4/3, the rest is field names.
_JSON_SLACK = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- schemas ----------------------------------------------------------------------------------


class ModelFields(BaseModel):
    model_name: str = Field(description="The model's name, e.g. clip-vit-b-32-laion2b.")
    model_version: str = Field(
        description="Its model id (name@weights hash): what collections record."
    )
    dim: int


class EmbeddingOut(ModelFields):
    embedding: list[float] = Field(description="A unit vector of `dim` floats.")


class EmbeddingsOut(ModelFields):
    count: int
    embeddings: list[list[float]]


class FeaturesOut(ModelFields):
    """`/extract-features`, as the CLIP feature service answered it."""

    success: bool = True
    features: list[float]


class FeaturesBatchOut(ModelFields):
    success: bool = True
    count: int
    features: list[list[float]]


class ModelInfoOut(ModelFields):
    """What a client needs to preprocess images exactly as the model does, then send pixels."""

    model_id: str
    vector_name: str
    supports_text: bool
    text_unavailable: str | None = Field(
        default=None, description="Why text is refused (image-only models): what to install."
    )
    input_size: int
    preprocess: PreprocessConfig
    max_batch: int
    wire_dtypes: list[str] = Field(default_factory=lambda: list(WIRE_DTYPES))


class ImageSource(BaseModel):
    """One image in a JSON body: base64 bytes (`image_b64`, or `image` as the feature service
    took it; a data URL works too) or a URL under the allow-list."""

    model_config = ConfigDict(extra="ignore")

    image_b64: str | None = None
    image: str | None = None
    url: str | None = None
    model: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageSource:
        given = [f for f in ("image_b64", "image", "url") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of image_b64 (base64 image bytes) or url")
        return self


class ImageBatchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    images: list[str | ImageSource] = Field(min_length=1)
    model: str | None = None


class TextRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str | None = None
    texts: list[str] | None = Field(default=None, max_length=MAX_TEXT_BATCH)
    model: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TextRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" (a string) or "texts" (a list)')
        return self


# --- metrics ----------------------------------------------------------------------------------


class EmbedMetrics:
    """Prometheus metrics of one app (its own registry, so two apps in one process never clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lookalike_embed_requests",
            "Requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lookalike_embed_request_seconds",
            "Request latency by route.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "lookalike_embed_batch_size",
            "Images or texts per embedding request, by route.",
            ["route"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "lookalike_embed_model_loaded",
            "1 when the model is loaded and ready, 0 while loading or after a failed load.",
            ["model"],
            registry=self.registry,
        )
        self.model_load_seconds = Gauge(
            "lookalike_embed_model_load_seconds",
            "How long loading the model took.",
            ["model"],
            registry=self.registry,
        )


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _MetricsMiddleware:
    """Counts and times every request under its route template (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics: EmbedMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


# --- who may call it -------------------------------------------------------------------------

_LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")

_bearer = HTTPBearer(
    auto_error=False, description="The service's key, LOOKALIKE_EMBED_API_KEY, as a bearer token."
)
_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The service's key, LOOKALIKE_EMBED_API_KEY."
)


def is_loopback_host(host: str) -> bool:
    """Whether binding to `host` keeps a server on this machine: `localhost`, 127.0.0.0/8 or ::1."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    address = ip_literal(name)
    return address is not None and _unmapped(address).is_loopback


def check_service_access(settings: Settings) -> None:
    """Refuse to run a service that anyone could use: without `embed_api_key` it runs only with
    `embed_open` set and `host` on loopback (`Misconfigured` otherwise)."""
    if settings.embed_api_key and settings.embed_api_key.strip():
        return
    loopback = " or ".join(_LOOPBACK_NAMES)
    if not settings.embed_open:
        raise Misconfigured(
            "the embedding service needs a key: set LOOKALIKE_EMBED_API_KEY (its clients send "
            "the same value), or set LOOKALIKE_EMBED_OPEN=true to run it without one on a "
            f"loopback address ({loopback})"
        )
    if not is_loopback_host(settings.host):
        raise Misconfigured(
            f"LOOKALIKE_EMBED_OPEN runs the embedding service without a key, which is refused "
            f"on {settings.host!r}: other machines can reach that address. Set "
            f"LOOKALIKE_EMBED_API_KEY, or listen on {loopback} (--host)"
        )


class ServiceAccess:
    """Who may use the service: callers presenting `LOOKALIKE_EMBED_API_KEY` (`Authorization:
    Bearer KEY` or `X-API-Key: KEY`), or, in open mode, callers on a loopback connection.

    Open mode checks the connection as well as the bind address checked at start-up, because an
    ASGI server other than `lookalike embed-server` may listen elsewhere than `settings.host`.
    """

    def __init__(self, settings: Settings) -> None:
        check_service_access(settings)
        key = settings.embed_api_key
        # Digests of equal length, so the comparison does not even reveal the key's length.
        self._digest = _digest(key) if key and key.strip() else None

    @property
    def open(self) -> bool:
        return self._digest is None

    def allows(self, request: Request, presented: str | None) -> bool:
        if self._digest is None:
            return _on_loopback(request)
        return presented is not None and hmac.compare_digest(_digest(presented), self._digest)

    def check(self, request: Request, presented: str | None) -> None:
        """`Unauthorized` unless `allows`, saying what is missing."""
        if self.allows(request, presented):
            return
        if self._digest is None:
            raise Unauthorized(
                "this embedding service runs without a key (LOOKALIKE_EMBED_OPEN) and answers "
                "on loopback only; its operator sets LOOKALIKE_EMBED_API_KEY to serve others"
            )
        if presented is None:
            raise Unauthorized(
                "this embedding service needs its key: send 'Authorization: Bearer <key>' or "
                "'X-API-Key: <key>' (the Lookalike API sends LOOKALIKE_EMBED_API_KEY)"
            )
        raise Unauthorized("that is not this embedding service's key (LOOKALIKE_EMBED_API_KEY)")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _on_loopback(request: Request) -> bool:
    """Whether the request came in on a loopback socket (or a Unix socket, which is local)."""
    server = request.scope.get("server")
    if not server:
        return False
    host, port = server[0], server[1]
    return port is None or is_loopback_host(str(host))


def _presented_key(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> str | None:
    if api_key:
        return api_key
    return credentials.credentials if credentials is not None else None


PresentedKey = Annotated[str | None, Depends(_presented_key)]


def require_key(request: Request, presented: PresentedKey) -> None:
    """The dependency of every route that embeds or tells about models."""
    access: ServiceAccess = request.app.state.embed_access
    access.check(request, presented)


def caller_has_key(request: Request, presented: PresentedKey) -> bool:
    """For the open probes: whether to add details (the model, a load error) to the answer."""
    access: ServiceAccess = request.app.state.embed_access
    return access.allows(request, presented)


HasKey = Annotated[bool, Depends(caller_has_key)]


# --- the service ------------------------------------------------------------------------------


class EmbedService:
    """The loaded models and what the routes do with them; no HTTP in here."""

    def __init__(self, settings: Settings, metrics: EmbedMetrics) -> None:
        # The service runs the models itself even when the environment it shares with an API
        # process names an embedding service (it would otherwise call itself).
        self.settings = settings.model_copy(update={"embed_url": None})
        self.metrics = metrics
        self.models = Models(self.settings)
        self._lock = threading.Lock()
        self._ready_models: set[str] = set()
        self._preprocessors: dict[str, ImagePreprocessor] = {}
        self.ready = False
        self.load_error: str | None = None
        self._http = httpx.Client(
            timeout=httpx.Timeout(
                settings.embed_fetch_timeout_s, connect=min(5.0, settings.embed_fetch_timeout_s)
            ),
            follow_redirects=False,  # each hop is checked against the allow-list
            trust_env=False,
            # Connections are keyed by the IP they go to, not the name checked against the
            # certificate: a kept one could carry a request for another name at the same IP.
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def close(self) -> None:
        self._http.close()
        self.models.close()

    # --- models

    def default(self) -> Embedder:
        """The model the service resolved at start-up (`Models.default`), loaded."""
        return self._ready(self.settings.model, self.models.default)

    def model(self, name: str | None) -> Embedder:
        """`name`, or the default model; loaded once, then kept."""
        default = self.default()
        if not name or name == default.name:
            return default
        return self._ready(name, lambda: self.models.get(name))

    def _ready(self, label: str, get: Callable[[], Embedder]) -> Embedder:
        """`get()`'s model with its sessions loaded, its load time and state in the metrics."""
        if label in self._ready_models:
            return get()
        with self._lock:
            started = time.perf_counter()
            try:
                embedder = get()
                if not isinstance(embedder, ImageEmbedder):
                    raise ModelUnavailable(f"{embedder!r} cannot be served: it does not run here")
                embedder.load()
            except LookalikeError:
                self.metrics.model_loaded.labels(label).set(0)
                raise
            if label not in self._ready_models:
                seconds = time.perf_counter() - started
                self.metrics.model_loaded.labels(embedder.name).set(1)
                self.metrics.model_load_seconds.labels(embedder.name).set(seconds)
                log.info("model %s loaded in %.1f s", embedder.model_id, seconds)
                self._ready_models.add(label)
            return embedder

    def warm_up(self) -> None:
        """Load the default model (at start-up, in the background, so /healthz answers now)."""
        try:
            self.default()
        except LookalikeError as exc:
            self.load_error = exc.message
            log.error("the embedding model could not be loaded: %s", exc.message)
            return
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("the embedding model could not be loaded")
            return
        self.load_error = None
        self.ready = True

    def preprocessor(self, embedder: Embedder) -> ImagePreprocessor:
        found = self._preprocessors.get(embedder.model_id)
        if found is None:
            found = ImagePreprocessor(self.preprocess_config(embedder))
            self._preprocessors[embedder.model_id] = found
        return found

    @staticmethod
    def preprocess_config(embedder: Embedder) -> PreprocessConfig:
        assert isinstance(embedder, ImageEmbedder)
        return embedder.model_dir.manifest.preprocess

    def info(self, embedder: Embedder) -> ModelInfoOut:
        hint = None if embedder.supports_text else getattr(embedder, "text_hint", None)
        return ModelInfoOut(
            **model_fields(embedder),
            model_id=embedder.model_id,
            vector_name=embedder.vector_name,
            supports_text=embedder.supports_text,
            text_unavailable=hint,
            input_size=embedder.input_size,
            preprocess=self.preprocess_config(embedder),
            max_batch=self.settings.embed_max_batch,
        )

    # --- work (blocking: run in a thread)

    def embed_image_bytes(self, embedder: Embedder, images: list[bytes]) -> Vectors:
        tensors = []
        for index, data in enumerate(images):
            try:
                decoded = decode_image(
                    data,
                    max_bytes=self.settings.max_image_bytes,
                    max_pixels=self.settings.max_image_pixels,
                    reduce_for=embedder.input_size,
                )
                tensors.append(embedder.preprocess(decoded.image))
            except LookalikeError as exc:
                if len(images) > 1:
                    exc.message = f"image {index}: {exc.message}"
                raise
        return embedder.embed_preprocessed(np.stack(tensors))

    def embed_pixels(
        self, embedder: Embedder, dtype: str, shape: tuple[int, ...], body: bytes
    ) -> Vectors:
        array = np.frombuffer(body, dtype=WIRE_DTYPES[dtype]).reshape(shape)
        if dtype == "uint8":
            batch = self.preprocessor(embedder).pixels_to_input(array)
        else:
            batch = array.astype(np.float32)
            if not np.all(np.isfinite(batch)):
                raise InvalidInput("the float32 batch holds NaN or infinite values")
        return embedder.embed_preprocessed(batch)

    def image_bytes(self, source: str | ImageSource) -> bytes:
        if isinstance(source, str):
            return self.decode_b64(source)
        if source.url is not None:
            return self.fetch(source.url)
        b64 = source.image_b64 if source.image_b64 is not None else source.image
        assert b64 is not None
        return self.decode_b64(b64)

    def decode_b64(self, text: str) -> bytes:
        if text.startswith("data:"):
            text = text.partition(",")[2]
        limit = self.settings.max_image_bytes
        if len(text) > (limit + 2) // 3 * 4 + 4:
            raise ImageTooLarge(f"the image is over the size limit of {limit} bytes")
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("image_b64 is not valid base64") from None

    def fetch(self, url: str) -> bytes:
        """GET an image from an allowed URL: timeouts, the byte limit, and every redirect hop
        checked against the allow-list and connected to the public address it was checked at."""
        limit = self.settings.max_image_bytes
        deadline = time.monotonic() + self.settings.embed_fetch_timeout_s
        allowed = self.settings.embed_allowed_urls
        current = httpx.URL(check_url_allowed(url, allowed))
        for _ in range(_MAX_REDIRECTS + 1):
            addresses = fetch_addresses(current)
            try:
                with self._get(current, addresses, deadline) as response:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        # Joined to the URL as named, not to the IP the request went to.
                        current = httpx.URL(check_url_allowed(str(current.join(location)), allowed))
                        continue
                    if response.status_code != 200:
                        raise UrlFetchFailed(
                            f"fetching {current} answered HTTP {response.status_code}"
                        )
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise ImageTooLarge(
                            f"{current} is {declared} bytes, over the limit of {limit}"
                        )
                    chunks: list[bytes] = []
                    size = 0
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise ImageTooLarge(f"{current} is over the limit of {limit} bytes")
                        if time.monotonic() > deadline:
                            raise UrlFetchFailed(f"fetching {current} took too long")
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.HTTPError as exc:
                raise UrlFetchFailed(f"fetching {current} failed: {_describe(exc)}") from exc
        raise UrlFetchFailed(f"fetching {url}: more than {_MAX_REDIRECTS} redirects")

    @contextmanager
    def _get(
        self, url: httpx.URL, addresses: list[IPAddress], deadline: float
    ) -> Iterator[httpx.Response]:
        """The streamed answer to GET `url` from the first of `addresses` that takes the
        connection; never from an address the name might resolve to now."""
        response: httpx.Response | None = None
        for index, address in enumerate(addresses):
            try:
                response = self._http.send(pinned_request(self._http, url, address), stream=True)
                break
            except httpx.ConnectError:
                if index == len(addresses) - 1 or time.monotonic() > deadline:
                    raise
        assert response is not None
        try:
            yield response
        finally:
            response.close()


def check_url_allowed(url: str, allowed: list[str]) -> str:
    """`url` if it lies under one of the `allowed` prefixes, else `UrlNotAllowed`.

    Compared as parsed URLs, not strings: the scheme, host and port must be equal and the path
    must continue the prefix's path at a `/`, so `https://cdn.example` does not admit
    `https://cdn.example.evil` and `/images` does not admit `/images-private`.
    """
    if not allowed:
        raise UrlNotAllowed(
            "fetching images by URL is off on this embedding service; send the image bytes, or "
            "list the URL prefixes it may fetch from in LOOKALIKE_EMBED_ALLOWED_URLS"
        )
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise InvalidInput(f"{url!r} is not a valid URL") from None
    path = urllib.parse.unquote(target.path)
    if (
        target.scheme in ("http", "https")
        and target.host
        and not target.userinfo
        and ".." not in path.split("/")
    ):
        for prefix in allowed:
            if _under_prefix(target, path, prefix):
                return str(target)
    # The allow-list itself stays out of the message: it maps the operator's network.
    raise UrlNotAllowed(
        f"{url} is not under a URL prefix this embedding service may fetch from; send the image "
        "bytes instead, or have its operator add the prefix to LOOKALIKE_EMBED_ALLOWED_URLS"
    )


def _under_prefix(target: httpx.URL, path: str, prefix: str) -> bool:
    try:
        base = httpx.URL(prefix)
    except httpx.InvalidURL:
        return False
    if (base.scheme, base.host.lower(), _port(base)) != (
        target.scheme,
        target.host.lower(),
        _port(target),
    ):
        return False
    base_path = urllib.parse.unquote(base.path)
    if base_path.endswith("/"):
        return path.startswith(base_path)
    return path == base_path or path.startswith(base_path + "/")


def _port(url: httpx.URL) -> int | None:
    return url.port or {"http": 80, "https": 443}.get(url.scheme)


def fetch_addresses(url: httpx.URL) -> list[IPAddress]:
    """Where to connect for `url`, which `check_url_allowed` has admitted.

    An IP literal is used as it is: an allow-list entry names exactly that address, so the
    operator meant it, internal or not. A name is resolved here, once, and refused when any of
    its addresses is not public (`is_public_address`): a listed name must not lead into this
    machine or its network because of what DNS (or `localhost`) answers. The caller connects to
    these addresses, never to the name, so a second DNS answer cannot replace the checked one.
    """
    literal = ip_literal(url.host)
    if literal is not None:
        return [literal]
    host = url.raw_host.decode("ascii")
    try:
        addresses = resolve_host(host, _port(url) or 0)
    except OSError as exc:
        raise UrlFetchFailed(f"fetching {url} failed: cannot resolve {host} ({exc})") from None
    if not addresses:
        raise UrlFetchFailed(f"fetching {url} failed: {host} has no address")
    internal = [address for address in addresses if not is_public_address(address)]
    if internal:
        # The addresses go to the log only: the caller learns nothing about the network.
        log.warning("refused %s: %s resolves to %s", url, host, ", ".join(map(str, internal)))
        raise UrlNotAllowed(
            f"{url} is not fetched: {host} resolves to a loopback, private or otherwise "
            "internal address. To fetch from an internal server, its operator lists the "
            "server's IP address itself in LOOKALIKE_EMBED_ALLOWED_URLS "
            "(http://10.0.0.5/images/, not a host name)"
        )
    return addresses


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The addresses `host` resolves to, in the order the system prefers, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def pinned_request(client: httpx.Client, url: httpx.URL, address: IPAddress) -> httpx.Request:
    """A GET of `url` that connects to `address` instead of resolving the name again: the URL
    carries the IP; the Host header and, for HTTPS, the SNI name (so the certificate is checked
    against it) carry the name."""
    extensions: dict[str, Any] = {}
    if url.scheme == "https" and ip_literal(url.host) is None:
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
    return client.build_request(
        "GET",
        url.copy_with(host=str(address)),
        headers={"Host": url.netloc.decode("ascii")},
        extensions=extensions,
    )


def ip_literal(host: str) -> IPAddress | None:
    """`host` as an IP address when it is written as one (`10.0.0.5`, `::1`), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_public_address(address: IPAddress) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified addresses,
    IPv4 or IPv6, an IPv4 address written as IPv6 (`::ffff:127.0.0.1`) included."""
    address = _unmapped(address)
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def model_fields(embedder: Embedder) -> dict[str, Any]:
    return {"model_name": embedder.name, "model_version": embedder.model_id, "dim": embedder.dim}


# --- multipart images (JSON bodies and their limits: lookalike.serving.bodies) ---------------


async def _form_files(
    request: Request, fields: tuple[str, ...], max_files: int, limit: int
) -> tuple[list[bytes], str | None]:
    """Uploaded files under any of `fields`, in order, and the `model` form field."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit * max_files + _JSON_SLACK:
        raise ImageTooLarge(f"the request is {declared} bytes, over the limit")
    # One over the bound, so that too many files get our message rather than a bare 400.
    form = await request.form(max_files=max_files + 1, max_fields=8)
    uploads = [
        value for field in fields for value in form.getlist(field) if isinstance(value, UploadFile)
    ]
    if not uploads:
        names = " or ".join(repr(f) for f in fields)
        raise InvalidInput(f"attach the image as a multipart file field named {names}")
    data = await read_files(
        uploads,
        max_files=max_files,
        max_bytes=limit,
        too_large=ImageTooLarge,
        noun="image",
        setting="LOOKALIKE_EMBED_MAX_BATCH" if max_files > 1 else None,
    )
    model = form.get("model")
    return data, model if isinstance(model, str) and model else None


# --- the app ----------------------------------------------------------------------------------


def create_embed_app(settings: Settings | None = None) -> FastAPI:
    """The embedding service app; it loads its default model in the background at start-up.

    Raises `Misconfigured` when it would run without a key anywhere but on loopback
    (`check_service_access`).
    """
    settings = settings or Settings()
    access = ServiceAccess(settings)
    if access.open:
        log.warning(
            "the embedding service runs without a key (LOOKALIKE_EMBED_OPEN): it answers "
            "connections on loopback only"
        )
    metrics = EmbedMetrics()
    service = EmbedService(settings, metrics)
    max_batch = settings.embed_max_batch
    max_bytes = settings.max_image_bytes
    json_limit = max_bytes * 4 // 3 + _JSON_SLACK

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=service.warm_up, name="embed-warm-up", daemon=True).start()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="Lookalike embedding service",
        version=__version__,
        description="Image and text embeddings from the model alone.",
        lifespan=lifespan,
    )
    app.state.embed_service = service
    app.state.embed_access = access
    install_error_handlers(app)
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    # Everything that embeds or tells about models; only the probes below stay open.
    protected = APIRouter(dependencies=[Depends(require_key)])

    async def model_for(name: str | None) -> Embedder:
        return await run_in_threadpool(service.model, name)

    async def embed_images(embedder: Embedder, images: list[bytes], route: str) -> Vectors:
        if len(images) > max_batch:
            raise InvalidInput(
                f"at most {max_batch} images per request (LOOKALIKE_EMBED_MAX_BATCH)"
            )
        metrics.batch_size.labels(route).observe(len(images))
        return await run_in_threadpool(service.embed_image_bytes, embedder, images)

    async def one_image(request: Request) -> tuple[Embedder, bytes]:
        if is_multipart(request):
            files, model = await _form_files(request, ("file", "image"), 1, max_bytes)
            return await model_for(model), files[0]
        body = await json_body(request, ImageSource, limit=json_limit, too_large=ImageTooLarge)
        embedder = await model_for(body.model)
        return embedder, await run_in_threadpool(service.image_bytes, body)

    async def many_images(request: Request) -> tuple[Embedder, list[bytes]]:
        if is_multipart(request):
            fields = ("files", "file", "images", "image")
            files, model = await _form_files(request, fields, max_batch, max_bytes)
            return await model_for(model), files
        body = await json_body(
            request, ImageBatchRequest, limit=json_limit * max_batch, too_large=ImageTooLarge
        )
        if len(body.images) > max_batch:
            raise InvalidInput(
                f"at most {max_batch} images per request (LOOKALIKE_EMBED_MAX_BATCH)"
            )
        embedder = await model_for(body.model)

        def gather() -> list[bytes]:
            return [service.image_bytes(source) for source in body.images]

        return embedder, await run_in_threadpool(gather)

    @protected.post("/embed/image", tags=["embed"])
    async def embed_image(request: Request) -> EmbeddingOut:
        """One image (multipart `file`, or JSON `image_b64` / `url`) to its vector."""
        embedder, data = await one_image(request)
        vectors = await embed_images(embedder, [data], "/embed/image")
        return EmbeddingOut(**model_fields(embedder), embedding=vectors[0].tolist())

    @protected.post("/embed/image/batch", tags=["embed"])
    async def embed_image_batch(request: Request) -> EmbeddingsOut:
        """Several images (multipart `files`, or JSON `images`) to their vectors, in order."""
        embedder, images = await many_images(request)
        vectors = await embed_images(embedder, images, "/embed/image/batch")
        return EmbeddingsOut(
            **model_fields(embedder), count=len(vectors), embeddings=vectors.tolist()
        )

    @protected.post("/embed/text", tags=["embed"])
    async def embed_text(request: Request) -> EmbeddingOut | EmbeddingsOut:
        """`{"text": ...}` to `embedding`, `{"texts": [...]}` to `embeddings`. Image-only models
        answer 422 `text_search_unavailable`, saying what to install."""
        body = await json_body(
            request,
            TextRequest,
            limit=4 * 4096 * MAX_TEXT_BATCH + _JSON_SLACK,
            or_multipart=False,
        )
        embedder = await model_for(body.model)
        texts = [body.text] if body.text is not None else (body.texts or [])
        metrics.batch_size.labels("/embed/text").observe(len(texts))
        vectors = await run_in_threadpool(embedder.embed_texts, texts)
        if body.text is not None:
            return EmbeddingOut(**model_fields(embedder), embedding=vectors[0].tolist())
        return EmbeddingsOut(
            **model_fields(embedder), count=len(vectors), embeddings=vectors.tolist()
        )

    @protected.post("/embed/preprocessed", tags=["embed"], response_class=Response)
    async def embed_preprocessed(request: Request) -> Response:
        """Resized pixels (uint8) or model inputs (float32) to vectors, both as raw bytes; the
        API's fast path. The wire format is described in `lookalike.embedding.wire`."""
        dtype = request.headers.get(HEADER_DTYPE, "uint8")
        if dtype not in WIRE_DTYPES:
            raise InvalidInput(f"{HEADER_DTYPE} must be one of {', '.join(WIRE_DTYPES)}")
        shape = parse_shape(request.headers.get(HEADER_SHAPE), 4)
        embedder = await model_for(request.headers.get(HEADER_MODEL))
        expected = request.headers.get(HEADER_MODEL_VERSION)
        if expected and expected != embedder.model_id:
            raise ModelMismatch(
                f"asked for {expected}, this service runs {embedder.model_id}; vectors of two "
                "models must not mix"
            )
        size = embedder.input_size
        want = (shape[0], size, size, 3) if dtype == "uint8" else (shape[0], 3, size, size)
        if shape != want or not 1 <= shape[0] <= max_batch:
            raise InvalidInput(
                f"{embedder.name} takes {dtype} batches of shape (N, "
                f"{format_shape(want[1:]).replace(',', ', ')}) with 1 <= N <= {max_batch}, "
                f"got {shape}"
            )
        nbytes = int(np.prod(shape)) * np.dtype(WIRE_DTYPES[dtype]).itemsize
        body = await read_body(request, nbytes, ImageTooLarge)
        if len(body) != nbytes:
            raise InvalidInput(f"the body is {len(body)} bytes; shape {shape} needs {nbytes}")
        metrics.batch_size.labels("/embed/preprocessed").observe(shape[0])
        vectors = await run_in_threadpool(service.embed_pixels, embedder, dtype, shape, body)
        return Response(
            vectors.astype(VECTOR_DTYPE, copy=False).tobytes(),
            media_type=OCTET_STREAM,
            headers={
                HEADER_SHAPE: format_shape(vectors.shape),
                HEADER_DIM: str(embedder.dim),
                HEADER_MODEL_NAME: embedder.name,
                HEADER_MODEL_VERSION: embedder.model_id,
            },
        )

    @protected.get("/embed/info", tags=["embed"])
    async def embed_info(model: str | None = None) -> ModelInfoOut:
        """The model's name, id, size and preprocessing, for clients that preprocess themselves."""
        return service.info(await model_for(model))

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz(has_key: HasKey) -> JSONResponse:
        """Ready once the default model is loaded; the model and any load error are told to
        callers with the key only."""
        if service.ready:
            details = {"model": service.default().model_id} if has_key else {}
            return JSONResponse({"status": "ready", **details})
        status = "not ready" if service.load_error else "loading"
        error = service.load_error if has_key else None
        return JSONResponse({"status": status, "error": error}, status_code=503)

    # Behind the key: the metrics name every model loaded and the traffic per route, and
    # Prometheus can send the key (`authorization: {credentials: KEY}` in the scrape config).
    @protected.get("/metrics", tags=["health"], response_class=Response)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # --- the CLIP feature service's contract ---

    @app.get("/health", tags=["compatibility"])
    def health(has_key: HasKey) -> JSONResponse:
        """`{"status": "healthy", "model_loaded": true, ...}`; 503 until the model is loaded. The
        model's fields and any load error are told to callers with the key only."""
        if not service.ready:
            status = "unhealthy" if service.load_error else "loading"
            error = service.load_error if has_key else None
            return JSONResponse(
                {"status": status, "model_loaded": False, "error": error}, status_code=503
            )
        details = {**model_fields(service.default()), "device": "cpu"} if has_key else {}
        return JSONResponse({"status": "healthy", "model_loaded": True, **details})

    @protected.post("/extract-features", tags=["compatibility"])
    async def extract_features(request: Request) -> FeaturesOut:
        """One image (multipart `file`/`image`, or JSON `image` base64 / `url`) to `features`."""
        embedder, data = await one_image(request)
        vectors = await embed_images(embedder, [data], "/extract-features")
        return FeaturesOut(**model_fields(embedder), features=vectors[0].tolist())

    @protected.post("/extract-features-batch", tags=["compatibility"])
    async def extract_features_batch(request: Request) -> FeaturesBatchOut:
        """Several images (multipart `files`/`images`, or JSON `images`) to `features`."""
        embedder, images = await many_images(request)
        vectors = await embed_images(embedder, images, "/extract-features-batch")
        return FeaturesBatchOut(
            **model_fields(embedder), count=len(vectors), features=vectors.tolist()
        )

    app.include_router(protected)
    return app
