"""Search: look-alikes of an uploaded image, of a stored image, or of a text.

A text is matched in one of three modes: `vector` (the model's text embedding against the image
embeddings), `keyword` (the catalog's full-text index: names, descriptions, tags, page text;
`catalog/fulltext.py`) or `hybrid`, both rankings fused by reciprocal rank. Fusion uses ranks
only: a cosine similarity and a full-text score have no common scale, and the full-text scores
differ by database. A collection whose model embeds images only answers a text in `keyword` or
`hybrid` mode by keyword alone, and says so.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select

from lookalike.catalog import Collection, Image
from lookalike.catalog.fulltext import keyword_index_for
from lookalike.catalog.repository import get_collection, get_image, record_summaries
from lookalike.core.errors import CollectionNotFound, InvalidInput, TextSearchUnavailable
from lookalike.core.timing import timed
from lookalike.embedding.crops import crops_vector_name, uses_crops
from lookalike.embedding.late_interaction import patches_vector_for
from lookalike.imaging import decode_image, phash_hex
from lookalike.imaging.phash_index import MAX_GATE, candidate_filter, within
from lookalike.records.service import Services
from lookalike.search.cache import CacheLookup, SearchKey, search_cache_of
from lookalike.search.fallback import searched_as
from lookalike.search.filters import SearchFilters
from lookalike.search.relevance import QueryKind, relevance_cutoff
from lookalike.vectors.base import Filter, HasId, Hit

MAX_LIMIT = 1000
SEARCH_MODES = ("vector", "keyword", "hybrid")
SearchMode = Literal["vector", "keyword", "hybrid"]
# How deep each side of a hybrid search looks, at least: a hit fused into the first places may
# rank below them on both sides, so each side returns more than the page asks for.
HYBRID_DEPTH = 100
# ...and at most: keyword and hybrid answers end there (the keyword candidates travel to the
# vector engine as one id filter).
MAX_TEXT_DEPTH = 5000
Side = Literal["keyword", "vector"]


@dataclass(frozen=True)
class SearchHit:
    """One hit. `score` is the cosine similarity in `vector` mode (for a late-interaction model,
    the mean MaxSim over the query's rows) and the reciprocal-rank-fusion score in `keyword` and
    `hybrid` mode; `matched` names the sides that found it."""

    image_id: str
    record_id: str
    name: str
    description: str
    score: float
    payload: dict[str, Any] | None
    matched: tuple[Side, ...] = ()


@dataclass(frozen=True)
class SearchResult:
    hits: list[SearchHit]
    # How a text was matched (a text in hybrid mode with an image-only model: keyword).
    mode: SearchMode
    notes: list[str] = field(default_factory=list)


def search_similar(
    rt: Services,
    tenant: str,
    collection_ref: str | Collection,
    *,
    image_bytes: bytes | None = None,
    image_id: str | None = None,
    text: str | None = None,
    limit: int = 10,
    offset: int = 0,
    score_threshold: float | None = None,
    filters: SearchFilters | None = None,
    include_payload: bool = False,
    phash_gate: int | None = None,
    use_crops: bool = False,
    mode: SearchMode | None = None,
) -> list[SearchHit]:
    """Ranked look-alikes, best first. Exactly one of `image_bytes`, `image_id`, `text`.

    Searching by a stored image leaves that image itself out of the hits. With `phash_gate`
    (a query image only), hits are limited to images whose pHash is within that many bits:
    the two-stage near-duplicate search (pHash gate, then vector ranking). With `use_crops`
    (a collection created with crops), the query is also matched against every image's crops
    and a hit scores the better of its global and best-crop similarity. `mode` (a text only,
    `vector` when not given) says how a text is matched: see the module's docstring and
    `search_with_mode`, which also says which mode answered.
    """
    return search_with_mode(
        rt,
        tenant,
        collection_ref,
        image_bytes=image_bytes,
        image_id=image_id,
        text=text,
        limit=limit,
        offset=offset,
        score_threshold=score_threshold,
        filters=filters,
        include_payload=include_payload,
        phash_gate=phash_gate,
        use_crops=use_crops,
        mode=mode,
    ).hits


def search_with_mode(
    rt: Services,
    tenant: str,
    collection_ref: str | Collection,
    *,
    image_bytes: bytes | None = None,
    image_id: str | None = None,
    text: str | None = None,
    limit: int = 10,
    offset: int = 0,
    score_threshold: float | None = None,
    filters: SearchFilters | None = None,
    include_payload: bool = False,
    phash_gate: int | None = None,
    use_crops: bool = False,
    mode: SearchMode | None = None,
) -> SearchResult:
    """`search_similar`, and the mode that answered with notes on it for people.

    In `keyword` and `hybrid` mode the filters apply to the keyword hits too, and a
    `score_threshold` to the vector side only (a keyword hit has no similarity).
    """
    given = [x is not None for x in (image_bytes, image_id, text)]
    if sum(given) != 1:
        raise InvalidInput("give exactly one of: an image file, image_id or text_query")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise InvalidInput("offset must be >= 0")
    if score_threshold is not None and not -1.0 <= score_threshold <= 1.0:
        raise InvalidInput("score_threshold must be between -1 and 1 (cosine similarity)")
    if phash_gate is not None and not 0 <= phash_gate <= MAX_GATE:
        raise InvalidInput(f"phash_gate must be between 0 and {MAX_GATE} bits")
    if phash_gate is not None and text is not None:
        raise InvalidInput("phash_gate needs a query image (file or image_id), not text")

    if isinstance(collection_ref, Collection):
        collection = collection_ref
        if collection.tenant != tenant:
            raise CollectionNotFound(f"no collection {collection.id!r}")
    else:
        with timed("search", "catalog"), rt.catalog.session() as session:
            collection = get_collection(session, tenant, collection_ref)
    crops_vector: str | None = None
    if use_crops:
        if not uses_crops(collection.vector_settings):
            raise InvalidInput(
                f"collection {collection.name!r} has no crop embeddings; use_crops needs a "
                "collection created with use_crops=true (search it without use_crops)"
            )
        crops_vector = crops_vector_name(collection.vector_name)
    vector_filter = filters.to_vector_filter() if filters else None
    if text is not None and not text.strip():
        raise InvalidInput("text_query is empty")
    if mode is not None and mode not in SEARCH_MODES:
        raise InvalidInput(f"mode must be one of {', '.join(SEARCH_MODES)}")
    if mode not in (None, "vector") and text is None:
        raise InvalidInput(
            f"mode {mode!r} applies to text_query only; an image is matched by vector"
        )
    if text is not None and mode in ("keyword", "hybrid"):
        if use_crops:
            raise InvalidInput("use_crops works in vector mode only")
        return _search_text(
            rt,
            tenant,
            collection,
            text,
            mode=mode,
            limit=limit,
            offset=offset,
            score_threshold=score_threshold,
            filters=filters,
            vector_filter=vector_filter,
            include_payload=include_payload,
        )
    hits = _vector_hits(
        rt,
        tenant,
        collection,
        image_bytes=image_bytes,
        image_id=image_id,
        text=text,
        limit=limit,
        offset=offset,
        score_threshold=score_threshold,
        filters=filters,
        vector_filter=vector_filter,
        include_payload=include_payload,
        phash_gate=phash_gate,
        use_crops=use_crops,
        crops_vector=crops_vector,
    )
    return SearchResult(_named_hits(rt, hits, include_payload), "vector")


def _vector_hits(
    rt: Services,
    tenant: str,
    collection: Collection,
    *,
    image_bytes: bytes | None,
    image_id: str | None,
    text: str | None,
    limit: int,
    offset: int,
    score_threshold: float | None,
    filters: SearchFilters | None,
    vector_filter: Filter | None,
    include_payload: bool,
    phash_gate: int | None,
    use_crops: bool,
    crops_vector: str | None,
) -> list[Hit]:
    """The vector engine's ranked hits (from the cache when it has them): `search_similar` in
    vector mode, before the catalog names them. Only vector rankings are ever cached: a keyword
    ranking reads catalog text, which no vector write versions."""
    # With a fallback chain: as the model of its most complete named vector (search/fallback.py).
    collection = searched_as(rt.catalog, collection, image_id=image_id)
    cache = search_cache_of(rt.vectors)
    cached: CacheLookup | None = None
    if cache is not None:
        key = _cache_key(
            rt,
            tenant,
            collection,
            image_bytes=image_bytes,
            image_id=image_id,
            text=text,
            limit=limit,
            offset=offset,
            score_threshold=score_threshold,
            filters=filters,
            include_payload=include_payload,
            phash_gate=phash_gate,
            use_crops=use_crops,
        )
        with timed("search", "cache"):
            cached = cache.lookup(key)
        if cached.hits is not None:
            return cached.hits

    query: NDArray[np.float32]
    query_phash: str | None = None
    # A late-interaction collection is searched by its patch multivectors, with a multivector
    # query: a text's token vectors, an image's patch vectors.
    patches = patches_vector_for(collection.vector_name, collection.vector_settings)
    if text is not None and patches is not None:
        with timed("search", "embed"):
            query = rt.models.for_collection(collection).embed_text_tokens([text])[0]
    elif text is not None:
        with timed("search", "embed"):
            query = rt.models.query_batcher(collection).embed_text(text)
    elif image_bytes is not None:
        batcher = rt.models.query_batcher(collection)
        with timed("search", "decode"):
            decoded = decode_image(
                image_bytes,
                max_bytes=rt.settings.max_image_bytes,
                max_pixels=rt.settings.max_image_pixels,
                max_aspect_ratio=rt.settings.max_aspect_ratio,
                reduce_for=batcher.embedder.input_size,
            )
        with timed("search", "embed"):
            if patches is not None:
                embedder = batcher.embedder
                query = embedder.embed_patches(embedder.preprocess(decoded.image)[None])[1][0]
            else:
                query = batcher.embed_image(decoded.image)
        if phash_gate is not None:
            query_phash = phash_hex(decoded.image)
    else:
        assert image_id is not None
        # The collection is the caller's, so a point found in it is theirs: no catalog trip.
        with timed("search", "vector_retrieve"):
            try:
                points = rt.vectors.retrieve(collection.id, [image_id], with_vectors=True)
            except InvalidInput:  # not even a well-formed id
                points = []
        stored = patches or collection.vector_name
        if not points or stored not in points[0].vectors:
            _explain_missing_vector(rt, tenant, collection, image_id)
        query = points[0].vectors[stored]
        query_phash = points[0].payload.get("phash")
        if phash_gate is not None and not query_phash:
            raise InvalidInput(f"image {image_id!r} has no pHash to gate on")
        base = vector_filter or Filter()
        vector_filter = Filter(
            must=base.must, should=base.should, must_not=(*base.must_not, HasId((image_id,)))
        )

    gated = phash_gate is not None and query_phash is not None
    if gated:
        assert phash_gate is not None and query_phash is not None
        base = vector_filter or Filter()
        vector_filter = Filter(
            must=(*base.must, candidate_filter(query_phash, phash_gate)),
            should=base.should,
            must_not=base.must_not,
        )
    with timed("search", "vector_search"):
        hits = _ranked_hits(
            rt,
            collection,
            query,
            crops_vector,
            patches_vector=patches,
            # The chunk filter admits some hashes beyond the gate: fetch extra, check exactly.
            limit=(offset + limit) * 4 + 16 if gated else limit,
            offset=0 if gated else offset,
            query_filter=vector_filter,
            score_threshold=score_threshold,
        )
    if gated:
        assert phash_gate is not None and query_phash is not None
        hits = [h for h in hits if within((h.payload or {}).get("phash"), query_phash, phash_gate)][
            offset : offset + limit
        ]
    if cache is not None and cached is not None:
        with timed("search", "cache"):
            cache.store(cached, hits if include_payload else _record_ids_only(hits))
    return hits


def _search_text(
    rt: Services,
    tenant: str,
    collection: Collection,
    text: str,
    *,
    mode: SearchMode,
    limit: int,
    offset: int,
    score_threshold: float | None,
    filters: SearchFilters | None,
    vector_filter: Filter | None,
    include_payload: bool,
) -> SearchResult:
    """A text by keyword, or by keyword and vector fused (`reciprocal_rank_fusion`)."""
    depth = min(max(2 * (offset + limit), HYBRID_DEPTH), MAX_TEXT_DEPTH)
    if offset >= depth:
        return SearchResult([], mode)
    keyword = _keyword_hits(rt, collection, text, depth, vector_filter)
    vector: list[Hit] = []
    used: SearchMode = mode
    notes: list[str] = []
    if mode == "hybrid":
        try:
            vector = _vector_hits(
                rt,
                tenant,
                collection,
                image_bytes=None,
                image_id=None,
                text=text,
                limit=depth,
                offset=0,
                score_threshold=score_threshold,
                filters=filters,
                vector_filter=vector_filter,
                include_payload=include_payload,
                phash_gate=None,
                use_crops=False,
                crops_vector=None,
            )
        except TextSearchUnavailable:
            used = "keyword"
            notes.append(
                f"the model of this collection ({collection.model}) embeds images only, so the "
                "text was matched by keyword alone (record names, descriptions, tags and the "
                "text of pages); a collection made with a CLIP model matches it by meaning too"
            )
    settings = rt.settings
    sides: list[tuple[Side, float, list[Hit]]] = [
        ("keyword", settings.hybrid_keyword_weight if used == "hybrid" else 1.0, keyword)
    ]
    if used == "hybrid":
        sides.append(("vector", settings.hybrid_vector_weight, vector))
    fused = reciprocal_rank_fusion(
        [(weight, [h.id for h in hits]) for _, weight, hits in sides], settings.hybrid_rrf_k
    )[offset : offset + limit]
    found_by = [(side, {h.id for h in hits}) for side, _, hits in sides]
    matched = {i: tuple(side for side, ids in found_by if i in ids) for i, _ in fused}
    payloads = {h.id: h.payload for h in (*keyword, *vector)}
    page = [Hit(i, score, payloads[i]) for i, score in fused]
    return SearchResult(_named_hits(rt, page, include_payload, matched), used, notes)


def _keyword_hits(
    rt: Services, collection: Collection, text: str, depth: int, vector_filter: Filter | None
) -> list[Hit]:
    """The catalog's keyword ranking, less what the filters leave out: the vector engine's
    payload filter, asked about the candidates by id, decides that for keyword hits as for
    vector ones (and leaves out what it does not hold)."""
    index = keyword_index_for(rt.catalog.engine.dialect.name)
    with timed("search", "keyword"), rt.catalog.session() as session:
        ranking = index.search(session, collection.id, text, depth, rrf_k=rt.settings.hybrid_rrf_k)
    if not ranking:
        return []
    base = vector_filter or Filter()
    wanted = Filter(
        must=(HasId(tuple(i for i, _ in ranking)), *base.must),
        should=base.should,
        must_not=base.must_not,
    )
    with timed("search", "keyword_filter"):
        payloads = {
            p.id: p.payload for p in rt.vectors.iter_points(collection.id, query_filter=wanted)
        }
    return [Hit(i, score, payloads[i]) for i, score in ranking if i in payloads]


def reciprocal_rank_fusion(
    rankings: Sequence[tuple[float, Sequence[str]]], k: int
) -> list[tuple[str, float]]:
    """Rankings (weight, ids best first) fused: an id scores the sum of `weight / (k + rank)`
    over the rankings it is in (rank 1 is the best). Best first; ties by id."""
    scores: dict[str, float] = defaultdict(float)
    for weight, ids in rankings:
        for rank, item in enumerate(ids, 1):
            scores[item] += weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def _named_hits(
    rt: Services,
    hits: list[Hit],
    include_payload: bool,
    matched: Mapping[str, tuple[Side, ...]] | None = None,
) -> list[SearchHit]:
    """The engine's hits with their records' names, read now (cached hits too: a renamed record
    never shows its old name); a hit whose record is gone is left out."""
    with timed("search", "catalog"), rt.catalog.session() as session:
        records = record_summaries(
            session, [str(h.payload["record_id"]) for h in hits if h.payload]
        )
    out: list[SearchHit] = []
    for hit in hits:
        payload = hit.payload or {}
        record = records.get(str(payload.get("record_id")))
        if record is None:
            # A vector whose catalog row is gone: the reconciler removes it; never show it.
            continue
        out.append(
            SearchHit(
                image_id=hit.id,
                record_id=record.id,
                name=record.name,
                description=record.description,
                score=float(hit.score),
                payload=payload if include_payload else None,
                matched=matched[hit.id] if matched is not None else ("vector",),
            )
        )
    return out


def _cache_key(
    rt: Services,
    tenant: str,
    collection: Collection,
    *,
    image_bytes: bytes | None,
    image_id: str | None,
    text: str | None,
    limit: int,
    offset: int,
    score_threshold: float | None,
    filters: SearchFilters | None,
    include_payload: bool,
    phash_gate: int | None,
    use_crops: bool,
) -> SearchKey:
    """Everything `search_similar`'s ranked hits depend on, besides the collection's data."""
    if text is not None:
        query = f"text:{text}"
    elif image_bytes is not None:
        # The decode limits decide whether the bytes are searchable at all: a replica with
        # tighter ones must not be answered from a looser one's entry.
        s = rt.settings
        digest = hashlib.sha256(image_bytes).hexdigest()
        query = f"image:{digest}:{s.max_image_bytes}:{s.max_image_pixels}:{s.max_aspect_ratio}"
    else:
        query = f"image_id:{image_id}"
    canonical = filters.model_dump(mode="json", exclude_defaults=True) if filters else None
    return SearchKey(
        tenant=tenant,
        collection_id=collection.id,
        model_id=collection.model_id,
        vector_name=collection.vector_name,
        query=query,
        filters=json.dumps(canonical, sort_keys=True, separators=(",", ":")) if canonical else "",
        limit=limit,
        offset=offset,
        score_threshold=score_threshold,
        phash_gate=phash_gate,
        use_crops=use_crops,
        include_payload=include_payload,
        ef=rt.settings.hnsw_ef,
    )


def _record_ids_only(hits: list[Hit]) -> list[Hit]:
    """Hits with only the payload field naming their record: all a search without payloads
    reads back, and a fraction of a cache entry's size."""
    return [
        Hit(
            h.id,
            h.score,
            {k: v for k, v in h.payload.items() if k == "record_id"} if h.payload else None,
        )
        for h in hits
    ]


@dataclass(frozen=True)
class SearchPage:
    """One page of hits, and what lies beyond it: `more` hits at the same cut-off (exact), and
    whether `weaker` ones lie below the relevance cut-off that hid them. `mode` says how a text
    was matched (`vector` for an image); `notes` say what a person should know of the answer."""

    hits: list[SearchHit]
    more: bool
    cutoff: float | None
    weaker: bool
    mode: SearchMode = "vector"
    notes: list[str] = field(default_factory=list)


def search_page(
    rt: Services,
    tenant: str,
    collection: Collection,
    *,
    limit: int = 10,
    offset: int = 0,
    score_threshold: float | None = None,
    include_weaker: bool = False,
    **query: Any,
) -> SearchPage:
    """`search_similar` for a person paging through results: hits below the model's relevance
    cut-off (`search.relevance`) are left out unless `include_weaker` or a `score_threshold` of
    the caller's own; one hit more than asked for says whether there is a next page. In hybrid
    mode the cut-off applies to the vector side; keyword mode has none."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    kind: QueryKind = "text" if query.get("text") is not None else "image"
    cutoff = (
        None
        if include_weaker or score_threshold is not None or query.get("mode") == "keyword"
        else relevance_cutoff(collection, kind)
    )
    threshold = score_threshold if cutoff is None else cutoff
    found = search_with_mode(
        rt,
        tenant,
        collection,
        limit=min(limit + 1, MAX_LIMIT),
        offset=offset,
        score_threshold=threshold,
        **query,
    )
    if found.mode == "keyword":
        cutoff = None  # nothing was cut
    more = len(found.hits) > limit
    hits = found.hits[:limit]
    weaker = False
    if cutoff is not None and not more:
        # The strong hits end on this page: is there anything at all below the cut-off?
        weaker = bool(
            search_similar(rt, tenant, collection, limit=1, offset=offset + len(hits), **query)
        )
    return SearchPage(
        hits=hits, more=more, cutoff=cutoff, weaker=weaker, mode=found.mode, notes=found.notes
    )


def _ranked_hits(
    rt: Services,
    collection: Collection,
    query: NDArray[np.float32],
    crops_vector: str | None,
    *,
    patches_vector: str | None = None,
    limit: int,
    offset: int,
    query_filter: Filter | None,
    score_threshold: float | None,
) -> list[Hit]:
    """Hits by the global vector, or, with `crops_vector`, by the better of global and crops;
    with `patches_vector`, by MaxSim of the multivector `query` against the patches."""

    def search(vector_name: str, count: int, skip: int) -> list[Hit]:
        return rt.vectors.search(
            collection.id,
            vector_name,
            query,
            limit=count,
            offset=skip,
            query_filter=query_filter,
            score_threshold=score_threshold,
            ef=rt.settings.hnsw_ef,
            with_payload=True,
        )

    if patches_vector is not None:
        # The engines sum MaxSim over the query's rows; a hit scores their mean, which lies in
        # [-1, 1] like a cosine (embedding/late_interaction.py), and so does the threshold.
        rows = len(query)
        found = rt.vectors.search(
            collection.id,
            patches_vector,
            query,
            limit=limit,
            offset=offset,
            query_filter=query_filter,
            score_threshold=None if score_threshold is None else score_threshold * rows,
            ef=rt.settings.hnsw_ef,
            with_payload=True,
        )
        return [Hit(h.id, h.score / rows, h.payload) for h in found]
    if crops_vector is None:
        return search(collection.vector_name, limit, offset)
    # A point in the merged top n scores best in one of the two lists, and fewer than n points
    # beat it there: so each list's own top n holds the merged top n.
    depth = offset + limit
    best: dict[str, Hit] = {}
    for hit in (*search(collection.vector_name, depth, 0), *search(crops_vector, depth, 0)):
        if hit.id not in best or hit.score > best[hit.id].score:
            best[hit.id] = hit
    merged = sorted(best.values(), key=lambda h: (-h.score, h.id))
    return merged[offset : offset + limit]


def _explain_missing_vector(
    rt: Services, tenant: str, collection: Collection, image_id: str
) -> None:
    """Raise the error that says why `image_id` has no vector in `collection`."""
    with rt.catalog.session() as session:
        image = get_image(session, tenant, image_id)  # ImageNotFound for others' or no image
    if image.collection_id != collection.id:
        raise InvalidInput(f"image {image_id!r} is not in collection {collection.name!r}")
    raise InvalidInput(
        f"image {image_id!r} has no vector yet (it is {image.status}); "
        "check its status with GET /api/images/{id}"
    )


def unscored(rt: Services, collection: Collection, filters: SearchFilters | None) -> dict[str, int]:
    """For each computed score the filters read: how many searchable images of the collection
    have none yet (their enrichment is pending, failed, or switched off), and so are left out
    by any condition on it. Empty when the filters read no score or every image has one."""
    fields = filters.score_fields() if filters else set()
    columns = {"quality": Image.quality_score, "nsfw": Image.nsfw_score}
    out: dict[str, int] = {}
    with rt.catalog.session() as session:
        for field in sorted(fields):
            count = session.scalar(
                select(func.count()).where(
                    Image.collection_id == collection.id,
                    Image.status == "embedded",
                    columns[field].is_(None),
                )
            )
            if count:
                out[field] = int(count)
    return out


def unscored_notes(counts: dict[str, int]) -> list[str]:
    """`unscored` in words, for people."""
    return [
        f"{n} image{'s' if n != 1 else ''} of this collection {'have' if n != 1 else 'has'} no "
        f"{field} score yet (still being enriched, or not scored) and "
        f"{'are' if n != 1 else 'is'} left out by the filter on {field}"
        for field, n in counts.items()
    ]
