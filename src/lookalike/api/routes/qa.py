"""Visual QA: the anomaly review queue, reviewing its images, recomputing its scores.

Feedback on an image of the queue ("anomaly", "irrelevant", ...) goes to POST /api/feedback.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from lookalike.anomalies import queue as svc
from lookalike.api.deps import Caller, Runtime
from lookalike.api.schemas import (
    MAX_OFFSET,
    AnomalyItemOut,
    AnomalyPage,
    AnomalyRecompute,
    AnomalyReview,
    JobAccepted,
)
from lookalike.records.service import find_collection

router = APIRouter(prefix="/api/qa", tags=["qa"])


@router.get("/anomalies")
def list_anomalies(
    rt: Runtime,
    caller: Caller,
    collection: Annotated[
        str, Query(min_length=1, max_length=128, description="Collection id or name.")
    ],
    sort: Annotated[
        svc.Sort,
        Query(description="The score to rank by: review (junk and outliers first) or one score."),
    ] = "review",
    reviewed: Annotated[
        svc.ReviewedFilter, Query(description="false: the queue; true: the reviewed ones.")
    ] = "false",
    needs_review: Annotated[
        bool | None,
        Query(description="true: only images at or above the review cut-off; false: the rest."),
    ] = None,
    min_score: Annotated[
        float | None, Query(allow_inf_nan=False, description="Only images scoring at least this.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=svc.MAX_LIMIT)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> AnomalyPage:
    """The images of a collection most in need of a look, by `sort`, descending; images without
    that score yet (not embedded or not enriched, or alone in their collection) are left out."""
    found = find_collection(rt, caller.tenant, collection)
    items, total = svc.list_anomalies(
        rt.catalog,
        found,
        sort=sort,
        reviewed=reviewed,
        needs_review=needs_review,
        min_score=min_score,
        limit=limit,
        offset=offset,
    )
    return AnomalyPage(items=[AnomalyItemOut.model_validate(i) for i in items], total=total)


@router.post("/anomalies/recompute", status_code=status.HTTP_202_ACCEPTED)
def recompute_anomalies(body: AnomalyRecompute, rt: Runtime, caller: Caller) -> JobAccepted:
    """Recompute every anomaly score of a collection in the background."""
    found = find_collection(rt, caller.tenant, body.collection)
    return JobAccepted(job_id=svc.request_recompute(rt.jobs, found))


@router.post("/anomalies/{image_id}/review")
def review_anomaly(
    image_id: str, body: AnomalyReview, rt: Runtime, caller: Caller
) -> AnomalyItemOut:
    """Mark an image reviewed by the caller (`reviewed: false` puts it back in the queue)."""
    item = svc.review_anomaly(rt.catalog, caller, image_id, reviewed=body.reviewed, note=body.note)
    return AnomalyItemOut.model_validate(item)
