"""Image builders for the imaging tests: everything is generated, nothing binary is committed."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from PIL import Image


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def gradient(size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A colourful, non-uniform RGB test picture (so JPEG truncation really loses data)."""
    width, height = size
    red = Image.linear_gradient("L").resize(size)
    green = Image.radial_gradient("L").resize(size)
    blue = red.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = Image.merge("RGB", (red, green, blue))
    assert image.size == (width, height)
    return image


def png_bomb(side: int = 20_000) -> bytes:
    """A valid PNG of side x side black 1-bit pixels: ~50 KB on disk, 400 Mpx once decoded."""
    return streamed_png(side, side, color_type=0, bit_depth=1, flat=True)


# PNG colour types: samples per pixel.
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def streamed_png(
    width: int,
    height: int,
    *,
    color_type: int = 0,
    bit_depth: int = 8,
    palette: int = 0,
    flat: bool = False,
) -> bytes:
    """A valid PNG of `width` x `height` pixels, every row the same pattern (zeros if `flat`),
    built without ever holding the pixels: rows are streamed through zlib. `palette` > 0 adds
    a PLTE (and a tRNS making entry 0 transparent) for colour type 3."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    row_bytes = (width * _CHANNELS[color_type] * bit_depth + 7) // 8
    pattern = bytes(
        0 if flat else (i * 37 + i // 7) % (palette or 256) for i in range(min(row_bytes, 4096))
    )
    row = b"\x00" + (pattern * (row_bytes // len(pattern) + 1))[:row_bytes]
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    extra = b""
    if palette:
        extra = chunk(b"PLTE", bytes(range(256))[: palette * 3].ljust(palette * 3, b"\x80"))
        extra += chunk(b"tRNS", b"\x00")
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + extra
        + chunk(b"IDAT", body)
        + chunk(b"IEND", b"")
    )
