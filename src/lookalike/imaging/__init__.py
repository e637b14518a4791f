"""Decoding and validating uploaded images, their hashes and their thumbnails."""

from lookalike.imaging.decode import (
    DecodedImage,
    decode_image,
    decode_stored,
    sniff_mime,
    supported_mime_types,
)
from lookalike.imaging.hashes import phash_hamming, phash_hex, phash_int, sha256_hex
from lookalike.imaging.thumbnails import THUMBNAIL_MIME, make_thumbnail

__all__ = [
    "THUMBNAIL_MIME",
    "DecodedImage",
    "decode_image",
    "decode_stored",
    "make_thumbnail",
    "phash_hamming",
    "phash_hex",
    "phash_int",
    "sha256_hex",
    "sniff_mime",
    "supported_mime_types",
]
