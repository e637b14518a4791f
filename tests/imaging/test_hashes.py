"""sha256 and pHash: stable under the edits near-duplicates show, far apart for other photos."""

from __future__ import annotations

import io
import itertools
import statistics

import pytest
from PIL import Image

from lookalike.demo.samples import sample_photos
from lookalike.imaging import decode_image, phash_hamming, phash_hex, phash_int, sha256_hex

# Distinct photos only: motorcycle_left/right are a stereo pair (near-duplicates by design).
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "grace_hopper", "moon")


@pytest.fixture(scope="module")
def images() -> dict[str, Image.Image]:
    return {
        name: Image.open(io.BytesIO(data)).convert("RGB")
        for name, data in sample_photos(PHOTOS).items()
    }


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_sha256_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_phash_is_16_hex_chars(images: dict[str, Image.Image]) -> None:
    value = phash_hex(images["coffee"])
    assert len(value) == 16
    assert int(value, 16) == phash_int(value)
    assert phash_hex(images["coffee"]) == value  # deterministic


def test_phash_int_and_hamming() -> None:
    assert phash_int("ffffffffffffffff") == 2**64 - 1
    assert phash_int("00000000000000FF") == 255
    assert phash_hamming("0000000000000000", "ffffffffffffffff") == 64
    assert phash_hamming("0f00000000000000", "0000000000000000") == 4
    assert phash_hamming("123456789abcdef0", "123456789abcdef0") == 0


@pytest.mark.parametrize("bad", ["", "abc", "g" * 16, "0" * 17, "0x" + "0" * 14])
def test_phash_int_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError, match="16 hex"):
        phash_int(bad)


@pytest.mark.parametrize("name", PHOTOS)
def test_phash_is_stable_under_resize_and_recompression(
    images: dict[str, Image.Image], name: str
) -> None:
    original = images[name]
    reference = phash_hex(original)
    half = original.resize((original.width // 2, original.height // 2), Image.Resampling.LANCZOS)
    edits = {
        "half size": half,
        "jpeg q50": _jpeg(original, 50),
        "half size, jpeg q30": _jpeg(half, 30),
        "double size": original.resize((original.width * 2, original.height * 2)),
    }
    for label, edited in edits.items():
        assert phash_hamming(reference, phash_hex(edited)) <= 6, label


def test_phash_is_far_for_different_photos(images: dict[str, Image.Image]) -> None:
    hashes = {name: phash_hex(image) for name, image in images.items()}
    distances = [phash_hamming(hashes[a], hashes[b]) for a, b in itertools.combinations(PHOTOS, 2)]
    assert min(distances) >= 16
    assert statistics.median(distances) >= 24


def test_phash_of_a_reduced_decode_matches_the_full_one(images: dict[str, Image.Image]) -> None:
    big = images["astronaut"].resize((2048, 2048), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    full = decode_image(data, max_bytes=1 << 30, max_pixels=1 << 30)
    reduced = decode_image(data, max_bytes=1 << 30, max_pixels=1 << 30, reduce_for=256)
    assert phash_hamming(phash_hex(full.image), phash_hex(reduced.image)) <= 4
