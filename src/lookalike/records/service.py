"""Collections and records: the changes that span catalog, vector engine and blob store."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from lookalike.catalog import Catalog, Collection, Image, ImageStage, Record
from lookalike.catalog.record_fields import check_record_fields
from lookalike.catalog.repository import (
    get_collection,
    get_record,
    list_collections,
    record_conditions,
)
from lookalike.core.config import Settings
from lookalike.core.errors import (
    Conflict,
    ImageNotFound,
    InvalidInput,
    LookalikeError,
    NoImageAdded,
)
from lookalike.dedup.tiers import model_thresholds
from lookalike.embedding import Models
from lookalike.embedding.base import Embedder
from lookalike.embedding.crops import crops_vector_name
from lookalike.embedding.fallback import CHAIN_KEY, ChainModel, chain_names
from lookalike.embedding.late_interaction import patches_vector_name
from lookalike.ingest.payload import PAYLOAD_INDEXES
from lookalike.ingest.pipeline import (
    IngestFile,
    IngestPipeline,
    IngestResult,
    NewRecord,
    raise_if_unavailable,
)
from lookalike.storage.base import BlobStore
from lookalike.vectors.base import IndexSettings, VectorIndex, VectorSpec


class Services(Protocol):
    """What the feature services work with: the stores, the models, the ingest pipeline.

    Declared here so that no service depends on how they are put together: the composition
    root's `Lookalike` is one, and a test can hand over a smaller object of its own.
    """

    settings: Settings
    catalog: Catalog
    blobs: BlobStore
    vectors: VectorIndex
    ingest: IngestPipeline
    collection_cache: CollectionCache
    models: Models


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,127}$")


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidInput(
            "a collection name is 1-128 letters, digits, spaces, '.', '_' or '-', "
            "starting with a letter or digit"
        )


@dataclass(frozen=True)
class VectorOptions:
    hnsw_m: int | None = None
    hnsw_ef_construct: int | None = None
    quantization: Literal["none", "int8"] | None = None
    # Also store crop embeddings (embedding/crops.py): part-of-image search, 7x the model work.
    use_crops: bool = False
    # OCR after ingest (rag/ocr.py): "pages" without a text layer, "all" images; None: settings.
    ocr: Literal["off", "pages", "all"] | None = None
    # Models that embed images while the collection's model is down, in order, each into a
    # named vector of its own (embedding/fallback.py); the same as `model="doubao>clip>offline"`.
    fallback: tuple[str, ...] = ()


def create_collection(
    rt: Services,
    tenant: str,
    name: str,
    *,
    description: str = "",
    model: str | None = None,
    options: VectorOptions | None = None,
) -> Collection:
    """A new collection embedded with `model` (default: the configured model, or the offline
    fallback when it cannot be had)."""
    _check_name(name)
    opts = options or VectorOptions()
    # A fallback chain (`doubao>clip>offline`): its first model is the collection's.
    chain = chain_names(rt.settings, model, opts.fallback)
    model = chain[0] if chain else model
    embedder = rt.models.get(model) if model else rt.models.default()
    fallbacks = _fallback_embedders(rt, embedder, chain[1:], opts)
    if embedder.multivector and opts.use_crops:
        raise InvalidInput(
            f"use_crops is for one-vector models: {embedder.name} is a late-interaction model, "
            "whose patch vectors match parts of images already"
        )
    index = IndexSettings(
        hnsw_m=opts.hnsw_m or rt.settings.hnsw_m,
        hnsw_ef_construct=opts.hnsw_ef_construct or rt.settings.hnsw_ef_construct,
        quantization=opts.quantization or rt.settings.quantization,
        indexing_threshold=rt.settings.indexing_threshold,
    )
    collection = Collection(
        tenant=tenant,
        name=name,
        description=description,
        model=embedder.name,
        model_id=embedder.model_id,
        vector_name=embedder.vector_name,
        dim=embedder.dim,
        vector_settings={
            "hnsw_m": index.hnsw_m,
            "hnsw_ef_construct": index.hnsw_ef_construct,
            "quantization": index.quantization,
            "distance": "cosine",
            "use_crops": opts.use_crops,
            "ocr": opts.ocr or rt.settings.ocr,
            # Patch multivectors beside the pooled vector (embedding/late_interaction.py).
            "late_interaction": embedder.multivector,
        },
    )
    if fallbacks:
        collection.vector_settings[CHAIN_KEY] = [
            ChainModel(e.name, e.model_id, e.vector_name, e.dim).to_json()
            for e in (embedder, *fallbacks)
        ]
    try:
        with rt.catalog.session() as session:
            session.add(collection)
    except IntegrityError:
        raise Conflict(f"a collection named {name!r} exists already") from None
    specs = [VectorSpec(name=embedder.vector_name, dim=embedder.dim)]
    specs += [VectorSpec(name=e.vector_name, dim=e.dim) for e in fallbacks]
    if opts.use_crops:
        crops = crops_vector_name(embedder.vector_name)
        specs.append(VectorSpec(name=crops, dim=embedder.dim, multivector=True))
    if embedder.multivector:
        patches = patches_vector_name(embedder.vector_name)
        specs.append(VectorSpec(name=patches, dim=embedder.dim, multivector=True))
    rt.vectors.create_collection(collection.id, specs, index, PAYLOAD_INDEXES)
    return collection


def _fallback_embedders(
    rt: Services, first: Embedder, names: Sequence[str], opts: VectorOptions
) -> list[Embedder]:
    """The fallback models of a new chain, loaded (a model that cannot be had fails the
    creation now rather than the first outage later)."""
    if not names:
        return []
    if opts.use_crops:
        raise InvalidInput("use_crops cannot be combined with a fallback chain")
    embedders = [rt.models.get(n) for n in names]
    for embedder in (first, *embedders):
        if embedder.multivector:
            raise InvalidInput(
                f"{embedder.name} is a late-interaction model, which a fallback chain cannot hold"
            )
    if len({e.vector_name for e in (first, *embedders)}) != len(embedders) + 1:
        raise InvalidInput("the models of a fallback chain must be different models")
    return embedders


def get_or_create_collection(rt: Services, tenant: str, name: str) -> Collection:
    with rt.catalog.session() as session:
        found = session.scalars(
            select(Collection).where(Collection.tenant == tenant, Collection.name == name)
        ).first()
    return found if found is not None else create_collection(rt, tenant, name)


# Every search resolves its collection; they change rarely. Entries live this long, so another
# replica's rename or delete is seen within it; this process's own changes clear the cache.
_COLLECTION_TTL_S = 5.0


class CollectionCache:
    """(tenant, id or name) -> collection, for a few seconds; safe across request threads.

    A lookup that read the catalog before a change and stores its answer after the change's
    `clear()` must not put the old collection back: each `clear()` starts a new generation, and
    an answer read in an older generation is not stored.
    """

    def __init__(self, ttl_s: float = _COLLECTION_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[float, Collection]] = {}
        self._generation = 0

    def get(self, key: tuple[str, str]) -> tuple[Collection | None, int]:
        """The cached collection (or None) and the generation to pass to `put`."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > time.monotonic():
                return entry[1], self._generation
            return None, self._generation

    def put(self, key: tuple[str, str], collection: Collection, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._entries[key] = (time.monotonic() + self.ttl_s, collection)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1


def find_collection(rt: Services, tenant: str, id_or_name: str) -> Collection:
    key = (tenant, id_or_name)
    cached, generation = rt.collection_cache.get(key)
    if cached is not None:
        return cached
    with rt.catalog.session() as session:
        collection = get_collection(session, tenant, id_or_name)
    rt.collection_cache.put(key, collection, generation)
    return collection


def all_collections(rt: Services, tenant: str) -> Sequence[Collection]:
    with rt.catalog.session() as session:
        return list_collections(session, tenant)


def collection_counts(rt: Services, collection_id: str) -> dict[str, int]:
    """Records, images by status, and images whose enrichment is not finished."""
    with rt.catalog.session() as session:
        enriching = session.scalar(
            select(func.count(func.distinct(ImageStage.image_id))).where(
                ImageStage.collection_id == collection_id,
                ImageStage.status.in_(("pending", "running")),
            )
        )
        records = session.scalar(
            select(func.count()).select_from(Record).where(Record.collection_id == collection_id)
        )
        by_status = dict(
            session.execute(
                select(Image.status, func.count())
                .where(Image.collection_id == collection_id)
                .group_by(Image.status)
            ).all()
        )
    return {
        "records": int(records or 0),
        "images": sum(int(v) for v in by_status.values()),
        **{f"images_{k}": int(v) for k, v in by_status.items()},
        "images_enriching": int(enriching or 0),
    }


def update_collection(
    rt: Services,
    tenant: str,
    id_or_name: str,
    *,
    name: str | None = None,
    description: str | None = None,
    dedup: dict[str, Any] | None = None,
) -> Collection:
    """Rename a collection, change its description or its duplicate thresholds (its model and
    vectors stay)."""
    if name is not None:
        _check_name(name)
    try:
        with rt.catalog.session() as session:
            collection = get_collection(session, tenant, id_or_name)
            if name is not None:
                collection.name = name
            if description is not None:
                collection.description = description
            if dedup is not None:
                stored = {**(collection.vector_settings or {}).get("dedup", {}), **dedup}
                # Checked against the model's defaults so a bad combination is refused now.
                model_thresholds(collection.model).merged(stored)
                collection.vector_settings = {**(collection.vector_settings or {}), "dedup": stored}
    except IntegrityError:
        raise Conflict(f"a collection named {name!r} exists already") from None
    rt.collection_cache.clear()
    return collection


def delete_collection(rt: Services, tenant: str, id_or_name: str) -> None:
    """Remove the collection, its records, vectors and the blobs no other image uses."""
    with rt.catalog.session() as session:
        collection = get_collection(session, tenant, id_or_name)
        keys = _blob_keys(session, Image.collection_id == collection.id)
        session.delete(collection)
        cid = collection.id
    rt.collection_cache.clear()
    rt.vectors.drop_collection(cid)
    _delete_unused_blobs(rt, keys)


def create_record(
    rt: Services,
    collection: Collection,
    *,
    name: str,
    owner: str,
    description: str = "",
    tags: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> Record:
    check_record_fields(
        name=name, description=description, owner=owner, tags=tags, metadata=extra or {}
    )
    record = Record(
        collection_id=collection.id,
        name=name,
        description=description,
        tags=sorted(set(tags)),
        extra=extra or {},
        owner=owner,
    )
    with rt.catalog.session() as session:
        session.add(record)
    return record


def create_record_with_images(
    rt: Services,
    collection: Collection,
    files: Sequence[IngestFile],
    *,
    name: str,
    owner: str,
    description: str = "",
    tags: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
    wait: bool = False,
) -> tuple[Record, list[IngestResult]]:
    """A record made together with its first added image, in one transaction: when no image can
    be added (all refused or already stored), no record is made and the error says why. With no
    files at all, an empty record (images are added later)."""
    if not files:
        empty = create_record(
            rt, collection, name=name, owner=owner, description=description, tags=tags, extra=extra
        )
        return find_record(rt, collection.tenant, empty.id), []
    target = NewRecord(
        name=name,
        owner=owner,
        description=description,
        tags=tuple(sorted(set(tags))),
        extra=extra or {},
    )
    results = rt.ingest.add(collection, target, files, wait=wait, block=False)
    raise_if_unavailable(results)
    added = next((r for r in results if r.status == "added" and r.record_id), None)
    if added is None:
        reasons = "; ".join(
            f"{r.filename or 'a file'}: "
            + (
                r.reason or "refused"
                if r.status == "rejected"
                else f"stored already as image {r.image_id} of record {r.record_id}"
            )
            for r in results
        )
        if all(r.status == "duplicate" for r in results):
            raise Conflict(
                f"no record was made: every image is in the collection already ({reasons})"
            )
        raise NoImageAdded(f"no record was made: none of the images could be added ({reasons})")
    assert added.record_id is not None
    return find_record(rt, collection.tenant, added.record_id), results


def update_record(
    rt: Services,
    tenant: str,
    record_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    tags: Sequence[str] | None = None,
    extra: dict[str, Any] | None = None,
    owner: str | None = None,
) -> Record:
    """Change a record's fields; tags and owner are mirrored into its images' vector payloads."""
    check_record_fields(name=name, description=description, owner=owner, tags=tags, metadata=extra)
    with rt.catalog.session() as session:
        record = get_record(session, tenant, record_id)
        if name is not None:
            record.name = name
        if description is not None:
            record.description = description
        if tags is not None:
            record.tags = sorted(set(tags))
        if extra is not None:
            record.extra = extra
        if owner is not None:
            record.owner = owner
        image_ids = [i.id for i in record.images if i.status == "embedded"]
        payload = {"tags": list(record.tags), "owner": record.owner}
        collection_id = record.collection_id
    if image_ids and (tags is not None or owner is not None):
        rt.vectors.set_payload(collection_id, image_ids, payload)
    return find_record(rt, tenant, record_id)


def remove_image(rt: Services, tenant: str, record_id: str, image_id: str) -> None:
    """Take one image out of a record (and out of search)."""
    with rt.catalog.session() as session:
        record = get_record(session, tenant, record_id)
        if image_id not in {i.id for i in record.images}:
            raise ImageNotFound(f"record {record_id!r} has no image {image_id!r}")
        collection_id = record.collection_id
    delete_images(rt, collection_id, [image_id])


def delete_record(rt: Services, tenant: str, record_id: str) -> None:
    with rt.catalog.session() as session:
        record = get_record(session, tenant, record_id)
        image_ids = [i.id for i in record.images]
        keys = _blob_keys(session, Image.record_id == record.id)
        collection_id = record.collection_id
        session.delete(record)
    rt.vectors.delete(collection_id, image_ids)
    _delete_unused_blobs(rt, keys)


def delete_images(rt: Services, collection_id: str, image_ids: Sequence[str]) -> None:
    """Remove images (catalog rows, vectors, blobs nothing else uses) from a collection."""
    if not image_ids:
        return
    where = (Image.collection_id == collection_id) & Image.id.in_(image_ids)
    with rt.catalog.session() as session:
        keys = _blob_keys(session, where)
        for image in session.scalars(select(Image).where(where)).all():
            session.delete(image)
    rt.vectors.delete(collection_id, image_ids)
    _delete_unused_blobs(rt, keys)


def _blob_keys(session: Any, where: Any) -> set[str]:
    rows = session.execute(select(Image.blob_key, Image.thumbnail_key).where(where)).all()
    return {k for row in rows for k in row if k}


def _delete_unused_blobs(rt: Services, keys: set[str]) -> None:
    """Blobs are shared by content across collections: drop only those nothing references."""
    if not keys:
        return

    def referenced(candidates: set[str]) -> set[str]:
        with rt.catalog.session() as session:
            return _blob_keys(
                session,
                Image.blob_key.in_(candidates) | Image.thumbnail_key.in_(candidates),
            )

    rt.blobs.delete_unreferenced(keys, referenced)


def supports_text(rt: Services, collection: Collection) -> bool:
    """Whether the collection's model can embed text (False when the model is not installed)."""
    try:
        return rt.models.for_collection(collection).supports_text
    except LookalikeError:
        return False


def list_records(
    rt: Services,
    collection: Collection,
    *,
    limit: int = 50,
    offset: int = 0,
    query: str | None = None,
    owner: str | None = None,
    tag: str | None = None,
) -> tuple[list[Record], int]:
    """A page of the collection's records, newest first, and the total count."""
    where = record_conditions(collection.id, name_contains=query, owner=owner, tag=tag)
    with rt.catalog.session() as session:
        total = session.scalar(select(func.count()).select_from(Record).where(*where)) or 0
        rows = session.scalars(
            select(Record)
            .where(*where)
            .order_by(Record.created_at.desc(), Record.id.desc())
            .limit(limit)
            .offset(offset)
            .options(selectinload(Record.images))
        ).all()
    return list(rows), int(total)


def find_record(rt: Services, tenant: str, record_id: str) -> Record:
    with rt.catalog.session() as session:
        record = get_record(session, tenant, record_id)
        _ = record.images  # loaded while the session is open
        return record
