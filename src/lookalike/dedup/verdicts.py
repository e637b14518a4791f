"""The duplicate verdict of a new image: the image already in its collection that it most
likely copies, and the tier. It runs as the `duplicate` enrichment stage, in batches, soon
after the images are searchable: two engine searches per image find the candidates (the
nearest by embedding, and those within the pHash gate), and the geometric check
(`dedup.evidence`) settles the few that could be the same photograph."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Collection as Collection_
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lookalike.catalog import Catalog, Collection, Image, Record
from lookalike.dedup.evidence import PhotoEvidence, pair_of
from lookalike.dedup.tiers import (
    TIERS,
    DedupThresholds,
    Tier,
    needs_match,
    same_scene,
    thresholds_of,
    tier_of,
)
from lookalike.enrichment.runner import EnrichmentRunner, StageBatch
from lookalike.imaging import phash_hamming
from lookalike.imaging.phash_index import candidate_filter
from lookalike.imaging.photo_match import PhotoMatch
from lookalike.ingest.pipeline import DuplicateOf, IngestResult
from lookalike.vectors.base import Filter, HasId, Hit, VectorIndex

log = logging.getLogger(__name__)

VERDICT_CANDIDATES = 48  # nearest images each search looks at
# Candidates per new image that get the geometric check: the most similar by embedding, and
# the closest by pHash (a heavily edited copy may be neither of the first).
MAX_MATCHES = 4
MAX_HASH_MATCHES = 2

# Candidate image ids -> their geometric match with the new image.
MatchCandidates = Callable[[Sequence[str]], Mapping[str, PhotoMatch]]


@dataclass(frozen=True)
class DuplicateVerdict:
    tier: Tier
    image_id: str
    score: float


@dataclass(frozen=True)
class Candidate:
    image_id: str
    cosine: float
    hamming: int | None


class DuplicateStage:
    """The enrichment stage: the duplicate verdict of each new image against its collection."""

    name = "duplicate"

    def __init__(self, catalog: Catalog, vectors: VectorIndex, evidence: PhotoEvidence) -> None:
        self.catalog = catalog
        self.vectors = vectors
        self.evidence = evidence

    def pixels_for(self, collection: Collection) -> int | None:
        # The geometric check reads the originals itself, and only for images that have a
        # candidate: most have none.
        return None

    def needs_vector(self, collection: Collection) -> bool:
        return True

    def run(self, batch: StageBatch) -> Mapping[str, str]:
        collection = batch.collection
        thresholds = thresholds_of(collection)
        verdicts: dict[str, DuplicateVerdict] = {}
        for item in batch.items:
            assert item.vector is not None
            image_id = item.image.id

            def matches(
                candidates: Sequence[str], image_id: str = image_id
            ) -> dict[str, PhotoMatch]:
                found = self.evidence.matches(collection.id, [(image_id, c) for c in candidates])
                return {
                    c: found[pair_of(image_id, c)]
                    for c in candidates
                    if pair_of(image_id, c) in found
                }

            verdict = nearest_duplicate(
                self.vectors,
                collection.id,
                collection.vector_name,
                image_id,
                item.vector,
                item.image.phash,
                thresholds,
                matches,
                lambda ids: copy_groups(self.catalog, ids),
            )
            if verdict is not None:
                verdicts[image_id] = verdict
        if verdicts:
            self._store(verdicts)
        return {}

    def _store(self, verdicts: dict[str, DuplicateVerdict]) -> None:
        def store(session: Session) -> None:
            # The image a verdict points at may have been deleted since the search found it.
            alive = set(
                session.scalars(
                    select(Image.id).where(Image.id.in_({v.image_id for v in verdicts.values()}))
                )
            )
            for image_id, v in verdicts.items():
                if v.image_id in alive:
                    session.execute(
                        update(Image)
                        .where(Image.id == image_id)
                        .values(
                            duplicate_tier=v.tier, duplicate_of=v.image_id, duplicate_score=v.score
                        )
                    )

        self.catalog.retrying(store)


def nearest_duplicate(
    vectors: VectorIndex,
    collection_id: str,
    vector_name: str,
    image_id: str,
    vector: NDArray[np.float32],
    phash: str | None,
    thresholds: DedupThresholds,
    matches: MatchCandidates | None = None,
    groups: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
) -> DuplicateVerdict | None:
    """The strongest-tier image stored before `image_id` (ids are ULIDs, so "before" is
    "smaller id"; two copies in one batch do not point at each other); among equals, one the
    geometry ties to the same scene, then the most similar.

    Candidates are the nearest images by embedding at or above `similar_cosine`, and the
    nearest within the pHash gate whatever their cosine (a heavily blurred copy can sit far
    from its original in embedding space and close in pHash). The MAX_MATCHES most similar of
    them, and the MAX_HASH_MATCHES closest in pHash, get the geometric check through
    `matches`; a candidate left unchecked can be no more than similar. `groups` names the
    copy group of stored images (`copy_groups`): the checks go to the most similar image of
    each group, so twenty copies of one photo do not crowd out another shot of the scene.
    Without `matches` (no pixels to compare) the pHash-and-cosine rule decides.
    """
    candidates = [
        c
        for c in duplicate_candidates(
            vectors, collection_id, vector_name, image_id, vector, phash, thresholds
        )
        if c.image_id < image_id
    ]
    group_of = groups([c.image_id for c in candidates]) if groups and candidates else {}
    checkable = [c for c in candidates if needs_match(c.cosine, c.hamming, thresholds)]
    by_cosine = distinct_groups(sorted(checkable, key=lambda c: -c.cosine), group_of, MAX_MATCHES)
    by_hash = sorted(
        (c for c in checkable if c.hamming is not None and c.hamming <= thresholds.phash_gate),
        key=lambda c: (c.hamming, -c.cosine),
    )[:MAX_HASH_MATCHES]
    checked = {c.image_id for c in (*by_cosine, *by_hash)}
    found = matches(sorted(checked)) if matches is not None and checked else {}
    best: tuple[tuple[int, bool, float], Candidate, Tier] | None = None
    for c in candidates:
        match = found.get(c.image_id)
        if matches is not None and c in checkable and c.image_id not in checked:
            tier: Tier | None = "similar" if c.cosine >= thresholds.similar_cosine else None
        else:
            tier = tier_of(c.cosine, c.hamming, thresholds, match)
        if tier is None:
            continue
        key = (-TIERS.index(tier), same_scene(match, thresholds), c.cosine)
        if best is None or key > best[0]:
            best = (key, c, tier)
    if best is None:
        return None
    _, chosen, tier = best
    return DuplicateVerdict(tier, chosen.image_id, round(chosen.cosine, 6))


def distinct_groups(
    candidates: Sequence[Candidate], group_of: Mapping[str, str], limit: int
) -> list[Candidate]:
    """The first candidate of each copy group, in order, up to `limit` groups."""
    seen: set[str] = set()
    out = []
    for c in candidates:
        group = group_of.get(c.image_id, c.image_id)
        if group not in seen:
            seen.add(group)
            out.append(c)
            if len(out) == limit:
                break
    return out


def copy_groups(catalog: Catalog, image_ids: Sequence[str]) -> dict[str, str]:
    """Image id -> the image its near-exact or exact verdict names (itself when it has none):
    copies of one photo share a key, as far as the verdicts at ingest tell."""
    out: dict[str, str] = {}
    with catalog.session() as session:
        for start in range(0, len(image_ids), 500):
            chunk = list(image_ids[start : start + 500])
            for image_id, tier, of in session.execute(
                select(Image.id, Image.duplicate_tier, Image.duplicate_of).where(
                    Image.id.in_(chunk)
                )
            ):
                out[image_id] = (
                    of if of is not None and tier in ("exact", "near_exact") else image_id
                )
    return out


def duplicate_candidates(
    vectors: VectorIndex,
    collection_id: str,
    vector_name: str,
    image_id: str,
    vector: NDArray[np.float32],
    phash: str | None,
    thresholds: DedupThresholds,
) -> list[Candidate]:
    """The images that could be duplicates of `image_id`, with their cosine and pHash
    distance: the nearest by embedding (cosine >= `similar_cosine`) and the nearest within
    the pHash gate."""
    not_itself = (HasId((image_id,)),)
    hits: dict[str, Hit] = {
        hit.id: hit
        for hit in vectors.search(
            collection_id,
            vector_name,
            vector,
            limit=VERDICT_CANDIDATES,
            query_filter=Filter(must_not=not_itself),
            score_threshold=thresholds.similar_cosine,
            with_payload=True,
        )
    }
    if phash is not None:
        gate = candidate_filter(phash, thresholds.phash_gate)
        for hit in vectors.search(
            collection_id,
            vector_name,
            vector,
            limit=VERDICT_CANDIDATES,
            query_filter=Filter(should=gate.should, must_not=not_itself),
            with_payload=True,
        ):
            hits.setdefault(hit.id, hit)
    out = []
    for hit in hits.values():
        other = (hit.payload or {}).get("phash")
        hamming = phash_hamming(other, phash) if other and phash else None
        if hit.score >= thresholds.similar_cosine or (
            hamming is not None and hamming <= thresholds.phash_gate
        ):
            out.append(Candidate(hit.id, float(hit.score), hamming))
    return out


def records_of(catalog: Catalog, image_ids: Collection_[str]) -> dict[str, tuple[str, str]]:
    """Image id -> (its record's id, the record's name), for the images that exist."""
    if not image_ids:
        return {}
    with catalog.session() as session:
        return {
            image_id: (record_id, name)
            for image_id, record_id, name in session.execute(
                select(Image.id, Record.id, Record.name)
                .join(Record, Record.id == Image.record_id)
                .where(Image.id.in_(list(image_ids)))
            )
        }


def with_verdicts(
    enrichment: EnrichmentRunner,
    catalog: Catalog,
    results: Sequence[IngestResult],
    *,
    run: bool = True,
) -> list[IngestResult]:
    """`results` with each one's duplicate verdict and the record it points at. With `run`
    the added images' `duplicate` stage is run now (one engine search each) rather than left
    to the background, for a caller that waits for its upload anyway (and so its images are
    embedded); without, only verdicts already made are told. A re-uploaded file's record is
    named either way."""
    if run:
        added = [r.image_id for r in results if r.status == "added" and r.image_id]
        enrichment.run_now(added, [DuplicateStage.name])
    ids = [r.image_id for r in results if r.image_id and r.status in ("added", "duplicate")]
    if not ids:
        return list(results)
    with catalog.session() as session:
        verdicts = {
            row.id: row
            for row in session.execute(
                select(
                    Image.id,
                    Image.duplicate_tier,
                    Image.duplicate_of,
                    Image.duplicate_score,
                ).where(Image.id.in_(ids), Image.duplicate_of.is_not(None))
            )
        }
    pointed = {v.duplicate_of for v in verdicts.values()} | {
        r.image_id for r in results if r.status == "duplicate" and r.image_id
    }
    records = records_of(catalog, pointed)
    out = []
    for r in results:
        found: DuplicateOf | None = None
        if r.status == "duplicate" and r.image_id in records:
            record_id, name = records[r.image_id]
            found = DuplicateOf("exact", r.image_id, 1.0, record_id, name)
        elif r.image_id in verdicts and verdicts[r.image_id].duplicate_of in records:
            v = verdicts[r.image_id]
            record_id, name = records[v.duplicate_of]
            found = DuplicateOf(
                v.duplicate_tier, v.duplicate_of, v.duplicate_score or 0.0, record_id, name
            )
        out.append(replace(r, duplicate_of=found) if found else r)
    return out
