"""Feedback on images: record a verdict, list an image's verdicts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from lookalike.api.deps import Caller, Runtime
from lookalike.api.schemas import MAX_OFFSET, FeedbackCreate, FeedbackOut, FeedbackPage
from lookalike.feedback import service as svc

router = APIRouter(tags=["feedback"])


@router.post("/api/feedback", status_code=status.HTTP_201_CREATED)
def create_feedback(body: FeedbackCreate, rt: Runtime, caller: Caller) -> FeedbackOut:
    """Mark an image relevant, irrelevant, a duplicate or an anomaly (optionally for a query)."""
    query = body.query
    ref = (
        svc.QueryRef(text=query)
        if isinstance(query, str)
        else svc.QueryRef(query.search_id, query.image_id, query.text)
        if query is not None
        else None
    )
    row = svc.add_feedback(
        rt.catalog,
        caller,
        image_id=body.image_id,
        action=body.action,
        query=ref,
        note=body.note,
        score=body.score,
    )
    return FeedbackOut.model_validate(row)


@router.get("/api/images/{image_id}/feedback")
def list_image_feedback(
    image_id: str,
    rt: Runtime,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> FeedbackPage:
    """The feedback on an image, newest first."""
    rows, total = svc.image_feedback(
        rt.catalog, caller.tenant, image_id, limit=limit, offset=offset
    )
    return FeedbackPage(
        items=[FeedbackOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )
