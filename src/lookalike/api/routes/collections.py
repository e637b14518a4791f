"""Collections: create, list, get, rename, delete."""

from __future__ import annotations

from fastapi import APIRouter, status
from starlette.concurrency import run_in_threadpool

from lookalike.api.deps import Caller, Runtime
from lookalike.api.schemas import (
    CollectionCreate,
    CollectionOut,
    CollectionUpdate,
    with_attributes,
)
from lookalike.catalog import Collection
from lookalike.composition import Lookalike
from lookalike.records import service as svc

router = APIRouter(prefix="/api/collections", tags=["collections"])


def _out(rt: Lookalike, c: Collection, *, counts: bool = False) -> CollectionOut:
    return CollectionOut.model_validate(
        with_attributes(
            c,
            supports_text=svc.supports_text(rt, c),
            counts=svc.collection_counts(rt, c.id) if counts else None,
        )
    )


@router.post("", status_code=status.HTTP_201_CREATED)
def create_collection(body: CollectionCreate, rt: Runtime, caller: Caller) -> CollectionOut:
    collection = svc.create_collection(
        rt,
        caller.tenant,
        body.name,
        description=body.description,
        model=body.model,
        options=svc.VectorOptions(
            body.hnsw_m,
            body.hnsw_ef_construct,
            body.quantization,
            use_crops=body.use_crops,
            ocr=body.ocr,
        ),
    )
    return _out(rt, collection)


@router.get("")
def list_collections(rt: Runtime, caller: Caller) -> list[CollectionOut]:
    return [_out(rt, c, counts=True) for c in svc.all_collections(rt, caller.tenant)]


@router.get("/{collection_id}")
def get_collection(collection_id: str, rt: Runtime, caller: Caller) -> CollectionOut:
    return _out(rt, svc.find_collection(rt, caller.tenant, collection_id), counts=True)


@router.patch("/{collection_id}")
def update_collection(
    collection_id: str, body: CollectionUpdate, rt: Runtime, caller: Caller
) -> CollectionOut:
    collection = svc.update_collection(
        rt,
        caller.tenant,
        collection_id,
        name=body.name,
        description=body.description,
        dedup=body.dedup.model_dump(exclude_none=True) if body.dedup else None,
    )
    return _out(rt, collection, counts=True)


@router.delete("/{collection_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_collection(collection_id: str, rt: Runtime, caller: Caller) -> None:
    await run_in_threadpool(svc.delete_collection, rt, caller.tenant, collection_id)
