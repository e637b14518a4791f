"""The duplicate verdict of a new image: the nearest image already in its collection and its
tier, from one filtered engine search per image (no full pass). It runs as the `duplicate`
enrichment stage, in batches, soon after the images are searchable."""

from __future__ import annotations

import logging
from collections.abc import Collection as Collection_
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lookalike.catalog import Catalog, Collection, Image, Record
from lookalike.dedup.tiers import DedupThresholds, Tier, thresholds_of
from lookalike.enrichment.runner import EnrichmentRunner, StageBatch
from lookalike.imaging import phash_hamming
from lookalike.imaging.phash_index import candidate_filter
from lookalike.ingest.pipeline import DuplicateOf, IngestResult
from lookalike.vectors.base import Filter, HasId, Hit, VectorIndex

log = logging.getLogger(__name__)

VERDICT_CANDIDATES = 16  # nearest images the verdict at ingest looks at


@dataclass(frozen=True)
class DuplicateVerdict:
    tier: Tier
    image_id: str
    score: float


class DuplicateStage:
    """The enrichment stage: the duplicate verdict of each new image against its collection."""

    name = "duplicate"

    def __init__(self, catalog: Catalog, vectors: VectorIndex) -> None:
        self.catalog = catalog
        self.vectors = vectors

    def pixels_for(self, collection: Collection) -> int | None:
        return None

    def needs_vector(self, collection: Collection) -> bool:
        return True

    def run(self, batch: StageBatch) -> Mapping[str, str]:
        collection = batch.collection
        thresholds = thresholds_of(collection)
        verdicts: dict[str, DuplicateVerdict] = {}
        for item in batch.items:
            assert item.vector is not None
            verdict = nearest_duplicate(
                self.vectors,
                collection.id,
                collection.vector_name,
                item.image.id,
                item.vector,
                item.image.phash,
                thresholds,
            )
            if verdict is not None:
                verdicts[item.image.id] = verdict
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
) -> DuplicateVerdict | None:
    """The strongest-tier, then most similar, image stored before `image_id` (ids are ULIDs,
    so "before" is "smaller id"; two copies in one batch do not point at each other).

    A near-exact copy has a cosine of at least `near_exact_cosine`, so it is among the nearest
    images by embedding: one search for them, with their pHashes, decides. Only when all of
    them are that close (a crowd of look-alikes) does a second search go through the pHash
    gate's index.
    """
    not_itself = (HasId((image_id,)),)

    def near_exact_among(hits: list[Hit]) -> DuplicateVerdict | None:
        for hit in hits:
            other = (hit.payload or {}).get("phash")
            if (
                phash is not None
                and hit.id < image_id
                and hit.score >= thresholds.near_exact_cosine
                and other
                and phash_hamming(other, phash) <= thresholds.phash_gate
            ):
                return DuplicateVerdict("near_exact", hit.id, round(hit.score, 6))
        return None

    hits = vectors.search(
        collection_id,
        vector_name,
        vector,
        limit=VERDICT_CANDIDATES,
        query_filter=Filter(must_not=not_itself),
        score_threshold=thresholds.similar_cosine,
        with_payload=True,
    )
    verdict = near_exact_among(hits)
    if verdict is not None:
        return verdict
    crowded = len(hits) == VERDICT_CANDIDATES and hits[-1].score >= thresholds.near_exact_cosine
    if crowded and phash is not None:
        gate = candidate_filter(phash, thresholds.phash_gate)
        verdict = near_exact_among(
            vectors.search(
                collection_id,
                vector_name,
                vector,
                limit=VERDICT_CANDIDATES,
                query_filter=Filter(should=gate.should, must_not=not_itself),
                score_threshold=thresholds.near_exact_cosine,
                with_payload=True,
            )
        )
        if verdict is not None:
            return verdict
    for hit in hits:
        if hit.id < image_id:
            return DuplicateVerdict("similar", hit.id, round(hit.score, 6))
    return None


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
