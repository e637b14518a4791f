"""The records service on the stores it declares (`records.service.Services`), without a runtime:
no ingest threads, no job runner, no enrichment."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from lookalike.catalog import Catalog, Record
from lookalike.core.config import Settings
from lookalike.embedding import Models
from lookalike.ingest.pipeline import IngestPipeline
from lookalike.records.service import (
    CollectionCache,
    create_collection,
    create_record,
    delete_collection,
    find_collection,
    update_collection,
)
from lookalike.storage.base import BlobStore
from lookalike.storage.local import LocalBlobStore
from lookalike.vectors.base import VectorIndex
from lookalike.vectors.qdrant_edge import QdrantEdgeIndex


@dataclass
class Stores:
    """Just what the service says it needs."""

    settings: Settings
    catalog: Catalog
    blobs: BlobStore
    vectors: VectorIndex
    ingest: IngestPipeline = field(init=False)
    models: Models = field(init=False)
    collection_cache: CollectionCache = field(default_factory=CollectionCache)

    def __post_init__(self) -> None:
        self.models = Models(self.settings)
        # Built, never started: these tests add no images.
        self.ingest = IngestPipeline(
            self.settings, self.catalog, self.blobs, self.vectors, self.models.for_collection
        )


@pytest.fixture
def stores(settings: Settings) -> Iterator[Stores]:
    catalog = Catalog(settings.catalog_url)
    catalog.migrate()
    vectors = QdrantEdgeIndex(settings.vectors_dir)
    try:
        yield Stores(settings, catalog, LocalBlobStore(settings.blobs_dir), vectors)
    finally:
        vectors.close()
        catalog.close()


def test_collections_live_in_catalog_and_vectors(stores: Stores) -> None:
    shop = create_collection(stores, "acme", "shop", description="shoes")
    assert stores.vectors.has_collection(shop.id)
    assert find_collection(stores, "acme", "shop").id == shop.id
    assert find_collection(stores, "acme", shop.id).name == "shop"
    update_collection(stores, "acme", "shop", name="store")
    # The rename is seen at once: this process's own change clears the cache.
    assert find_collection(stores, "acme", "store").id == shop.id
    create_record(stores, shop, name="red shoe", owner="ann", tags=["red"])
    delete_collection(stores, "acme", "store")
    assert not stores.vectors.has_collection(shop.id)
    with stores.catalog.session() as session:
        assert session.scalars(select(Record)).all() == []


def test_collections_are_per_tenant(stores: Stores) -> None:
    create_collection(stores, "acme", "shop")
    create_collection(stores, "globex", "shop")  # the same name in another tenant
    assert (
        find_collection(stores, "acme", "shop").id != find_collection(stores, "globex", "shop").id
    )
