"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
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
