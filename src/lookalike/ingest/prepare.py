"""The CPU work of the searchable path for one image: decode, pHash, the model input.

One function, `prepare_pixels`, run either in the ingest thread itself or, in bulk mode with
cores to spare, in a pool of worker processes (`PreparePool`): the interpreter lock keeps the
threads' Python work on one core, processes spread it over the others. Both run the very same
code, so the two modes give the same bytes to the model.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL.Image import Image as PILImage

from lookalike.core.timing import timed
from lookalike.embedding.model_dir import PreprocessConfig
from lookalike.embedding.preprocess import ImagePreprocessor
from lookalike.imaging import decode_image, phash_hex


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int
    max_pixels: int
    max_aspect_ratio: float


@dataclass(frozen=True)
class Prepared:
    """What the searchable path needs of the pixels. `image` only when asked to keep it."""

    mime: str
    width: int
    height: int
    phash: str
    tensor: NDArray[np.float32]
    image: PILImage | None = None


_preprocessors: dict[PreprocessConfig, ImagePreprocessor] = {}


def prepare_pixels(
    data: bytes,
    limits: DecodeLimits,
    reduce_for: int,
    preprocess: PreprocessConfig,
    model_name: str,
    *,
    keep_image: bool = False,
) -> Prepared:
    """Decode (validating the bytes; raises the decoder's `LookalikeError`s), pHash, model input.

    Each stage is timed (`ingest`/`decode`, `phash`, `preprocess`) where a stage sink listens:
    in the ingest process, not in a worker process."""
    with timed("ingest", "decode"):
        decoded = decode_image(
            data,
            max_bytes=limits.max_bytes,
            max_pixels=limits.max_pixels,
            max_aspect_ratio=limits.max_aspect_ratio,
            reduce_for=reduce_for,
        )
    with timed("ingest", "phash"):
        phash = phash_hex(decoded.image)
    preprocessor = _preprocessors.get(preprocess)
    if preprocessor is None:
        preprocessor = _preprocessors.setdefault(preprocess, ImagePreprocessor(preprocess))
    with timed("ingest", "preprocess"):
        tensor = preprocessor.prepare(decoded.image, model_name)
    return Prepared(
        mime=decoded.mime,
        width=decoded.width,
        height=decoded.height,
        phash=phash,
        tensor=tensor,
        image=decoded.image if keep_image else None,
    )


def processes_for(setting: int, cpu_count: int | None = None) -> int:
    """Worker processes for a `LOOKALIKE_INGEST_PROCESSES` value: -1 = the cores to spare beside
    the model (two are left to it and to this process's threads), 0 = none."""
    if setting >= 0:
        return setting
    cores = cpu_count or os.cpu_count() or 1
    return max(0, cores - 2) if cores > 4 else 0


class PreparePool:
    """`prepare_pixels` in worker processes, started on first use. Thread-safe."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        # Spawned, not forked: the parent runs threads (and ONNX Runtime's), which a fork copies
        # in whatever state they are in.
        self._pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))

    def prepare(
        self,
        data: bytes,
        limits: DecodeLimits,
        reduce_for: int,
        preprocess: PreprocessConfig,
        model_name: str,
    ) -> Prepared:
        return self._pool.submit(
            prepare_pixels, data, limits, reduce_for, preprocess, model_name
        ).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
