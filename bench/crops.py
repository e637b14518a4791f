"""Search cost of crop embeddings: `search_similar` with and without `use_crops`.

    python bench/crops.py [--n 20000] [--crops 6] [--queries 200] [--build]

Loads N synthetic points into a collection created with `use_crops` (the offline model's
1280-d vectors, int8 quantization as configured by default): a global vector per point, drawn
around one of 200 cluster centres, and `--crops` crop vectors near it. No model runs: the
points go straight into the vector engine. Then it times searches by image id (the real
service path: retrieve the query vector, search, merge, catalog lookup) with `use_crops` off
and on, and prints p50/p95 latency of each. With `--build` the HNSW index is built first (and
its build time printed); without, every search is an exact scan, as below the indexing threshold
(20k points by default). `--crops 0` makes a collection without crops, for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from ulid import ULID

from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.embedding.crops import crops_vector_name
from lookalike.records.service import VectorOptions, create_collection
from lookalike.search import search_similar
from lookalike.vectors.base import Point


def _unit(rows: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--crops", type=int, default=6, help="crop vectors per point")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--build", action="store_true", help="build the HNSW index first")
    parser.add_argument("--models", type=Path, default=Path(".cache/models"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            model_cache_dir=args.models,
            model="efficientnet-lite0",
            model_download=False,
            auth="off",
            _env_file=None,  # type: ignore[call-arg]
        )
        with Lookalike(settings) as rt:
            with_crops = args.crops > 0
            coll = create_collection(
                rt, "bench", "bench", options=VectorOptions(use_crops=with_crops)
            )
            crops_name = crops_vector_name(coll.vector_name)
            centres = _unit(rng.standard_normal((200, coll.dim)))
            ids: list[str] = []
            started = time.perf_counter()
            for start in range(0, args.n, 256):
                count = min(256, args.n - start)
                base = centres[rng.integers(0, len(centres), count)]
                glob = _unit(
                    base + 0.6 * rng.standard_normal((count, coll.dim)) / np.sqrt(coll.dim)
                )
                crops = _unit(
                    glob[:, None, :]
                    + rng.standard_normal((count, max(1, args.crops), coll.dim)) / np.sqrt(coll.dim)
                )
                batch = [str(ULID()) for _ in range(count)]
                ids.extend(batch)
                rt.vectors.upsert(
                    coll.id,
                    [
                        Point(
                            id=pid,
                            vectors={coll.vector_name: g, crops_name: c}
                            if with_crops
                            else {coll.vector_name: g},
                            payload={"collection_id": coll.id, "record_id": pid},
                        )
                        for pid, g, c in zip(batch, glob, crops, strict=True)
                    ],
                )
            print(f"points           {args.n} x (1 + {args.crops}) x {coll.dim}-d")
            print(f"insert           {time.perf_counter() - started:.1f} s")
            if args.build:
                started = time.perf_counter()
                rt.vectors.build_index(coll.id, wait=True)
                print(f"HNSW build       {time.perf_counter() - started:.1f} s")
            queries = [ids[int(i)] for i in rng.integers(0, len(ids), args.queries)]
            for use_crops in (False, True) if with_crops else (False,):
                for q in queries[:5]:  # warm-up
                    search_similar(
                        rt, "bench", coll, image_id=q, limit=args.limit, use_crops=use_crops
                    )
                times = []
                for q in queries:
                    t = time.perf_counter()
                    search_similar(
                        rt, "bench", coll, image_id=q, limit=args.limit, use_crops=use_crops
                    )
                    times.append((time.perf_counter() - t) * 1000)
                times.sort()
                p95 = times[int(0.95 * (len(times) - 1))]
                print(
                    f"use_crops={use_crops!s:5s}  p50 {statistics.median(times):6.1f} ms  "
                    f"p95 {p95:6.1f} ms  ({len(times)} queries, k={args.limit})"
                )


if __name__ == "__main__":
    main()
