"""Bad inputs every entry point must reject with a clear error, storing nothing."""

from __future__ import annotations

import io

from PIL import Image

from imaging import builders


def text_named_jpg() -> bytes:
    return b"This is a shopping list, not a photo.\n" * 20


def truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.radial_gradient("L").resize((512, 512)).convert("RGB").save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) // 2]


def png_bomb() -> bytes:
    """A 20000x20000 PNG: tens of KB on disk, 400 Mpx once decoded."""
    return builders.png_bomb(20_000)
