"""Duplicate detection: how right the tiers are, and what a sweep costs at scale.

Quality (default). Originals: every real photo that ships in the installed packages
(scikit-image, matplotlib, scikit-learn; `lookalike.demo.samples`) and photo-like synthetic
scenes (`lookalike.demo.scenes`), 60 or more in all. Each original gets edited copies of 17
kinds a person still calls the same photograph (near_exact expected) and 2 kinds the tiers put
under similar (a mirror image, a crop to half). Different shots of one scene (the stereo pair
that ships with scikit-image, and pans across synthetic scenes that overlap by half or by three
quarters) must come out similar and never near_exact. Everything goes in through ingest into a
fresh data directory: originals first, then the copies and the second shots.

It prints, per edit kind, how often the verdict at ingest and the sweep's clusters call the
copy near_exact of its own photograph; the precision of near_exact (no two different
photographs, no two shots of one scene) and of similar; the recall of similar for different
shots; a cosine scan for the similar tier and the search cut-off; and PASS/FAIL against the
targets (near_exact precision 1.000 and recall >= 0.95; similar recall >= 0.9 for shots).

Scale (`--scale 25000,50000,100000`): synthetic unit vectors with planted near copies (and
pHashes a few bits apart) in the real vector engine; each size runs in its own process, which
reports the sweep's time and its peak memory, so linear growth shows as a constant per-point
figure. No pixels there: the pHash-and-cosine rule decides near_exact.

    python bench/dedup_eval.py                       # quality, offline EfficientNet-Lite0
    python bench/dedup_eval.py --scenes 16           # fewer synthetic originals, quicker
    python bench/dedup_eval.py --no-geometric-check  # the pHash-and-cosine rule alone
    python bench/dedup_eval.py --scale 25000,50000,100000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from lookalike.catalog import Image, Record, new_id
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.dedup.clusters import sweep
from lookalike.dedup.sweep import run_sweep
from lookalike.dedup.tiers import DedupThresholds, thresholds_of
from lookalike.demo.samples import sample_photos, transform
from lookalike.demo.scenes import SCENE_KINDS, synthetic_scene, synthetic_scenes
from lookalike.imaging import phash_hamming
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.records import service as svc
from lookalike.vectors.base import IndexSettings, Point, VectorSpec
from lookalike.vectors.qdrant_edge import QdrantEdgeIndex

Edit = Callable[[PILImage.Image], PILImage.Image]


def _crop_box(left: float, top: float, right: float, bottom: float) -> Edit:
    def edit(image: PILImage.Image) -> PILImage.Image:
        w, h = image.size
        box = (round(left * w), round(top * h), round(right * w), round(bottom * h))
        return transform(image, "crop", box=box)

    return edit


def _blur_noise(image: PILImage.Image) -> PILImage.Image:
    return transform(transform(image, "blur", radius=2.0), "noise", sigma=12)


def _edit(kind: str, **params: Any) -> Edit:
    return lambda image: transform(image, kind, **params)


# (kind, edit, how the copy is saved). "format" keeps the pixels and changes the file.
NEAR_EXACT_EDITS: tuple[tuple[str, Edit | None, str], ...] = (
    ("resize", _edit("resize", scale=0.5), "JPEG"),
    ("resize", _edit("resize", scale=0.25), "JPEG"),
    ("jpeg", None, "JPEG15"),
    ("format", None, "WEBP"),
    ("crop", _edit("crop", keep=0.85), "JPEG"),
    ("crop_corner", _crop_box(0.0, 0.0, 0.85, 0.85), "JPEG"),
    ("border", _edit("border", width=0.06), "JPEG"),
    ("letterbox", _edit("letterbox", aspect=16 / 9), "JPEG"),
    ("watermark", _edit("watermark"), "JPEG"),
    ("caption", _edit("text_overlay"), "JPEG"),
    ("perspective", _edit("perspective", strength=0.08), "JPEG"),
    ("blur_noise", _blur_noise, "JPEG"),
    ("squash", _edit("squash", x=1.0, y=0.75), "JPEG"),
    ("hue", _edit("hue", degrees=40), "JPEG"),
    ("brightness", _edit("brightness", factor=0.7), "JPEG"),
    ("contrast", _edit("contrast", factor=1.4), "JPEG"),
    ("grayscale", _edit("grayscale"), "JPEG"),
    ("rotate", _edit("rotate", degrees=3), "JPEG"),
)
# The same photograph, but the tiers put these under similar (docs/quality.md).
SIMILAR_EDITS: tuple[tuple[str, Edit | None, str], ...] = (
    ("mirror", _edit("flip", direction="horizontal"), "JPEG"),
    ("crop_half", _edit("crop", keep=0.7), "JPEG"),  # keeps 49% of the frame
)
# Pans across one scene: (name, the base scene's width, shot width) at height 480.
PANS = (("pan_half", 960, 640), ("pan_quarter", 800, 640))


@dataclass(frozen=True)
class Item:
    """One image of the evaluation and what it truly is."""

    name: str
    data: bytes
    photo: str  # the photograph it is (an original's name): same photo = same value
    scene: str  # the scene it shows: different shots of one scene share it
    kind: str  # "original", an edit kind, or a shot kind

    @property
    def subject(self) -> str:
        """What it shows, loosely: a synthetic scene's kind ("landscape"), else the scene.
        Two different synthetic landscapes are the same subject, as two sunsets are."""
        for kind in SCENE_KINDS:
            if self.scene.startswith(("scene_", "pan_")) and f"_{kind}_" in self.scene:
                return kind
        return self.scene


def _encode(image: PILImage.Image, how: str, original: bytes) -> bytes:
    buffer = io.BytesIO()
    if how == "WEBP":
        # The same pixels in another format (lossless when the original was lossless).
        lossless = not original.startswith(b"\xff\xd8")
        image.save(buffer, format="WEBP", lossless=lossless, quality=90)
    elif how == "JPEG15":
        image.save(buffer, format="JPEG", quality=15)
    else:
        image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def build_items(scene_count: int, pans_per_kind: int) -> tuple[list[Item], list[Item]]:
    """(originals, later images: copies and second shots)."""
    real = sample_photos()
    stereo_right = real.pop("motorcycle_right", None)
    originals = [Item(n, d, n, n, "original") for n, d in real.items()]
    originals += [Item(n, d, n, n, "original") for n, d in synthetic_scenes(scene_count).items()]
    later: list[Item] = []
    for original in originals:
        with PILImage.open(io.BytesIO(original.data)) as opened:
            image = opened.convert("RGB")
        for i, (kind, edit, how) in enumerate((*NEAR_EXACT_EDITS, *SIMILAR_EDITS)):
            edited = edit(image) if edit is not None else image
            data = _encode(edited, how, original.data)
            later.append(
                Item(f"{original.name}__{kind}_{i}", data, original.name, original.name, kind)
            )
    if stereo_right is not None:
        later.append(
            Item("motorcycle_right", stereo_right, "motorcycle_right", "motorcycle_left", "stereo")
        )
    for p, (kind, base_width, shot) in enumerate(PANS):
        for n in range(pans_per_kind):
            scene_kind = SCENE_KINDS[n % len(SCENE_KINDS)]
            # Seeds no original uses: each pan pair is a scene of its own.
            base = synthetic_scene(scene_kind, 1000 + 100 * p + n, (base_width, 480))
            scene = f"{kind}_{scene_kind}_{n}"
            for side, box in (
                ("a", (0, 0, shot, 480)),
                ("b", (base_width - shot, 0, base_width, 480)),
            ):
                buffer = io.BytesIO()
                base.crop(box).save(buffer, format="PNG", compress_level=1)
                item = Item(f"{scene}_{side}", buffer.getvalue(), f"{scene}_{side}", scene, kind)
                # The first shot is an original (nothing to copy), the second comes later.
                (originals if side == "a" else later).append(item)
    return originals, later


def evaluate_quality(
    model: str, models_dir: Path | None, scene_count: int, pans: int, geometric: bool = True
) -> dict[str, Any]:
    originals, later = build_items(scene_count, pans)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            model=model,
            model_cache_dir=models_dir,
            model_download=False,
            auth="off",
            nsfw=False,
            _env_file=None,  # type: ignore[call-arg]
        )
        with Lookalike(settings) as rt:
            collection = svc.create_collection(rt, "eval", "eval", model=model)
            if not geometric:  # the pHash-and-cosine rule alone, as before the evidence
                collection = svc.update_collection(
                    rt, "eval", collection.id, dedup={"geometric_check": False}
                )
            started = time.perf_counter()
            # Originals first: each copy's verdict can then name its original.
            for batch in (originals, later):
                rt.ingest.add_many(
                    collection,
                    [
                        (NewRecord(name=i.name, owner="eval"), IngestFile(i.data, i.name))
                        for i in batch
                    ],
                    wait=True,
                )
                rt.enrichment.wait_idle(1800)
            ingest_s = time.perf_counter() - started
            with rt.catalog.session() as session:
                rows = session.execute(
                    Image.__table__.select()
                    .with_only_columns(
                        Image.id, Image.phash, Image.duplicate_tier, Image.duplicate_of, Record.name
                    )
                    .join_from(Image, Record, Image.record_id == Record.id)
                ).all()
            truth = {i.name: i for i in (*originals, *later)}
            info = {
                r.id: {
                    "item": truth[r.name],
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
            clusters = [(c.tier, [m.image_id for m in c.members]) for c in swept.clusters]
            # A second sweep reuses the stored measurements.
            started = time.perf_counter()
            run_sweep(rt, collection)
            resweep_s = time.perf_counter() - started
    return {
        "model": model,
        "photographs": sum(1 for i in originals if i.scene == i.photo),
        "images": len(info),
        "ingest_s": ingest_s,
        "sweep_s": sweep_s,
        "resweep_s": resweep_s,
        "sweep_stats": swept.stats,
        "thresholds": thresholds,
        "info": info,
        "vectors": vectors,
        "clusters": clusters,
    }


def _relation(a: Item, b: Item) -> str:
    """ "photo" (one photograph), "shots" (two shots of one scene) or "different"."""
    if a.photo == b.photo:
        return "photo"
    if a.scene == b.scene:
        return "shots"
    return "different"


def report_quality(result: dict[str, Any]) -> bool:
    info, thresholds = result["info"], result["thresholds"]
    item = {image_id: v["item"] for image_id, v in info.items()}
    id_of = {v["item"].name: image_id for image_id, v in info.items()}
    near_kinds = sorted({k for k, _, _ in NEAR_EXACT_EDITS})
    similar_kinds = sorted({k for k, _, _ in SIMILAR_EDITS})
    shot_kinds = ["stereo", *(k for k, _, _ in PANS)]
    print(
        f"model {result['model']}: {result['images']} images; {result['photographs']} "
        f"photographs with {len(near_kinds)} near-exact and {len(similar_kinds)} similar edit "
        f"kinds; second shots: {', '.join(shot_kinds)}"
    )
    print(f"thresholds {thresholds.as_dict()}")
    print(
        f"ingest + enrichment {result['ingest_s']:.0f} s; sweep {result['sweep_s']:.1f} s "
        f"(again, measurements stored: {result['resweep_s']:.1f} s); "
        f"stats {result['sweep_stats']}\n"
    )

    # Pairs inside a cluster, by tier (a near-exact group's pairs are inside its similar
    # parent too, if it has one).
    near_pairs: set[frozenset[str]] = set()
    any_pairs: set[frozenset[str]] = set()
    for tier, members in result["clusters"]:
        for a, b in combinations(members, 2):
            (near_pairs if tier == "near_exact" else any_pairs).add(frozenset({a, b}))
    any_pairs |= near_pairs

    # --- per edit kind: an original and its copy --------------------------------------
    vectors = result["vectors"]

    def cosine(a: str, b: str) -> float:
        va, vb = vectors[a], vectors[b]
        return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))

    def hamming(a: str, b: str) -> int | None:
        ha, hb = info[a]["phash"], info[b]["phash"]
        return phash_hamming(ha, hb) if ha and hb else None

    print("an original and its copy, by edit kind (verdict: the copy's verdict at ingest names")
    print("its own photograph at that tier; sweep: both in one cluster of that tier):")
    print(
        f"{'edit':<13}{'pairs':>6}{'verdict near':>13}{'sweep near':>11}{'sweep any':>10}"
        f"{'cosine p10':>11}{'p50':>6}{'hamming p50':>12}"
    )
    totals = Counter[str]()
    for kind in [*near_kinds, *similar_kinds]:
        copies = [i for i, it in item.items() if it.kind == kind]
        verdict = sweep_near = sweep_any = 0
        cosines, hammings = [], []
        for c in copies:
            original = id_of[item[c].photo]
            named = info[c]["of"]
            if (
                info[c]["tier"] in ("exact", "near_exact")
                and named
                and item[named].photo == item[c].photo
            ):
                verdict += 1
            pair = frozenset({c, original})
            sweep_near += pair in near_pairs
            sweep_any += pair in any_pairs
            cosines.append(cosine(c, original))
            h = hamming(c, original)
            if h is not None:
                hammings.append(h)
        n = len(copies)
        if kind in near_kinds:
            totals["pairs"] += n
            totals["verdict"] += verdict
            totals["sweep"] += sweep_near
        print(
            f"{kind:<13}{n:>6}{verdict / n:>13.3f}{sweep_near / n:>11.3f}{sweep_any / n:>10.3f}"
            f"{np.percentile(cosines, 10):>11.3f}{np.median(cosines):>6.3f}"
            f"{np.median(hammings) if hammings else float('nan'):>12.1f}"
            + ("   (similar expected)" if kind in similar_kinds else "")
        )
    near_recall_verdict = totals["verdict"] / totals["pairs"]
    near_recall_sweep = totals["sweep"] / totals["pairs"]

    # --- precision of near_exact ------------------------------------------------------
    def wrong(pairs: set[frozenset[str]], relation: str) -> list[tuple[str, str]]:
        out = []
        for pair in pairs:
            a, b = sorted(pair)
            if _relation(item[a], item[b]) == relation:
                out.append((item[a].name, item[b].name))
        return sorted(out)

    near_different = wrong(near_pairs, "different")
    near_shots = wrong(near_pairs, "shots")
    near_precision = 1 - (len(near_different) + len(near_shots)) / max(1, len(near_pairs))
    verdict_wrong = []
    near_verdicts = 0
    for image_id, v in info.items():
        if v["tier"] in ("exact", "near_exact") and v["of"] in item:
            near_verdicts += 1
            if _relation(item[image_id], item[v["of"]]) != "photo":
                verdict_wrong.append((item[image_id].name, item[v["of"]].name))
    verdict_precision = 1 - len(verdict_wrong) / max(1, near_verdicts)
    print(
        f"\nnear_exact precision: sweep {near_precision:.3f} over {len(near_pairs)} pairs "
        f"({len(near_different)} different photos, {len(near_shots)} different shots); "
        f"verdicts {verdict_precision:.3f} over {near_verdicts}"
    )
    for a, b in (near_different + near_shots + verdict_wrong)[:20]:
        print(f"  wrong: {a} ~ {b}")

    # --- different shots ----------------------------------------------------------------
    print("\ndifferent shots of one scene (must be similar, never near_exact):")
    print(
        f"{'shots':<13}{'pairs':>6}{'sweep similar':>14}{'near (wrong)':>13}"
        f"{'verdict similar':>16}{'cosine p50':>11}"
    )
    shot_found = shot_total = 0
    for kind in shot_kinds:
        # The second shot of each scene ("_b"; the first is an original).
        seconds = [i for i, it in item.items() if it.kind == kind and not it.name.endswith("_a")]
        found = near = verdicts = 0
        cosines = []
        for s in seconds:
            # The first shot: the stereo pair's left view, or the pan's "_a".
            first_name = "motorcycle_left" if kind == "stereo" else item[s].name[:-1] + "a"
            first = id_of[first_name]
            pair = frozenset({s, first})
            found += pair in any_pairs and pair not in near_pairs
            near += pair in near_pairs
            named = info[s]["of"]
            verdicts += (
                info[s]["tier"] == "similar"
                and named is not None
                and item[named].scene == item[s].scene
            )
            cosines.append(cosine(s, first))
        n = len(seconds)
        if not n:
            continue
        shot_found += found
        shot_total += n
        print(
            f"{kind:<13}{n:>6}{found / n:>14.3f}{near:>13}{verdicts / n:>16.3f}"
            f"{np.median(cosines):>11.3f}"
        )
    shot_recall = shot_found / max(1, shot_total)

    # --- similar tier precision -----------------------------------------------------------
    similar_only = any_pairs - near_pairs
    similar_wrong = wrong(similar_only, "different")
    other_subject = [p for p in similar_only if len({item[i].subject for i in p}) > 1]
    print(
        f"\nsimilar precision over {len(similar_only)} pairs in a similar cluster: "
        f"{1 - len(similar_wrong) / max(1, len(similar_only)):.3f} if only one photograph or "
        f"scene counts, {1 - len(other_subject) / max(1, len(similar_only)):.3f} if one subject "
        "does (two synthetic landscapes)"
    )

    # --- cosine scan -----------------------------------------------------------------------
    ids = sorted(vectors)
    matrix = np.stack([vectors[i] / np.linalg.norm(vectors[i]) for i in ids])
    scores = matrix @ matrix.T
    upper = np.triu_indices(len(ids), 1)
    photos = np.array([item[i].photo for i in ids])
    scenes = np.array([item[i].scene for i in ids])
    related = (scenes[:, None] == scenes[None, :])[upper]
    subjects = np.array([item[i].subject for i in ids])
    same_subject = (subjects[:, None] == subjects[None, :])[upper]
    same_photo = (photos[:, None] == photos[None, :])[upper]
    values = scores[upper]
    print("\ncosine scan over all pairs (related = one photograph or one scene; subject P: a")
    print("pair of one subject counts as right, e.g. two synthetic landscapes):")
    print(
        f"{'cosine >=':>10}{'precision':>11}{'recall':>8}{'photo R':>9}{'false':>8}"
        f"{'subject P':>11}"
    )
    for cut in (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9):
        chosen = values >= cut
        hits = int((chosen & related).sum())
        precision, recall = hits / max(1, int(chosen.sum())), hits / int(related.sum())
        print(
            f"{cut:>10.2f}{precision:>11.3f}{recall:>8.3f}"
            f"{int((chosen & same_photo).sum()) / int(same_photo.sum()):>9.3f}"
            f"{int((chosen & ~related).sum()):>8}"
            f"{int((chosen & same_subject).sum()) / max(1, int(chosen.sum())):>11.3f}"
        )
    unrelated = np.sort(values[~related])[::-1]
    print(f"highest cosines of unrelated pairs: {[round(float(v), 3) for v in unrelated[:5]]}")

    checks = [
        ("near_exact precision (sweep)", near_precision, ">=", 1.0),
        ("near_exact precision (verdicts)", verdict_precision, ">=", 1.0),
        ("near_exact recall (sweep, all near-exact edits)", near_recall_sweep, ">=", 0.95),
        ("near_exact recall (verdicts)", near_recall_verdict, ">=", 0.95),
        ("similar recall for different shots (sweep)", shot_recall, ">=", 0.9),
    ]
    print()
    passed = True
    for label, value, _, target in checks:
        ok = value >= target - 1e-12
        passed &= ok
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {value:.3f} (target >= {target})")
    return passed


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
    parser.add_argument("--scenes", type=int, default=40, help="synthetic originals")
    parser.add_argument(
        "--no-geometric-check",
        action="store_true",
        help="decide near_exact by the pHash-and-cosine rule alone, for comparison",
    )
    parser.add_argument("--pans", type=int, default=8, help="pan pairs of each overlap")
    parser.add_argument("--scale-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scale_one:
        print(json.dumps(scale_one(args.scale_one, args.dim, seed=args.scale_one)))
        return 0
    if args.scale:
        report_scale([int(x) for x in args.scale.split(",") if x], args.dim)
        return 0
    cache = os.environ.get("LOOKALIKE_MODEL_CACHE_DIR")
    result = evaluate_quality(
        args.model,
        Path(cache) if cache else None,
        args.scenes,
        args.pans,
        geometric=not args.no_geometric_check,
    )
    return 0 if report_quality(result) else 1


if __name__ == "__main__":
    raise SystemExit(main())
