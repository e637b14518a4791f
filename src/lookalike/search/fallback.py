"""Which named vector a search of a collection with a fallback chain uses (`embedding.fallback`).

Each model of the chain has its own named vector and an image sits in one of them, so a search
can only rank the images of one vector: the most complete one, which the most images of the
collection are in (counted in the catalog, where `image.model_id` says which model embedded
each image), the earlier model of the chain on a tie. After an outage that is the fallback's
vector until the re-embed queue has moved most images back, then the collection's own again.
"""

from __future__ import annotations

from sqlalchemy import func, select

from lookalike.catalog import Catalog, Collection, Image
from lookalike.embedding.fallback import ChainModel, chain_of


def vector_counts(catalog: Catalog, collection: Collection) -> dict[str, int]:
    """Searchable images of the collection per model id (the model whose vector holds them)."""
    with catalog.session() as session:
        rows = session.execute(
            select(Image.model_id, func.count())
            .where(Image.collection_id == collection.id, Image.status == "embedded")
            .group_by(Image.model_id)
        ).all()
    return {str(model_id): int(count) for model_id, count in rows if model_id is not None}


def most_complete(catalog: Catalog, collection: Collection) -> ChainModel | None:
    """The chain model whose vector holds the most images; None without a chain."""
    chain = chain_of(collection)
    if not chain:
        return None
    counts = vector_counts(catalog, collection)
    # max() keeps the first of equals: the earlier model of the chain.
    return max(chain, key=lambda member: counts.get(member.model_id, 0))


def searched_as(
    catalog: Catalog, collection: Collection, *, image_id: str | None = None
) -> Collection:
    """`collection` as a search sees it: itself without a chain; with one, a transient copy whose
    model and named vector are the most complete of the chain (for a query by `image_id`, the
    one that image is in when it is not in that one, since its stored vector is the query)."""
    member = most_complete(catalog, collection)
    if member is None:
        return collection
    if image_id is not None:
        with catalog.session() as session:
            own = session.scalar(
                select(Image.model_id).where(
                    Image.id == image_id, Image.collection_id == collection.id
                )
            )
        member = next((m for m in chain_of(collection) if m.model_id == own), member)
    if member.model_id == collection.model_id:
        return collection
    return Collection(
        id=collection.id,
        tenant=collection.tenant,
        name=collection.name,
        description=collection.description,
        model=member.model,
        model_id=member.model_id,
        vector_name=member.vector_name,
        dim=member.dim,
        vector_settings=collection.vector_settings,
        created_at=collection.created_at,
        updated_at=collection.updated_at,
    )
