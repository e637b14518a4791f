"""Duplicate detection: how right the tiers are, and what a sweep costs at scale.

Quality (default): the sample photos that ship in scikit-image and matplotlib, plus edited
copies of each (resize, JPEG, brightness, grayscale, crop, rotation, flip, text overlay), are
ingested into a fresh data directory with the given model. Every pair of images is labelled
"same picture" (an original and its copies, or two copies of one original) or "different"; the
other originals are the distractors. It prints, per edit kind, the precision and recall of
each tier over those pairs, a scan over the near-exact cosine threshold (to choose the
defaults in quality/dedup.py), what the verdict at ingest said, and how the sweep's clusters
score.

Scale (`--scale 25000,50000,100000`): synthetic unit vectors with planted near copies (and
pHashes a few bits apart) in the real vector engine; each size runs in its own process, which
reports the sweep's time and its peak memory, so linear growth shows as a constant per-point
figure.

    python bench/dedup_eval.py                       # quality, offline EfficientNet-Lite0
    python bench/dedup_eval.py --scale 25000,50000,100000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.catalog import Image, Record, new_id
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.dedup.clusters import sweep
from lookalike.dedup.sweep import run_sweep
from lookalike.dedup.tiers import DedupThresholds, thresholds_of, tier_of
from lookalike.demo.samples import derived_set, sample_photos
from lookalike.imaging import phash_hamming
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.records import service as svc
from lookalike.vectors.base import IndexSettings, Point, VectorSpec
from lookalike.vectors.qdrant_edge import QdrantEdgeIndex

# Copies that are the same picture to a person and should be near_exact (the target).
NEAR_EXACT_KINDS = ("resize", "jpeg", "brightness", "grayscale")
EDITS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("resize", {"scale": 0.5}),
    ("resize", {"scale": 0.25}),
    ("jpeg", {"quality": 40}),
    ("jpeg", {"quality": 15}),
    ("brightness", {"factor": 1.3}),
    ("brightness", {"factor": 0.75}),
    ("grayscale", {}),
    ("crop", {"keep": 0.85}),
    ("crop", {"keep": 0.6}),
    ("rotate", {"degrees": 4}),
    ("flip", {"direction": "horizontal"}),
    ("text_overlay", {"text": "lookalike sample"}),
)
# Two views of one stereo pair: neither "same picture" nor "different photo"; left out.
AMBIGUOUS = {frozenset({"motorcycle_left", "motorcycle_right"})}


def _kind(transform: str) -> str:
    return transform.split("(", 1)[0]


def evaluate_quality(model: str, models_dir: Path | None) -> dict[str, Any]:
    photos = sample_photos()
    copies = derived_set(photos, transforms=EDITS)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            model=model,
            model_cache_dir=models_dir,
            model_download=False,
            auth="off",
            _env_file=None,  # type: ignore[call-arg]
        )
        with Lookalike(settings) as rt:
            collection = svc.create_collection(rt, "eval", "eval", model=model)
            started = time.perf_counter()
            # Originals first, then the copies: each copy's verdict should name its original.
            for name, data in photos.items():
                rt.ingest.add(
                    collection, NewRecord(name=name, owner="eval"), [IngestFile(data, name)]
                )
            rt.ingest.wait_idle(600)
            for copy in copies:
                rt.ingest.add(
                    collection,
                    NewRecord(name=copy.name, owner="eval", extra={"transform": copy.transform}),
                    [IngestFile(copy.data, copy.name)],
                )
            rt.ingest.wait_idle(600)
            # The verdicts come from the duplicate enrichment stage, after the images are
            # searchable: wait for it too.
            rt.enrichment.wait_idle(600)
            ingest_s = time.perf_counter() - started
            with rt.catalog.session() as session:
                rows = session.execute(
                    Image.__table__.select()
                    .with_only_columns(
                        Image.id,
                        Image.phash,
                        Image.duplicate_tier,
                        Image.duplicate_of,
                        Record.name,
                    )
                    .join_from(Image, Record, Image.record_id == Record.id)
                ).all()
            original_of = {c.name: c.original_name for c in copies}
            kind_of = {c.name: _kind(c.transform) for c in copies}
            info = {
                r.id: {
                    "name": r.name,
                    "group": original_of.get(r.name, r.name),
                    "kind": kind_of.get(r.name, "original"),
                    "phash": r.phash,
                    "tier": r.duplicate_tier,
                    "of": r.duplicate_of,
                }
                for r in rows
            }
            points = rt.vectors.retrieve(collection.id, list(info), with_vectors=True)
            vectors = {
                p.id: np.asarray(p.vectors[collection.vector_name], dtype=np.float32)
                for p in points
            }
            thresholds = thresholds_of(collection)
            started = time.perf_counter()
            swept = run_sweep(rt, collection)
            sweep_s = time.perf_counter() - started
            clusters = [[m.image_id for m in c.members] for c in swept.clusters]
            cluster_tiers = [c.tier for c in swept.clusters]
    return {
        "model": model,
        "images": len(info),
        "originals": len(photos),
        "ingest_s": ingest_s,
        "sweep_s": sweep_s,
        "thresholds": thresholds,
        "info": info,
        "vectors": vectors,
        "clusters": list(zip(cluster_tiers, clusters, strict=True)),
    }


def _pairs(info: dict[str, dict[str, Any]], vectors: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for a, b in combinations(sorted(vectors), 2):
        ga, gb = info[a]["group"], info[b]["group"]
        if frozenset({ga, gb}) in AMBIGUOUS:
            continue
        va, vb = vectors[a], vectors[b]
        cosine = float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))
        ha, hb = info[a]["phash"], info[b]["phash"]
        kinds = sorted({info[a]["kind"], info[b]["kind"]} - {"original"}) or ["original"]
        out.append(
            {
                "a": a,
                "b": b,
                "same": ga == gb,
                # An original and its copy are labelled by the edit; two copies by both edits.
                "kind": "+".join(kinds),
                "cosine": cosine,
                "hamming": phash_hamming(ha, hb) if ha and hb else None,
            }
        )
    return out


def _precision_recall(pairs: list[dict[str, Any]], predicted: set[int]) -> tuple[float, float, int]:
    true = {i for i, p in enumerate(pairs) if p["same"]}
    hits = len(true & predicted)
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(true) if true else 1.0
    return precision, recall, len(predicted - true)


def report_quality(result: dict[str, Any]) -> None:
    info, vectors, thresholds = result["info"], result["vectors"], result["thresholds"]
    pairs = _pairs(info, vectors)
    print(f"model {result['model']}: {result['images']} images ({result['originals']} originals)")
    print(f"thresholds {thresholds.as_dict()}")
    print(f"ingest {result['ingest_s']:.1f} s, sweep {result['sweep_s']:.2f} s\n")

    tiers = [tier_of(p["cosine"], p["hamming"], thresholds) for p in pairs]
    near = {i for i, t in enumerate(tiers) if t == "near_exact"}
    either = {i for i, t in enumerate(tiers) if t is not None}
    print("pairs of an original and one copy, by edit:")
    print(
        f"{'edit':<14}{'pairs':>6}{'near_exact R':>14}{'any tier R':>12}"
        f"{'hamming p50':>13}{'cosine p50':>12}"
    )
    for kind in sorted({p["kind"] for p in pairs if p["same"] and "+" not in p["kind"]}):
        idx = [i for i, p in enumerate(pairs) if p["same"] and p["kind"] == kind]
        ham = [pairs[i]["hamming"] for i in idx if pairs[i]["hamming"] is not None]
        cos = [pairs[i]["cosine"] for i in idx]
        print(
            f"{kind:<14}{len(idx):>6}{len(near & set(idx)) / len(idx):>14.3f}"
            f"{len(either & set(idx)) / len(idx):>12.3f}"
            f"{np.median(ham) if ham else float('nan'):>13.1f}{np.median(cos):>12.3f}"
        )
    diff = [i for i, p in enumerate(pairs) if not p["same"]]
    diff_cos = sorted((pairs[i]["cosine"] for i in diff), reverse=True)
    top = [round(c, 3) for c in diff_cos[:5]]
    print(f"\ndifferent-photo pairs: {len(diff)}; highest cosines {top}")
    wrong_near = [pairs[i] for i in diff if tiers[i] == "near_exact"]
    print(f"different photos called near_exact: {len(wrong_near)} (target 0)")

    target = [
        i
        for i, p in enumerate(pairs)
        if not p["same"] or all(k in NEAR_EXACT_KINDS for k in p["kind"].split("+"))
    ]
    sub = [pairs[i] for i in target]
    sub_near = {j for j, i in enumerate(target) if i in near}
    p, r, fp = _precision_recall(sub, sub_near)
    print(
        f"near_exact on {'/'.join(NEAR_EXACT_KINDS)} copies: precision {p:.3f}, recall {r:.3f}"
        " (targets >= 0.99 / >= 0.9)"
    )
    p, r, fp = _precision_recall(pairs, either)
    print(f"any tier, all edits: precision {p:.3f}, recall {r:.3f}, false pairs {fp}")

    print(
        "\nnear-exact cosine threshold scan (gate "
        f"{thresholds.phash_gate} bits; pairs as in the target line):"
    )
    print(f"{'cosine >=':>10}{'precision':>11}{'recall':>8}{'false':>7}")
    for cut in (0.6, 0.65, 0.7, 0.72, 0.75, 0.8, 0.85, 0.9, 0.95):
        scan = DedupThresholds(thresholds.phash_gate, cut, min(cut, thresholds.similar_cosine))
        chosen = {
            j
            for j, i in enumerate(target)
            if tier_of(pairs[i]["cosine"], pairs[i]["hamming"], scan) == "near_exact"
        }
        p, r, fp = _precision_recall(sub, chosen)
        print(f"{cut:>10.2f}{p:>11.3f}{r:>8.3f}{fp:>7}")
    print("\nsimilar cosine threshold scan (any tier; all edits):")
    print(f"{'cosine >=':>10}{'precision':>11}{'recall':>8}{'false':>7}")
    for cut in (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9):
        chosen = {i for i, pr in enumerate(pairs) if pr["cosine"] >= cut}
        p, r, fp = _precision_recall(pairs, chosen)
        print(f"{cut:>10.2f}{p:>11.3f}{r:>8.3f}{fp:>7}")

    copies = [v for v in info.values() if v["kind"] != "original"]
    by_kind: dict[str, list[bool]] = defaultdict(list)
    wrong = 0
    for v in copies:
        right = v["of"] is not None and info.get(v["of"], {}).get("group") == v["group"]
        by_kind[v["kind"]].append(v["tier"] == "near_exact" and right)
        named = info.get(v["of"], {}).get("group") if v["of"] else None
        if (
            v["tier"] in ("exact", "near_exact")
            and not right
            and frozenset({v["group"], named}) not in AMBIGUOUS
        ):
            wrong += 1
            print(f"  wrong: {v['name']} -> {info[v['of']]['name'] if v['of'] else None}")
    originals_wrong = sum(
        1
        for v in info.values()
        if v["kind"] == "original"
        and v["tier"] == "near_exact"
        and frozenset({v["group"], info[v["of"]]["group"]}) not in AMBIGUOUS
    )
    print("\nverdict at ingest (copy -> near_exact of its own original or copy):")
    print("  " + ", ".join(f"{k} {sum(x) / len(x):.2f}" for k, x in sorted(by_kind.items())))
    print(f"  near_exact verdicts naming a different photo: {wrong + originals_wrong} (target 0)")

    cluster_pairs: set[frozenset[str]] = set()
    for _tier, members in result["clusters"]:
        for a, b in combinations(members, 2):
            cluster_pairs.add(frozenset({a, b}))
    idx = {i for i, pr in enumerate(pairs) if frozenset({pr["a"], pr["b"]}) in cluster_pairs}
    p, r, fp = _precision_recall(pairs, idx)
    tiers_count = defaultdict(int)
    for tier, _ in result["clusters"]:
        tiers_count[tier] += 1
    print(
        f"\nsweep: {len(result['clusters'])} clusters {dict(tiers_count)}; pairs inside clusters: "
        f"precision {p:.3f}, recall {r:.3f}"
    )


# --- scale -----------------------------------------------------------------------------------


def scale_one(n: int, dim: int, seed: int) -> dict[str, Any]:
    """One sweep over `n` synthetic points in a fresh engine; run in its own process."""
    rng = np.random.default_rng(seed)
    base_rss = _rss_mb()
    copies = n // 20  # 5% are near copies of another point
    originals = n - copies
    centers = rng.standard_normal((max(1, originals // 50), dim)).astype(np.float32)
    vectors = centers[rng.integers(0, len(centers), originals)] + 0.6 * rng.standard_normal(
        (originals, dim)
    ).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    source = rng.integers(0, originals, copies)
    near = vectors[source] + 0.01 * rng.standard_normal((copies, dim)).astype(np.float32)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    vectors = np.concatenate([vectors, near])
    phashes = [int(x) for x in rng.integers(0, 2**63, originals, dtype=np.int64)]
    for s in source:
        flip = 0
        for bit in rng.choice(64, 3, replace=False):
            flip |= 1 << int(bit)
        phashes.append(phashes[int(s)] ^ flip)
    ids = [new_id() for _ in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        index = QdrantEdgeIndex(Path(tmp))
        index.create_collection(
            "c",
            [VectorSpec("v", dim)],
            IndexSettings(quantization="int8", indexing_threshold=10_000),
            {},
        )
        started = time.perf_counter()
        for lo in range(0, n, 2000):
            index.upsert(
                "c",
                [
                    Point(id=ids[i], vectors={"v": vectors[i]}, payload={})
                    for i in range(lo, min(n, lo + 2000))
                ],
            )
        index.build_index("c", wait=True)
        load_s = time.perf_counter() - started
        row_of = {image_id: i for i, image_id in enumerate(ids)}
        loaded_rss = _rss_mb()
        thresholds = DedupThresholds(phash_gate=6, near_exact_cosine=0.9, similar_cosine=0.8)

        def neighbours(row: int) -> list[tuple[int, float]]:
            hits = index.search(
                "c", "v", vectors[row], limit=11, score_threshold=0.8, with_payload=False
            )
            return [(row_of[h.id], h.score) for h in hits]

        started = time.perf_counter()
        clusters, stats = sweep(vectors, phashes, neighbours, thresholds)
        sweep_s = time.perf_counter() - started
        found = sum(1 for c in clusters if c.tier == "near_exact")
        index.close()
    return {
        "n": n,
        "load_and_index_s": round(load_s, 1),
        "sweep_s": round(sweep_s, 1),
        "stages_s": stats.seconds,
        "near_exact_clusters": found,
        "planted_copies": copies,
        "rss_before_mb": round(base_rss),
        "rss_loaded_mb": round(loaded_rss),
        "peak_rss_mb": round(_rss_mb()),
    }


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report_scale(sizes: Sequence[int], dim: int) -> None:
    print(f"sweep at scale ({dim}-d, int8 HNSW, k=10, 5% planted near copies), one process each:")
    print(
        f"{'N':>8}{'index s':>9}{'sweep s':>9}{'us/point':>10}{'peak MB':>9}"
        f"{'MB / 1k pts':>12}{'clusters':>10}{'planted':>9}"
    )
    rows = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--scale-one", str(n), "--dim", str(dim)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        grown = row["peak_rss_mb"] - row["rss_before_mb"]
        print(
            f"{n:>8}{row['load_and_index_s']:>9.1f}{row['sweep_s']:>9.1f}"
            f"{row['sweep_s'] / n * 1e6:>10.0f}{row['peak_rss_mb']:>9}"
            f"{grown / n * 1000:>12.2f}{row['near_exact_clusters']:>10}{row['planted_copies']:>9}"
        )
    for row in rows:
        print(f"  N={row['n']}: stages {row['stages_s']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--scale", default="", help="comma-separated sizes for the sweep at scale")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--scale-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scale_one:
        print(json.dumps(scale_one(args.scale_one, args.dim, seed=args.scale_one)))
        return 0
    if args.scale:
        report_scale([int(x) for x in args.scale.split(",") if x], args.dim)
        return 0
    cache = os.environ.get("LOOKALIKE_MODEL_CACHE_DIR")
    report_quality(evaluate_quality(args.model, Path(cache) if cache else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
