"""A local stand-in for the hosted embedding APIs (the real ones cannot be reached from here).

A real HTTP server on a free 127.0.0.1 port, in a thread, that speaks:

- Doubao Ark's `POST /embeddings/multimodal`: `{"model", "input": [parts], "encoding_format"?,
  "dimensions"?}` with parts `{"type": "text", "text"}` and `{"type": "image_url",
  "image_url": {"url": "data:image/<fmt>;base64,..."}}`, answered `{"id", "object": "list",
  "created", "model", "data": {"object": "embedding", "embedding": [...]}, "usage"}` (one
  embedding for the whole input, as Ark answers), errors as `{"error": {"code", "message",
  "param", "type"}}`;
- an OpenAI-compatible `POST /embeddings`: `{"model", "input": [str]}` answered
  `{"data": [{"object", "embedding", "index"}], ...}` (in reverse order, which `index` undoes).

It checks every request strictly (bearer key, model, the shape of each part, data URLs that
decode to real images within Ark's size limits) and answers 400 to anything else. Embeddings are
derived from the content: an image's from its pixels (a 16x16 colour thumbnail through a fixed
random projection, so the same photo re-encoded lands close), a text's from its hash. `mode`
switches it to fail: `500`, `429` (with `retry_after`), `timeout` (takes the request and does not
answer for `delay` s), `401`, `403`, `malformed` (200 with a body that is not JSON), `wrong_dim`;
`fail_next(n, mode)` fails only the next n requests.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

DOUBAO_MODEL = "doubao-embedding-vision-250615"
OPENAI_MODEL = "test-embed-small"
KEY = "test-ark-key"
DEFAULT_DIM = 2048
_THUMB = 16


@dataclass
class Seen:
    """One request as the stand-in took it."""

    at: float
    path: str
    status: int
    images: list[tuple[int, int]] = field(default_factory=list)  # decoded sizes
    texts: list[str] = field(default_factory=list)
    dimensions: int | None = None


class ProviderStandIn:
    def __init__(self, *, dim: int = DEFAULT_DIM, openai_dim: int = 384) -> None:
        self.dim = dim
        self.openai_dim = openai_dim
        self.mode = "ok"
        self.retry_after = "1"
        self.delay = 2.0
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self._release = threading.Event()
        rng = np.random.default_rng(1234)
        self._projection = {
            d: rng.standard_normal((_THUMB * _THUMB * 3, d)).astype(np.float32)
            for d in (1024, 2048, 2047, openai_dim)
        }
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._release.set()  # a request held in `timeout` mode answers now
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, count: int, mode: str) -> None:
        with self._lock:
            self._failures = [mode] * count

    def requests(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path is None or s.path == path]

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
        self.mode = "ok"

    # --- embeddings derived from content

    def image_vector(self, image: Image.Image, dim: int) -> np.ndarray:
        thumb = image.convert("RGB").resize((_THUMB, _THUMB), Image.Resampling.BOX)
        pixels = np.asarray(thumb, dtype=np.float32).reshape(-1) / 255.0
        vector = (pixels - pixels.mean()) @ self._projection[dim]
        return np.asarray(vector / np.linalg.norm(vector), dtype=np.float32)

    @staticmethod
    def text_vector(text: str, dim: int) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
        vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
        return vector / np.linalg.norm(vector)

    def _next_mode(self) -> str:
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
        return self.mode


class _BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _handler(standin: ProviderStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            seen = Seen(at=time.monotonic(), path=self.path, status=200)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            mode = standin._next_mode()
            if mode == "timeout":
                # Taken, never answered in time: the client's read timeout is what ends it.
                seen.status = 0
                self._record(seen)
                standin._release.wait(standin.delay)
                self.close_connection = True
                return
            try:
                if mode == "401" or self.headers.get("Authorization") != f"Bearer {KEY}":
                    raise _BadRequest(
                        401, "AuthenticationError", "the API key in the request is invalid"
                    )
                if mode == "403":
                    raise _BadRequest(403, "AccessDenied", "the key may not use this model")
                if mode == "500":
                    raise _BadRequest(500, "InternalServiceError", "the service had a problem")
                if mode == "429":
                    raise _BadRequest(429, "RateLimitExceeded.EndpointRPMExceeded", "slow down")
                body = json.loads(raw)
                if self.path == "/embeddings/multimodal":
                    answer = self._doubao(body, seen, wrong_dim=mode == "wrong_dim")
                elif self.path == "/embeddings":
                    answer = self._openai(body, seen, wrong_dim=mode == "wrong_dim")
                else:
                    raise _BadRequest(404, "NotFound", f"no route {self.path}")
            except _BadRequest as exc:
                seen.status = exc.status
                self._record(seen)
                error = {"code": exc.code, "message": exc.message, "param": "", "type": "Error"}
                headers = {"Retry-After": standin.retry_after} if exc.status == 429 else {}
                self._send(exc.status, json.dumps({"error": error}).encode(), headers)
                return
            except (ValueError, KeyError, TypeError) as exc:
                seen.status = 400
                self._record(seen)
                error = {"code": "InvalidParameter", "message": repr(exc), "type": "BadRequest"}
                self._send(400, json.dumps({"error": error}).encode())
                return
            self._record(seen)
            if mode == "malformed":
                self._send(200, b'{"data": {"embedding": [0.1, 0.2')
                return
            self._send(200, json.dumps(answer).encode())

        def _record(self, seen: Seen) -> None:
            with standin._lock:
                standin.seen.append(seen)

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)  # unless the client gave up waiting

        def _doubao(self, body: dict[str, Any], seen: Seen, *, wrong_dim: bool) -> Any:
            allowed = {"model", "input", "encoding_format", "dimensions", "instructions"}
            if set(body) - allowed:
                raise _BadRequest(400, "InvalidParameter", f"unknown fields {set(body) - allowed}")
            if body.get("model") != DOUBAO_MODEL:
                raise _BadRequest(
                    404, "InvalidEndpointOrModel.NotFound", f"no model {body.get('model')!r}"
                )
            if body.get("encoding_format", "float") != "float":
                raise _BadRequest(400, "InvalidParameter", "encoding_format must be float")
            dim = body.get("dimensions", standin.dim)
            if dim not in (1024, 2048):
                raise _BadRequest(400, "InvalidParameter", f"dimensions {dim!r} not supported")
            seen.dimensions = body.get("dimensions")
            parts = body["input"]
            if not isinstance(parts, list) or not parts:
                raise _BadRequest(400, "InvalidParameter", "input must be a non-empty list")
            vector = np.zeros(dim, dtype=np.float32)
            for part in parts:
                kind = part["type"]
                if kind == "text":
                    text = part["text"]
                    if not isinstance(text, str) or not text or set(part) != {"type", "text"}:
                        raise _BadRequest(400, "InvalidParameter", "a text part needs a text")
                    seen.texts.append(text)
                    vector += standin.text_vector(text, dim)
                elif kind == "image_url":
                    if set(part) != {"type", "image_url"} or set(part["image_url"]) != {"url"}:
                        raise _BadRequest(400, "InvalidParameter", "image_url: {url} only")
                    image = _decode_data_url(part["image_url"]["url"])
                    seen.images.append(image.size)
                    vector += standin.image_vector(image, dim)
                else:
                    raise _BadRequest(400, "InvalidParameter", f"unknown part type {kind!r}")
            if wrong_dim:
                vector = vector[:-1]
            return {
                "id": "021" + hashlib.sha256(json.dumps(body).encode()).hexdigest()[:20],
                "object": "list",
                "created": int(time.time()),
                "model": DOUBAO_MODEL,
                "data": {"object": "embedding", "embedding": (vector * 0.7).tolist()},
                "usage": {"prompt_tokens": 10, "total_tokens": 10},
            }

        def _openai(self, body: dict[str, Any], seen: Seen, *, wrong_dim: bool) -> Any:
            if set(body) - {"model", "input", "dimensions", "encoding_format"}:
                raise _BadRequest(400, "invalid_request_error", "unknown fields")
            if body.get("model") != OPENAI_MODEL:
                raise _BadRequest(404, "model_not_found", f"no model {body.get('model')!r}")
            inputs = body["input"]
            if not isinstance(inputs, list) or not all(isinstance(i, str) and i for i in inputs):
                raise _BadRequest(400, "invalid_request_error", "input: a list of strings")
            dim = body.get("dimensions", standin.openai_dim)
            data = []
            for index, item in enumerate(inputs):
                if item.startswith("data:"):
                    image = _decode_data_url(item)
                    seen.images.append(image.size)
                    vector = standin.image_vector(image, dim)
                else:
                    seen.texts.append(item)
                    vector = standin.text_vector(item, dim)
                if wrong_dim:
                    vector = vector[:-1]
                data.append({"object": "embedding", "embedding": vector.tolist(), "index": index})
            return {"object": "list", "data": data[::-1], "model": OPENAI_MODEL}

    return Handler


def _decode_data_url(url: str) -> Image.Image:
    prefix, sep, payload = url.partition(";base64,")
    if not sep or prefix not in ("data:image/jpeg", "data:image/png", "data:image/webp"):
        raise _BadRequest(400, "InvalidImageURL", f"not a base64 image data URL: {url[:40]!r}")
    try:
        data = base64.b64decode(payload, validate=True)
        image = Image.open(io.BytesIO(data))
        image.load()
    except (binascii.Error, OSError) as exc:
        raise _BadRequest(400, "InvalidImageURL", f"the image does not decode: {exc}") from exc
    if image.format != prefix.split("/")[1].upper():
        raise _BadRequest(400, "InvalidImageURL", f"{prefix} but the bytes are {image.format}")
    width, height = image.size
    if not (10 <= width <= 6000 and 10 <= height <= 6000):
        raise _BadRequest(400, "InvalidImageURL", f"image size {image.size} out of [10, 6000]")
    return image


@contextmanager
def provider_standin(**kwargs: Any) -> Iterator[ProviderStandIn]:
    standin = ProviderStandIn(**kwargs)
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()
