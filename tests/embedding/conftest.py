"""Fixtures for the embedding tests: models built here, a local stand-in for the model hub.

Nothing here reaches the internet: downloads go to an HTTP server on 127.0.0.1 that serves a tiny
CLIP model in the hub's layout.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.core.config import Settings
from lookalike.embedding import ModelDir, ensure_offline_model
from lookalike.embedding.testing import build_tiny_clip, write_hub_layout

HUB_REPO = "test-org/tiny-clip"


def settings_for(models_dir: Path, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "model_cache_dir": models_dir,
        "model": "efficientnet-lite0",
        "model_download": False,
        "embed_batch_size": 4,
        "embed_threads": 1,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def offline_model(models_dir: Path) -> ModelDir:
    return ensure_offline_model(models_dir)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny") / "tiny-clip", dim=64)


@pytest.fixture
def empty_models(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


def sample(name: str) -> Image.Image:
    """A photo from scikit-image's bundled data, as RGB."""
    data = pytest.importorskip("skimage.data")
    array = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    image = Image.fromarray(np.asarray(array))
    return image.convert("RGB")


# --- a local model hub ------------------------------------------------------------------------


@dataclass
class HubServer:
    """Serves `root/<repo>/<path>` at `/<repo>/resolve/main/<path>`, like the hub, with ranges.

    `corrupt` paths are served with one byte flipped; `announce` sends each file's sha256 the way
    the hub does for large files; `cut_after` drops the connection after that many bytes, once.
    """

    root: Path
    url: str = ""
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    corrupt: set[str] = field(default_factory=set)
    announce: bool = True
    cut_after: dict[str, int] = field(default_factory=dict)

    def file_requests(self) -> list[str]:
        return [path for path, _ in self.requests]


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            prefix = f"/{HUB_REPO}/resolve/main/"
            range_header = self.headers.get("Range")
            hub.requests.append((self.path, range_header))
            if not self.path.startswith(prefix):
                self.send_error(404)
                return
            relative = self.path[len(prefix) :]
            path = hub.root / relative
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            if relative in hub.corrupt:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            start = 0
            if range_header and range_header.startswith("bytes="):
                start = int(range_header[6:].split("-")[0])
            if start >= len(data) and start > 0:
                self.send_response(416)
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if hub.announce:
                self.send_header("X-Linked-Etag", f'"{sha}"')
            self.end_headers()
            cut = hub.cut_after.pop(relative, None)
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def hub(tmp_path: Path, tiny_clip_dir: Path) -> Iterator[HubServer]:
    root = tmp_path / "hub"
    write_hub_layout(tiny_clip_dir, root / HUB_REPO)
    server = HubServer(root=root / HUB_REPO)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
