"""Search benchmark of the vector engines behind `VectorIndex`, side by side in one run.

`--engine` picks them: `edge` (the embedded Qdrant Edge, default), `milvus` and `pgvector` (a
Milvus standalone and a PostgreSQL with pgvector started here from the dev extra's wheels, as
the tests start them), `qdrant-local` (qdrant-client's local mode: the Qdrant-server engine's
code without a server, which cannot run here), or any LOOKALIKE_VECTORS URL of a running server.

For each dataset (clustered: gaussian clusters on the unit sphere; uniform: uniform on the
sphere) and each quantization (none, int8) it loads N points with an ingest-like payload
(owner, tags, created_at, quality, nsfw) in batches, calling `maybe_build_index` after each
batch as the ingest pipeline does, and reports:

- insert time, and time until every point is in the HNSW index (from the first insert);
- p50/p95 latency and single-thread QPS of k=10 searches, without and with a filter that
  keeps ~10% of the points, and recall@10 of both against exact (numpy) search;
- p50/p95/max latency of searches issued while an index build was running.

    python bench/search.py                      # 100k x 512-d, both datasets, none and int8
    python bench/search.py --n 20000 --datasets clustered --quantization none
    python bench/search.py --engine edge,milvus,pgvector,qdrant-local --datasets clustered \
        --quantization none --queries 100 --rounds 1

A server engine indexes on its own schedule: its "all indexed" time is the inserts plus a
`build_index(wait=True)`, and there is no search-during-build column for it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from ulid import ULID

from lookalike.vectors.base import (
    Filter,
    IndexSettings,
    IndexStatus,
    MatchValue,
    PayloadType,
    Point,
    VectorIndex,
    VectorSpec,
)
from lookalike.vectors.qdrant_edge import QdrantEdgeIndex

# The test suite's server launchers (tests/backends) start Milvus and PostgreSQL here too.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

COLLECTION = "bench"
VECTOR = "img"
OWNERS = 10  # the filter keeps one owner: ~10% of the points
TAGS = [f"tag-{i}" for i in range(20)]
PAYLOAD_INDEXES: dict[str, PayloadType] = {
    "owner": "keyword",
    "tags": "keyword",
    "created_at": "datetime",
    "quality": "float",
    "nsfw": "float",
}
FILTER = Filter(must=(MatchValue("owner", "owner-3"),))

Matrix = NDArray[np.float32]


def unit_rows(x: Matrix) -> Matrix:
    normed: Matrix = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return normed


def make_dataset(
    kind: str, n: int, n_queries: int, dim: int, spread: float, seed: int
) -> tuple[Matrix, Matrix]:
    """Points and held-out queries drawn from the same distribution."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return (
            unit_rows(rng.standard_normal((n, dim), dtype=np.float32)),
            unit_rows(rng.standard_normal((n_queries, dim), dtype=np.float32)),
        )
    centers = unit_rows(rng.standard_normal((1000, dim), dtype=np.float32))

    def draw(count: int) -> Matrix:
        noise = spread * rng.standard_normal((count, dim), dtype=np.float32)
        return unit_rows(centers[rng.integers(0, len(centers), count)] + noise)

    return draw(n), draw(n_queries)


def make_payloads(n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed + 1)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    owners = rng.integers(0, OWNERS, n)
    minutes = rng.integers(0, 365 * 24 * 60, n)
    quality = rng.random(n)
    nsfw = rng.random(n) ** 4
    return [
        {
            "owner": f"owner-{owners[i]}",
            "tags": [
                TAGS[t] for t in rng.choice(len(TAGS), size=int(rng.integers(0, 4)), replace=False)
            ],
            "created_at": (start + timedelta(minutes=int(minutes[i])))
            .isoformat()
            .replace("+00:00", "Z"),
            "quality": round(float(quality[i]), 4),
            "nsfw": round(float(nsfw[i]), 4),
        }
        for i in range(n)
    ]


def exact_top_k(
    data: Matrix, queries: Matrix, k: int, mask: NDArray[np.bool_] | None = None
) -> list[set[int]]:
    truth: list[set[int]] = []
    for q in queries:
        scores = data @ q
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        truth.append({int(i) for i in np.argpartition(-scores, k)[:k]})
    return truth


@dataclass
class Probe:
    """Searches at a steady pace from a background thread, noting whether a build was running."""

    index: VectorIndex
    queries: Matrix
    interval_s: float
    ef: int
    building: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    during_build_ms: list[float] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        k = 0
        while not self.stop.is_set():
            building = self.building.is_set()
            t0 = time.perf_counter()
            self.index.search(
                COLLECTION, VECTOR, self.queries[k % len(self.queries)], limit=10, ef=self.ef
            )
            elapsed = (time.perf_counter() - t0) * 1000
            if building and self.building.is_set():
                self.during_build_ms.append(elapsed)
            k += 1
            time.sleep(self.interval_s)

    def follow(self, status: IndexStatus) -> IndexStatus:
        if status.building:
            self.building.set()
        else:
            self.building.clear()
        return status

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def timed_searches(
    index: VectorIndex,
    ids: list[str],
    queries: Matrix,
    truth: list[set[int]],
    ef: int,
    query_filter: Filter | None,
    rounds: int,
) -> dict[str, float]:
    position = {pid: i for i, pid in enumerate(ids)}
    for q in queries[:20]:  # warm-up
        index.search(COLLECTION, VECTOR, q, limit=10, ef=ef, query_filter=query_filter)
    latencies: list[float] = []
    recalls: list[float] = []
    started = time.perf_counter()
    for r in range(rounds):
        for q, expected in zip(queries, truth, strict=True):
            t0 = time.perf_counter()
            hits = index.search(
                COLLECTION,
                VECTOR,
                q,
                limit=10,
                ef=ef,
                query_filter=query_filter,
                with_payload=False,
            )
            latencies.append((time.perf_counter() - t0) * 1000)
            if r == 0:
                recalls.append(len({position[h.id] for h in hits} & expected) / len(expected))
    total = time.perf_counter() - started
    return {
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "qps": len(latencies) / total,
        "recall": statistics.fmean(recalls),
    }


def run_one(
    args: argparse.Namespace,
    data: Matrix,
    queries: Matrix,
    payloads: list[dict[str, Any]],
    truth: list[set[int]],
    truth_filtered: list[set[int]],
    quantization: str,
    engine: str,
) -> dict[str, str]:
    n = len(data)
    ids = [str(ULID.from_int((1_750_000_000_000 << 80) + i)) for i in range(n)]
    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        index = open_engine(engine, Path(tmp))
        try:
            index.create_collection(
                COLLECTION,
                [VectorSpec(VECTOR, data.shape[1])],
                IndexSettings(
                    hnsw_m=args.m,
                    hnsw_ef_construct=args.ef_construct,
                    quantization=quantization,  # type: ignore[arg-type]
                    indexing_threshold=args.indexing_threshold,
                ),
                PAYLOAD_INDEXES,
            )
            probe = Probe(index, queries, args.probe_interval, args.ef[0])
            probe.start()
            started = time.perf_counter()
            for lo in range(0, n, args.batch):
                hi = min(n, lo + args.batch)
                index.upsert(
                    COLLECTION,
                    [Point(ids[i], {VECTOR: data[i]}, payloads[i]) for i in range(lo, hi)],
                )
                index.maybe_build_index(COLLECTION)  # as the ingest pipeline does
                probe.follow(index.status(COLLECTION))
            insert_s = time.perf_counter() - started
            deadline = time.monotonic() + args.timeout
            if engine != "edge":
                index.build_index(COLLECTION, wait=True)
            while engine == "edge":
                status = probe.follow(index.status(COLLECTION))
                if status.last_build_error:
                    raise SystemExit(f"build failed: {status.last_build_error}")
                if not status.building:
                    if status.indexed_vectors >= n:
                        break
                    # A tail below the threshold: index it too, so that every point is in.
                    index.build_index(COLLECTION)
                    probe.building.set()
                if time.monotonic() > deadline:
                    raise SystemExit("index build did not finish before --timeout")
                time.sleep(0.05)
            indexed_s = time.perf_counter() - started
            indexed = index.status(COLLECTION).indexed_vectors
            probe.finish()
            results = {
                ef: (
                    timed_searches(index, ids, queries, truth, ef, None, args.rounds),
                    timed_searches(index, ids, queries, truth_filtered, ef, FILTER, args.rounds),
                )
                for ef in args.ef
            }
        finally:
            if engine != "edge":
                index.drop_collection(COLLECTION)  # the server outlives the run
            index.close()
    during = probe.during_build_ms
    row = {
        "insert s": f"{insert_s:.1f}",
        "all indexed s": f"{indexed_s:.1f}",
        "indexed vectors": str(indexed),
    }
    for ef, (plain, filtered) in results.items():
        at = "" if ef == args.ef[0] else f" ef={ef}"
        row |= {
            f"p50 ms{at}": f"{plain['p50']:.2f}",
            f"p95 ms{at}": f"{plain['p95']:.2f}",
            f"QPS (1 thread){at}": f"{plain['qps']:.0f}",
            f"recall@10{at}": f"{plain['recall']:.3f}",
            f"filtered p50 ms{at}": f"{filtered['p50']:.2f}",
            f"filtered p95 ms{at}": f"{filtered['p95']:.2f}",
            f"filtered QPS{at}": f"{filtered['qps']:.0f}",
            f"filtered recall@10{at}": f"{filtered['recall']:.3f}",
        }
    return row | {
        "during build p50 ms": f"{percentile(during, 50):.2f}",
        "during build p95 ms": f"{percentile(during, 95):.2f}",
        "during build max ms": f"{max(during) if during else float('nan'):.1f}",
        "during build searches": str(len(during)),
    }


_SERVERS: dict[str, str] = {}


def open_engine(engine: str, tmp: Path) -> VectorIndex:
    """`engine` opened for one run: the embedded one on `tmp`, a server one in namespace
    "bench" of the server `start_servers` started (or the URL given)."""
    if engine == "edge":
        return QdrantEdgeIndex(tmp)
    if engine == "qdrant-local":
        from lookalike.vectors.qdrant_server import QdrantServerIndex

        return QdrantServerIndex(path=tmp, namespace="bench")
    from lookalike.core.config import Settings
    from lookalike.vectors import open_vector_index

    url = _SERVERS.get(engine, engine)
    return open_vector_index(Settings(vectors=url, vectors_namespace="bench", _env_file=None))  # type: ignore[call-arg]


def start_servers(engines: Sequence[str], root: Path, stack: contextlib.ExitStack) -> None:
    """Start a local Milvus and/or PostgreSQL with pgvector for the bare names among
    `engines`, stopped when `stack` closes."""
    if "milvus" in engines:
        from backends.milvus import MilvusProcess

        binaries = root / "milvus-binaries"
        binaries.mkdir()
        milvus = MilvusProcess(root / "milvus", binaries)
        milvus.start()
        stack.callback(milvus.stop)
        _SERVERS["milvus"] = "milvus://" + milvus.uri.removeprefix("http://")
    if "pgvector" in engines:
        from backends.pgvector import private_pgvector_server

        _SERVERS["pgvector"] = stack.enter_context(private_pgvector_server()).dsn


def print_table(columns: dict[str, dict[str, str]]) -> None:
    metrics = list(next(iter(columns.values())))
    headers = ["metric", *columns]
    rows = [[m, *(columns[c][m] for c in columns)] for m in metrics]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(
            "| "
            + " | ".join(
                [
                    r[0].ljust(widths[0]),
                    *(v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True)),
                ]
            )
            + " |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="points per run")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the queries")
    parser.add_argument(
        "--engine",
        default="edge",
        help="comma-separated: edge, milvus, pgvector, qdrant-local, or LOOKALIKE_VECTORS URLs",
    )
    parser.add_argument("--datasets", default="clustered,uniform")
    parser.add_argument("--quantization", default="none,int8")
    parser.add_argument(
        "--spread", type=float, default=0.03, help="per-dimension noise of a cluster"
    )
    parser.add_argument(
        "--ef",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[64],
        help="search-time ef, or a comma-separated list; the first is the service default",
    )
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construct", type=int, default=100)
    parser.add_argument("--indexing-threshold", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=256, help="points per upsert")
    parser.add_argument(
        "--probe-interval", type=float, default=0.005, help="pause between background searches (s)"
    )
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="where the temporary collections go"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log each index build's phases")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
        stream=sys.stderr,
    )

    engines = args.engine.split(",")
    with contextlib.ExitStack() as stack:
        servers = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=args.data_dir)))
        start_servers(engines, servers, stack)
        columns = run_all(args, engines)
    print(
        f"\nn={args.n} dim={args.dim} k=10 ef={','.join(map(str, args.ef))} m={args.m} "
        f"ef_construct={args.ef_construct} filter=owner (~{100 // OWNERS}%) "
        f"queries={args.queries}x{args.rounds}"
    )
    print_table(columns)
    return 0


def run_all(args: argparse.Namespace, engines: Sequence[str]) -> dict[str, dict[str, str]]:
    columns: dict[str, dict[str, str]] = {}
    for kind in args.datasets.split(","):
        data, queries = make_dataset(kind, args.n, args.queries, args.dim, args.spread, args.seed)
        payloads = make_payloads(args.n, args.seed)
        mask = np.array([p["owner"] == "owner-3" for p in payloads])
        truth = exact_top_k(data, queries, 10)
        truth_filtered = exact_top_k(data, queries, 10, mask)
        for engine in engines:
            for quantization in args.quantization.split(","):
                label = (
                    f"{engine}/{kind}/{quantization}"
                    if len(engines) > 1
                    else f"{kind}/{quantization}"
                )
                print(
                    f"running {label} (n={args.n}, dim={args.dim}) ...", file=sys.stderr, flush=True
                )
                columns[label] = run_one(
                    args, data, queries, payloads, truth, truth_filtered, quantization, engine
                )
                print(f"  {columns[label]}", file=sys.stderr, flush=True)
    return columns


if __name__ == "__main__":
    sys.exit(main())
