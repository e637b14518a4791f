"""Cost of keeping anomaly scores current: the after-ingest update per batch, and a full pass.

Builds a collection of N clustered unit vectors (catalog rows and Qdrant Edge points, no model)
in a temporary data directory, then feeds batches of new points to
`AnomalyScorer.score_new` exactly as the `anomaly` enrichment stage does, and reports:

- the first batch: it also reads the collection's vectors once for the ``ood`` statistics,
  or beyond 20k points queues a recompute for that (run here before the next batch);
- p50/p95 of the following batches, and of their searches alone (`score_new_points`);
- with ``--full``, one `recompute` of the whole collection (one search per image).

    python bench/anomalies.py                          # 20k x 1280-d, HNSW index, batches of 16
    python bench/anomalies.py --n 5000 --no-index      # below the indexing threshold: exact scans
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import insert

from lookalike.anomalies.scores import score_new_points
from lookalike.catalog import Collection, Image, Record, new_id
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.ingest.payload import PAYLOAD_INDEXES
from lookalike.vectors.base import IndexSettings, Point, VectorSpec

VECTOR = "bench"


def clustered(n: int, dim: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """`n` unit vectors in 50 gaussian clusters around a shared direction, like embeddings."""
    common = rng.normal(size=dim) * 2.0
    centres = common + rng.normal(size=(50, dim))
    points = centres[rng.integers(0, 50, n)] + 0.3 * rng.normal(size=(n, dim))
    unit: NDArray[np.float32] = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(
        np.float32
    )
    return unit


def add_points(rt: Lookalike, collection: Collection, vectors: NDArray[np.float32]) -> list[str]:
    """Catalog rows (one record per image) and vectors, as an ingest leaves them."""
    ids = [new_id() for _ in range(len(vectors))]
    records = [new_id() for _ in ids]
    with rt.catalog.session() as session:
        session.execute(
            insert(Record),
            [
                {"id": r, "collection_id": collection.id, "name": r, "owner": "bench"}
                for r in records
            ],
        )
        session.execute(
            insert(Image),
            [
                {
                    "id": i,
                    "record_id": r,
                    "collection_id": collection.id,
                    "sha256": i,
                    "status": "embedded",
                }
                for i, r in zip(ids, records, strict=True)
            ],
        )
    for start in range(0, len(ids), 1000):
        rt.vectors.upsert(
            collection.id,
            [
                Point(ids[i], {VECTOR: vectors[i]})
                for i in range(start, min(start + 1000, len(ids)))
            ],
        )
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="points already in the collection")
    parser.add_argument("--dim", type=int, default=1280, help="1280: EfficientNet-Lite0; 512: CLIP")
    parser.add_argument("--batch", type=int, default=16, help="images per ingest batch")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--no-index", action="store_true", help="no HNSW index: exact scans")
    parser.add_argument("--full", action="store_true", help="also time one full recompute")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    vectors = clustered(args.n + args.batch * (args.batches + 1), args.dim, rng)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            anomaly_k=args.k,
            anomaly_recompute_interval_s=0,
            _env_file=None,  # type: ignore[call-arg]
        )
        with Lookalike(settings, start=False) as rt:
            collection = Collection(
                tenant="bench", name="bench", model="bench", model_id="bench@0",
                vector_name=VECTOR, dim=args.dim,
            )  # fmt: skip
            with rt.catalog.session() as session:
                session.add(collection)
            rt.vectors.create_collection(
                collection.id,
                [VectorSpec(VECTOR, args.dim)],
                IndexSettings(indexing_threshold=10**9),
                PAYLOAD_INDEXES,
            )
            add_points(rt, collection, vectors[: args.n])
            if not args.no_index:
                started = time.perf_counter()
                rt.vectors.build_index(collection.id, wait=True)
                print(f"HNSW build of {args.n} points: {time.perf_counter() - started:.1f} s")

            totals: list[float] = []
            searches: list[float] = []
            for b in range(args.batches + 1):
                chunk = vectors[args.n + b * args.batch : args.n + (b + 1) * args.batch]
                ids = add_points(rt, collection, chunk)
                started = time.perf_counter()
                rt.anomalies.score_new(collection.id, VECTOR, ids, chunk)
                elapsed = time.perf_counter() - started
                if b == 0:
                    print(f"first batch (reads the ood statistics): {elapsed * 1000:.0f} ms")
                    # Beyond the inline limit the first batch queued a recompute instead.
                    started = time.perf_counter()
                    if rt.jobs.run_pending():
                        print(f"recompute job queued by it: {time.perf_counter() - started:.1f} s")
                    continue
                totals.append(elapsed)
                started = time.perf_counter()
                score_new_points(rt.vectors, collection.id, VECTOR, ids, chunk, args.k)
                searches.append(time.perf_counter() - started)

            def ms(values: list[float], q: float) -> str:
                return f"{statistics.quantiles(values, n=100)[q - 1] * 1000:.1f} ms"

            mode = "exact scan" if args.no_index else "HNSW"
            print(
                f"score_new, batch of {args.batch} into {args.n} points ({args.dim}-d, "
                f"k={args.k}, {mode}): p50 {ms(totals, 50)}, p95 {ms(totals, 95)}; "
                f"searches alone p50 {ms(searches, 50)}; "
                f"{statistics.median(totals) / args.batch * 1000:.2f} ms per image"
            )
            if args.full:
                result = rt.anomalies.recompute(collection.id)
                print(
                    f"full recompute: {result['scored']} images in {result['seconds']} s "
                    f"({result['seconds'] / max(result['scored'], 1) * 1000:.2f} ms per image)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
