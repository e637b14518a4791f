"""The geometric evidence behind near-exact verdicts: whether two stored images are one
photograph (`imaging.photo_match`), measured when a verdict or a sweep first asks and kept in
the catalog (`ImagePairMatch`), so that later sweeps reuse it.

Measuring needs both images' pixels: each original is read from the blob store and decoded at
the matching size once, and its features stay in a small in-memory cache while a verdict batch
or a sweep works through its candidate pairs. Most images have no near-exact candidate and are
never decoded here.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError

from lookalike.catalog import Catalog, Image
from lookalike.catalog.models import ImagePairMatch
from lookalike.core.config import Settings
from lookalike.core.timing import timed
from lookalike.imaging import decode_stored
from lookalike.imaging.photo_match import (
    MATCH_SIDE,
    PhotoFeatures,
    PhotoMatch,
    match_photos,
    photo_features,
)
from lookalike.storage.base import BlobStore

log = logging.getLogger(__name__)

# The measurement's version: raise it when `imaging.photo_match` measures differently, and
# stored rows of the old one are measured again.
METHOD = 1
_CACHED_FEATURES = 512  # about 50 kB each

Pair = tuple[str, str]  # image ids, smaller first


def pair_of(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


class PhotoEvidence:
    """Measures and remembers whether pairs of stored images are one photograph. Safe to use
    from several threads (the enrichment runner and a sweep job)."""

    def __init__(self, settings: Settings, catalog: Catalog, blobs: BlobStore) -> None:
        self.settings = settings
        self.catalog = catalog
        self.blobs = blobs
        self._features: OrderedDict[str, PhotoFeatures | None] = OrderedDict()
        self._lock = threading.Lock()

    def matches(self, collection_id: str, pairs: Iterable[Pair]) -> dict[Pair, PhotoMatch]:
        """The match of each pair (ids in either order; keys come back smaller id first). A pair
        whose image cannot be read (deleted meanwhile, a broken original) is left out."""
        wanted = sorted({pair_of(a, b) for a, b in pairs if a != b})
        if not wanted:
            return {}
        found = self._stored(wanted)
        missing = [p for p in wanted if p not in found]
        if missing:
            measured = self._measure(missing)
            self._store(collection_id, measured)
            found.update(measured)
        return found

    def _stored(self, pairs: list[Pair]) -> dict[Pair, PhotoMatch]:
        out: dict[Pair, PhotoMatch] = {}
        with self.catalog.session() as session:
            for start in range(0, len(pairs), 500):
                chunk = pairs[start : start + 500]
                rows = session.scalars(
                    select(ImagePairMatch).where(
                        tuple_(ImagePairMatch.image_a, ImagePairMatch.image_b).in_(chunk),
                        ImagePairMatch.method == METHOD,
                    )
                )
                for row in rows:
                    out[(row.image_a, row.image_b)] = PhotoMatch(
                        keypoints=row.keypoints,
                        matches=row.matches,
                        inliers=row.inliers,
                        overlap=row.overlap,
                        containment=row.containment,
                        correlation=row.correlation,
                        same_pixels=row.same_pixels,
                        second_plane=row.second_plane,
                        spread=row.spread,
                    )
        return out

    def _measure(self, pairs: list[Pair]) -> dict[Pair, PhotoMatch]:
        out: dict[Pair, PhotoMatch] = {}
        for a, b in pairs:
            first, second = self._features_of(a), self._features_of(b)
            if first is None or second is None:
                continue
            with timed("dedup", "photo_match"):
                out[(a, b)] = match_photos(first, second)
        return out

    def _features_of(self, image_id: str) -> PhotoFeatures | None:
        with self._lock:
            if image_id in self._features:
                self._features.move_to_end(image_id)
                return self._features[image_id]
        features = self._load(image_id)
        with self._lock:
            self._features[image_id] = features
            while len(self._features) > _CACHED_FEATURES:
                self._features.popitem(last=False)
        return features

    def _load(self, image_id: str) -> PhotoFeatures | None:
        with self.catalog.session() as session:
            blob_key = session.scalar(select(Image.blob_key).where(Image.id == image_id))
        if not blob_key:
            return None
        try:
            with timed("dedup", "decode"):
                decoded = decode_stored(
                    self.blobs.get(blob_key), self.settings, reduce_for=MATCH_SIDE
                )
            with timed("dedup", "photo_features"):
                return photo_features(decoded.image, (decoded.width, decoded.height))
        except Exception as exc:  # a missing or broken original: no evidence, not a failure
            log.warning("cannot read image %s for the duplicate check: %s", image_id, exc)
            return None

    def _store(self, collection_id: str, measured: Mapping[Pair, PhotoMatch]) -> None:
        if not measured:
            return
        try:
            with self.catalog.session() as session:
                alive = set(
                    session.scalars(
                        select(Image.id).where(Image.id.in_({i for p in measured for i in p}))
                    )
                )
                for (a, b), match in measured.items():
                    if a in alive and b in alive:
                        session.merge(_row(collection_id, a, b, match))
        except IntegrityError:
            # An image deleted between the read and the commit: the measurements are a cache,
            # the next verdict or sweep measures what is still missing.
            log.debug("photo matches not stored: an image went away meanwhile")


def _row(collection_id: str, a: str, b: str, match: PhotoMatch) -> ImagePairMatch:
    return ImagePairMatch(
        image_a=a,
        image_b=b,
        collection_id=collection_id,
        method=METHOD,
        keypoints=match.keypoints,
        matches=match.matches,
        inliers=match.inliers,
        overlap=match.overlap,
        containment=match.containment,
        correlation=match.correlation,
        second_plane=match.second_plane,
        spread=match.spread,
        same_pixels=match.same_pixels,
    )
