"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from PIL import Image

from lookalike.auth.tokens import create_token
from lookalike.core.config import Settings


def make_settings(data_dir: Path, models_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "model_cache_dir": models_dir,
        "model": "efficientnet-lite0",
        "model_download": False,
        "auth": "off",
        "embed_batch_size": 8,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def offline_cli_env(monkeypatch: Any, data_dir: Path, models_dir: Path, **extra: str) -> None:
    """The environment a command-line test runs in: a data directory, the offline model from
    the test model cache, no downloads; `extra` sets or overrides LOOKALIKE_* variables."""
    values = {
        "DATA_DIR": str(data_dir),
        "MODEL_CACHE_DIR": str(models_dir),
        "MODEL": "efficientnet-lite0",
        "MODEL_DOWNLOAD": "false",
        **extra,
    }
    for key, value in values.items():
        monkeypatch.setenv(f"LOOKALIKE_{key}", value)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def noise_png(seed: int = 0) -> bytes:
    """A 320x240 PNG of uniform random noise: unlike any photo."""
    rng = np.random.default_rng(seed)
    return png(Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)))


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def open_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll `predicate` until it holds or `timeout` passes (no fixed sleeps in tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def bearer(settings: Settings, user: str = "alice", tenant: str = "acme") -> dict[str, str]:
    """The Authorization header of a fresh token for `user` in `tenant`."""
    return {"Authorization": f"Bearer {create_token(settings, user=user, tenant=tenant)}"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate a server the tests started, and kill it if it does not go in time."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# Property-based tests: no example database (CI stays reproducible enough), no deadlines
# (decoding and HTTP round trips vary on a shared machine).
FUZZ = settings(
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# A 4xx explains what is wrong in a sentence or a list of them, not a dump of the input's tree.
MAX_MESSAGE_CHARS = 64 * 1024


def check_answer(status: int, content: bytes) -> None:
    """Never a 5xx; a 4xx is `{"error": {"code", "message"}}` with a message of sane size."""
    text = content[:2000].decode(errors="replace")
    assert status < 500, f"{status}: {text}"
    if status < 400:
        return
    payload = json.loads(content)
    assert isinstance(payload, dict) and set(payload) == {"error"}, f"{status}: {text}"
    error = payload["error"]
    assert isinstance(error, dict), f"{status}: {text}"
    assert isinstance(error.get("code"), str) and error["code"], f"{status}: {text}"
    assert isinstance(error.get("message"), str) and error["message"], f"{status}: {text}"
    assert len(error["message"]) <= MAX_MESSAGE_CHARS, (
        f"{status} {error['code']}: a {len(error['message']):,}-character message: "
        f"{error['message'][:300]}..."
    )


def settle(rt: Any) -> None:
    """Wait until every image added so far is embedded and enriched (a `Lookalike`, or a test
    client's app that serves one)."""
    runtime = getattr(getattr(getattr(rt, "app", None), "state", None), "runtime", rt)
    runtime.ingest.wait_idle()
    if runtime.enrichment.running:
        assert runtime.enrichment.wait_idle(timeout=120), "enrichment did not finish"
    else:  # a runtime opened with start=False: run the stages here
        runtime.enrichment.drain()
