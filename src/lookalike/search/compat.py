"""Text search as the image-search-worker contract answers it: file names, scores and a token
that lets the caller rate this search later (`/api/v1/search-image`, `/api/v1/create-feedback`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from lookalike.auth.tokens import Principal, issue_search_token
from lookalike.catalog import Collection, Image, new_id
from lookalike.catalog.repository import get_collection
from lookalike.core.errors import CollectionNotFound
from lookalike.records.service import Services
from lookalike.search.service import search_similar


@dataclass(frozen=True)
class NamedMatch:
    image_name: str
    score: float


@dataclass(frozen=True)
class RateableSearch:
    search_id: str
    text: str
    model_name: str
    matches: list[NamedMatch]
    token: str


def default_collection(rt: Services, tenant: str, ref: str | None = None) -> Collection:
    """The collection named by `ref`, else by the `default_collection` setting, else the
    tenant's first (oldest) collection."""
    with rt.catalog.session() as session:
        if ref or rt.settings.default_collection:
            return get_collection(session, tenant, ref or str(rt.settings.default_collection))
        first = session.scalars(
            select(Collection)
            .where(Collection.tenant == tenant)
            .order_by(Collection.created_at, Collection.id)
            .limit(1)
        ).first()
    if first is None:
        raise CollectionNotFound(
            "there is no collection to search; create one with POST /api/collections "
            "(or `lookalike ingest`) and add images"
        )
    return first


def search_text_rateable(
    rt: Services,
    caller: Principal,
    text: str,
    *,
    collection: str | None = None,
    limit: int = 10,
) -> RateableSearch:
    """Images that match `text`, named by their original file names, best first."""
    target = default_collection(rt, caller.tenant, collection)
    hits = search_similar(rt, caller.tenant, target.id, text=text, limit=limit)
    with rt.catalog.session() as session:
        names = dict(
            session.execute(
                select(Image.id, Image.filename).where(
                    Image.collection_id == target.id, Image.id.in_([h.image_id for h in hits])
                )
            ).all()
        )
    search_id = new_id()
    return RateableSearch(
        search_id=search_id,
        text=text,
        model_name=target.model,
        matches=[NamedMatch(names.get(h.image_id) or h.name, h.score) for h in hits],
        token=issue_search_token(
            rt.settings,
            search_id=search_id,
            principal=caller,
            collection_id=target.id,
            text=text,
        ),
    )
