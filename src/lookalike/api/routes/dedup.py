"""Duplicates: sweeps (`POST /api/search/cluster`), clusters and their actions, pair verdicts,
hard negatives."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from lookalike.api.deps import Caller, Runtime
from lookalike.api.schemas import (
    MAX_OFFSET,
    DedupThresholdsIn,
    JobAccepted,
    Strict,
    WithPreview,
    with_attributes,
)
from lookalike.catalog.models import DuplicateCluster
from lookalike.composition import Lookalike
from lookalike.core.errors import InvalidInput
from lookalike.dedup import review, sweep, tiers
from lookalike.records import service as collections_svc

router = APIRouter(tags=["duplicates"])

# Above this many images a sweep runs as a background job, not inside a request.
SYNC_SWEEP_LIMIT = 20_000
TierName = Literal["exact", "near_exact", "similar"]
ClusterStatus = Literal["open", "duplicate", "not_duplicate", "merged"]


def _default_tiers() -> list[TierName]:
    return ["near_exact", "similar"]


class ClusterRequest(Strict):
    collection: str = Field(description="Collection id or name.")
    image_ids: list[str] | None = Field(
        default=None, description="Cluster only these images (default: the whole collection)."
    )
    thresholds: DedupThresholdsIn | None = None
    tiers: list[TierName] = Field(default_factory=_default_tiers)
    background: bool = Field(
        default=False, description="Run as a job: answers 202 with job_id at once."
    )


class ClusterMemberOut(WithPreview):
    record_id: str
    name: str
    score: float = Field(description="Cosine similarity to the keeper.")
    width: int
    height: int
    quality_score: float | None
    bytes: int
    mime: str
    created_at: datetime


class ClusterOut(BaseModel):
    # Read from a DuplicateCluster with `members` added (`with_attributes`): what
    # `review.cluster_members` says of each.
    model_config = ConfigDict(from_attributes=True)
    id: str
    tier: TierName
    keeper: str | None = Field(validation_alias="keeper_image_id")
    status: ClusterStatus
    decided_by: str | None
    created_at: datetime
    updated_at: datetime
    members: list[ClusterMemberOut]
    parent_id: str | None = Field(
        default=None,
        description="For a near-exact cluster: the similar cluster whose group it lies in "
        "(copies of one photo among shots of one scene).",
    )
    groups: list[str] = Field(
        default_factory=list,
        description="For a similar cluster: the near-exact clusters inside it. Their members "
        "are members here too; show them as groups within this one, not as clusters of "
        "their own.",
    )


class ClusterResponse(BaseModel):
    collection: str
    sweep_id: str
    thresholds: dict[str, Any]
    stats: dict[str, Any]
    clusters: list[ClusterOut]


class ClusterPage(BaseModel):
    clusters: list[ClusterOut]
    total: int


class MarkRequest(Strict):
    verdict: Literal["duplicate", "not_duplicate"]
    image_ids: list[str] | None = Field(
        default=None, description="Only these members (default: all of them)."
    )


class MergeRequest(Strict):
    keeper: str | None = Field(default=None, description="Default: the suggested keeper.")
    mode: Literal["move", "drop"] = Field(
        default="move",
        description="move: the other images join the keeper's record; drop: they are deleted.",
    )


class TagRequest(Strict):
    tags: list[str] = Field(min_length=1, max_length=64)


class PairRequest(Strict):
    image_a: str
    image_b: str
    verdict: Literal["same", "different"]
    note: str | None = Field(default=None, max_length=2000)


class PairOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    image_a: str
    image_b: str
    verdict: str
    user: str
    note: str | None
    created_at: datetime


def _clusters_out(rt: Lookalike, clusters: list[DuplicateCluster]) -> list[ClusterOut]:
    members = review.cluster_members(rt, clusters)
    groups = review.nested_groups(rt, [c.id for c in clusters])
    return [
        ClusterOut.model_validate(
            with_attributes(c, members=members[c.id], groups=groups.get(c.id, []))
        )
        for c in clusters
    ]


def _cluster_out(rt: Lookalike, cluster: DuplicateCluster) -> ClusterOut:
    return _clusters_out(rt, [cluster])[0]


@router.post(
    "/api/search/cluster",
    response_model=ClusterResponse,
    responses={202: {"model": JobAccepted, "description": "Queued as a background job."}},
)
async def cluster(body: ClusterRequest, rt: Runtime, caller: Caller) -> Any:
    """Find duplicate clusters in a collection (or among given images) and store them; each
    has a tier, a suggested keeper and its members."""
    collection = collections_svc.find_collection(rt, caller.tenant, body.collection)
    thresholds = body.thresholds.model_dump(exclude_none=True) if body.thresholds else None
    tiers.thresholds_of(collection, thresholds)  # bad values: 422 now, not in the job
    if body.background:
        if body.image_ids is not None:
            raise InvalidInput("background sweeps cover the whole collection; drop image_ids")
        job_id = rt.jobs.submit(
            sweep.SWEEP_JOB, collection.id, {"thresholds": thresholds, "tiers": list(body.tiers)}
        )
        return JSONResponse({"job_id": job_id}, status_code=status.HTTP_202_ACCEPTED)
    if body.image_ids is None:
        count = collections_svc.collection_counts(rt, collection.id)["images"]
        if count > SYNC_SWEEP_LIMIT:
            raise InvalidInput(
                f"{collection.name!r} has {count} images: sweep it with background: true and "
                "follow the job at GET /api/jobs/{id}"
            )
    result = await run_in_threadpool(
        sweep.run_sweep,
        rt,
        collection,
        image_ids=body.image_ids,
        thresholds=thresholds,
        tiers=body.tiers,
    )
    return ClusterResponse(
        collection=collection.id,
        sweep_id=result.sweep_id,
        thresholds=result.thresholds.as_dict(),
        stats=result.stats,
        clusters=_clusters_out(rt, result.clusters),
    )


@router.get("/api/collections/{collection_id}/clusters")
def list_clusters(
    collection_id: str,
    rt: Runtime,
    caller: Caller,
    status_: Annotated[ClusterStatus | None, Query(alias="status")] = None,
    tier: TierName | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ClusterPage:
    """The stored clusters (the latest sweep's open ones and every decided one)."""
    collection = collections_svc.find_collection(rt, caller.tenant, collection_id)
    clusters, total = review.list_clusters(
        rt, collection, status=status_, tier=tier, limit=limit, offset=offset
    )
    return ClusterPage(clusters=_clusters_out(rt, clusters), total=total)


@router.get("/api/clusters/{cluster_id}")
def get_cluster(cluster_id: str, rt: Runtime, caller: Caller) -> ClusterOut:
    cluster, _ = review.get_cluster(rt, caller.tenant, cluster_id)
    return _cluster_out(rt, cluster)


@router.post("/api/clusters/{cluster_id}/mark")
def mark_cluster(cluster_id: str, body: MarkRequest, rt: Runtime, caller: Caller) -> ClusterOut:
    """Duplicate / not duplicate, for the whole cluster or some members; stored as pair
    verdicts that every later sweep honours."""
    cluster = review.mark_cluster(
        rt, caller.tenant, caller.user, cluster_id, body.verdict, body.image_ids
    )
    return _cluster_out(rt, cluster)


@router.post("/api/clusters/{cluster_id}/merge")
async def merge_cluster(
    cluster_id: str, body: MergeRequest, rt: Runtime, caller: Caller
) -> ClusterOut:
    """Keep one image; move the others into its record or drop them. The other records'
    fields are kept on the keeper's record (`metadata.merged`)."""
    cluster = await run_in_threadpool(
        review.merge_cluster,
        rt,
        caller.tenant,
        caller.user,
        cluster_id,
        keeper=body.keeper,
        mode=body.mode,
    )
    return _cluster_out(rt, cluster)


@router.post("/api/clusters/{cluster_id}/tag")
def tag_cluster(cluster_id: str, body: TagRequest, rt: Runtime, caller: Caller) -> ClusterOut:
    """Add tags to the records of every member."""
    return _cluster_out(rt, review.tag_cluster(rt, caller.tenant, cluster_id, body.tags))


@router.post("/api/duplicates/pairs", status_code=status.HTTP_201_CREATED)
def add_pair_verdict(body: PairRequest, rt: Runtime, caller: Caller) -> PairOut:
    """Say two images are the same or different; the latest decision on a pair wins."""
    row = review.record_pair_verdict(
        rt, caller.tenant, caller.user, body.image_a, body.image_b, body.verdict, body.note
    )
    return PairOut.model_validate(row)


@router.get("/api/images/{image_id}/pairs")
def list_pair_verdicts(image_id: str, rt: Runtime, caller: Caller) -> list[PairOut]:
    """Every same / different decision involving the image, oldest first."""
    return [PairOut.model_validate(p) for p in review.pair_history(rt, caller.tenant, image_id)]


@router.get("/api/collections/{collection_id}/hard-negatives")
def hard_negatives(collection_id: str, rt: Runtime, caller: Caller) -> list[dict[str, Any]]:
    """Pairs people said do not belong together, for training: "irrelevant" search feedback
    and current "different" pair verdicts."""
    return list(review.hard_negatives(rt, caller.tenant, collection_id))
