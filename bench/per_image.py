"""Per-image cost of the optional ingest steps: the NSFW score and crop embeddings.

    python bench/per_image.py [--n 100] [--size 640x480] [--threads 1]

On the same generated JPEGs as bench/ingest.py, decoded as the pipeline decodes them, it times
(wall clock, and the CPU time of the process, all its threads: a busy shared machine disturbs it
less than the wall clock):

- the NSFW score (`NsfwDetector.score`: preprocessing + the detector, `--threads` ORT threads);
- the global embedding of one image (preprocess + model, batch of 16);
- crops: choosing the boxes, preprocessing them, and embedding them (batch of 16 inputs).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ingest import generate_images
from lookalike.core.config import Settings
from lookalike.embedding import load_embedder
from lookalike.embedding.crops import crop_boxes, crop_tensors
from lookalike.imaging import decode_image
from lookalike.quality.nsfw import NsfwDetector


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def _report(label: str, samples: list[tuple[float, float]], per: float = 1) -> None:
    wall = statistics.median(s[0] for s in samples) / per
    cpu = statistics.median(s[1] for s in samples) / per
    print(f"{label:34s} wall {wall:7.1f} ms   CPU {cpu:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--threads", type=int, default=1, help="NSFW detector ORT threads")
    parser.add_argument("--models", type=Path, default=Path(".cache/models"))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            model_cache_dir=args.models,
            model_download=False,
            _env_file=None,  # type: ignore[call-arg]
        )
        embedder = load_embedder(settings, "efficientnet-lite0")
    jpegs = generate_images(args.n, (width, height))

    def decoded(size: int) -> list[Image.Image]:
        return [
            decode_image(d, max_bytes=1 << 30, max_pixels=1 << 30, reduce_for=size).image
            for d in jpegs
        ]

    images = decoded(embedder.input_size)
    # A collection with crops decodes at twice the model size (IngestPipeline._working_size).
    large = decoded(embedder.input_size * 2)
    print(
        f"{args.n} JPEGs of {width}x{height}, decoded to {images[0].size} "
        f"({large[0].size} with crops) as at ingest"
    )

    detector = NsfwDetector(threads=args.threads)
    detector.score(images[0])  # load and warm up
    _report(
        f"NSFW score ({args.threads} thread)",
        [_timed(lambda i=i: detector.score(i)) for i in images],
    )

    embedder.embed_images(images[:16])  # warm up
    tensors = np.stack([embedder.preprocess(i) for i in images])
    _report(
        "global embedding (batch 16)",
        [
            _timed(lambda s=s: embedder.embed_preprocessed(tensors[s : s + 16]))
            for s in range(0, len(tensors) - 15, 16)
        ],
        per=16,
    )
    _report("crop boxes (grid + saliency)", [_timed(lambda i=i: crop_boxes(i)) for i in large])
    crops = []
    samples = []
    for image in large:
        samples.append(_timed(lambda i=image: crops.append(crop_tensors(embedder, i))))
    _report("crop boxes + preprocessing", samples)
    stacked = np.concatenate(crops)
    per_image = len(stacked) / len(images)
    embed = [
        _timed(lambda s=s: embedder.embed_preprocessed(stacked[s : s + 16]))
        for s in range(0, len(stacked) - 15, 16)
    ]
    _report(f"crop embeddings ({per_image:.1f} per image)", embed, per=16 / per_image)


if __name__ == "__main__":
    main()
