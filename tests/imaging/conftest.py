"""Fixtures for the imaging tests."""

from __future__ import annotations

import pytest

from .builders import encode, gradient, png_bomb


@pytest.fixture(scope="session")
def bomb_png() -> bytes:
    return png_bomb()


@pytest.fixture(scope="session")
def jpeg_bytes() -> bytes:
    return encode(gradient(), "JPEG", quality=90)


@pytest.fixture(scope="session")
def png_bytes() -> bytes:
    return encode(gradient(), "PNG")
