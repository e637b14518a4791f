"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field

from lookalike.catalog import Collection, Feedback, Image, Record
from lookalike.catalog.record_fields import (
    DESCRIPTION_MAX,
    NAME_MAX,
    OWNER_MAX,
    TAG_MAX,
    TAGS_MAX,
    check_metadata,
    metadata_is_valid,
)
from lookalike.ingest.pipeline import IngestResult
from lookalike.search.filters import SearchFilters


def thumbnail_url(image_id: str) -> str:
    """Where the API serves an image's thumbnail (the services know no URLs)."""
    return f"/api/images/{image_id}/thumbnail"


class WithPreview(BaseModel):
    """A shape read from a service's object (`from_attributes`) that links the image's preview."""

    model_config = ConfigDict(from_attributes=True)
    image_id: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def preview_url(self) -> str:
        return thumbnail_url(self.image_id)


# Past any real page; bounded so that no number a database cannot hold reaches one.
MAX_OFFSET = 10_000_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _checked_metadata(value: dict[str, Any]) -> dict[str, Any]:
    check_metadata(value)  # its InvalidInput is answered as a 422 naming the problem
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_checked_metadata)]
Tag = Annotated[str, Field(max_length=TAG_MAX)]


class CollectionCreate(Strict):
    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=10_000)
    model: str | None = Field(default=None, description="Registry model name; default: configured.")
    hnsw_m: int | None = Field(default=None, ge=4, le=128)
    hnsw_ef_construct: int | None = Field(default=None, ge=8, le=1024)
    quantization: Literal["none", "int8"] | None = None
    use_crops: bool = Field(
        default=False,
        description="Also embed a 2x2 grid and up to 2 salient crops of every image, so a query "
        "showing part of an image finds it (search with use_crops); about 7x the embedding work "
        "at ingest. Fixed at creation.",
    )


class DedupThresholdsIn(Strict):
    phash_gate: int | None = Field(default=None, ge=0, le=11, description="pHash bits, 0..11.")
    near_exact_cosine: float | None = Field(default=None, gt=0, le=1)
    similar_cosine: float | None = Field(default=None, gt=0, le=1)


class CollectionUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=10_000)
    dedup: DedupThresholdsIn | None = Field(
        default=None,
        description="This collection's duplicate thresholds (unset fields keep the model's "
        "defaults).",
    )


class CollectionOut(BaseModel):
    id: str
    name: str
    description: str
    model: str
    model_id: str
    vector_name: str
    dim: int
    supports_text: bool
    vector_settings: dict[str, Any]
    created_at: datetime
    counts: dict[str, int] | None = None

    @classmethod
    def of(
        cls, c: Collection, *, supports_text: bool, counts: dict[str, int] | None = None
    ) -> CollectionOut:
        return cls(
            id=c.id,
            name=c.name,
            description=c.description,
            model=c.model,
            model_id=c.model_id,
            vector_name=c.vector_name,
            dim=c.dim,
            supports_text=supports_text,
            vector_settings=c.vector_settings,
            created_at=c.created_at,
            counts=counts,
        )


class AnomalyScoresOut(BaseModel):
    """Outlier scores, larger = more unusual (null until the image has been scored)."""

    dnn: float | None = Field(description="Cosine distance to the nearest other image.")
    density: float | None = Field(
        description="Mean distance to its k nearest relative to theirs (LOF-style; ~1 inside a "
        "cluster)."
    )
    ood: float | None = Field(
        description="z-score of its distance from the collection's mean direction."
    )


class ImageAnomalyOut(AnomalyScoresOut):
    reviewed_at: datetime | None

    @classmethod
    def of(cls, i: Image) -> ImageAnomalyOut:
        return cls(
            dnn=i.anomaly_dnn,
            density=i.anomaly_density,
            ood=i.anomaly_ood,
            reviewed_at=i.reviewed_at,
        )


class DuplicateVerdictOut(BaseModel):
    tier: str = Field(description="exact | near_exact | similar")
    image_id: str
    score: float = Field(description="Cosine similarity of the two embeddings.")


class ImageOut(BaseModel):
    id: str
    record_id: str
    collection_id: str
    sha256: str
    phash: str | None
    width: int
    height: int
    mime: str
    bytes: int
    source: str
    filename: str | None
    status: str
    error: str | None
    quality_score: float | None
    nsfw_score: float | None
    anomaly: ImageAnomalyOut
    duplicate: DuplicateVerdictOut | None = Field(
        default=None, description="The nearest image already in the collection at ingest."
    )
    created_at: datetime
    thumbnail_url: str
    preview_url: str
    original_url: str

    @classmethod
    def of(cls, i: Image) -> ImageOut:
        return cls(
            id=i.id,
            record_id=i.record_id,
            collection_id=i.collection_id,
            sha256=i.sha256,
            phash=i.phash,
            width=i.width,
            height=i.height,
            mime=i.mime,
            bytes=i.bytes,
            source=i.source,
            filename=i.filename,
            status=i.status,
            error=i.error,
            quality_score=i.quality_score,
            nsfw_score=i.nsfw_score,
            anomaly=ImageAnomalyOut.of(i),
            duplicate=DuplicateVerdictOut(
                tier=i.duplicate_tier, image_id=i.duplicate_of, score=i.duplicate_score or 0.0
            )
            if i.duplicate_tier and i.duplicate_of
            else None,
            created_at=i.created_at,
            thumbnail_url=thumbnail_url(i.id),
            preview_url=thumbnail_url(i.id),
            original_url=f"/api/images/{i.id}/original",
        )


class RecordOut(BaseModel):
    id: str
    collection_id: str
    name: str
    description: str
    tags: list[str]
    metadata: dict[str, Any]
    owner: str
    created_at: datetime
    images: list[ImageOut] = Field(default_factory=list)

    @classmethod
    def of(cls, r: Record, images: list[Image] | None = None) -> RecordOut:
        return cls(
            id=r.id,
            collection_id=r.collection_id,
            name=r.name,
            description=r.description,
            tags=list(r.tags),
            # A record stored before its metadata was checked must still be listable.
            metadata=dict(r.extra) if metadata_is_valid(r.extra) else {},
            owner=r.owner,
            created_at=r.created_at,
            images=[ImageOut.of(i) for i in (images or [])],
        )


class IngestResultOut(BaseModel):
    filename: str | None
    status: Literal["added", "duplicate", "rejected"]
    image_id: str | None
    record_id: str | None
    job_id: str | None = None
    error: dict[str, str] | None = None
    duplicate: DuplicateVerdictOut | None = Field(
        default=None,
        description="For status duplicate: the stored image with the same bytes (tier exact). "
        "An added image's near-duplicate verdict is on the image once embedded.",
    )

    @classmethod
    def of(cls, r: IngestResult) -> IngestResultOut:
        error = {"code": r.error_code or "", "message": r.reason or ""} if r.reason else None
        return cls(
            filename=r.filename,
            status=r.status,
            image_id=r.image_id,
            record_id=r.record_id,
            job_id=r.job_id,
            error=error,
            duplicate=DuplicateVerdictOut(tier="exact", image_id=r.image_id, score=1.0)
            if r.status == "duplicate" and r.image_id
            else None,
        )


class RecordPage(BaseModel):
    items: list[RecordOut]
    total: int
    limit: int
    offset: int


class RecordCreated(BaseModel):
    record: RecordOut
    results: list[IngestResultOut]


class RecordCreate(Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    tags: list[Tag] = Field(default_factory=list, max_length=TAGS_MAX)
    metadata: Metadata = Field(
        default_factory=dict, description="Any JSON object: at most 16 levels deep and 64 KiB."
    )
    owner: str | None = Field(default=None, min_length=1, max_length=OWNER_MAX)


class RecordUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    tags: list[Tag] | None = Field(default=None, max_length=TAGS_MAX)
    metadata: Metadata | None = None
    owner: str | None = Field(default=None, min_length=1, max_length=OWNER_MAX)


class SearchRequest(Strict):
    collection: str = Field(description="Collection id or name.")
    image_id: str | None = None
    text_query: str | None = Field(default=None, max_length=1000)
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=100_000)
    score_threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    filter: SearchFilters | None = None
    include_payload: bool = False
    phash_gate: int | None = Field(
        default=None,
        ge=0,
        le=11,
        description="Only images whose pHash is within this many bits of the query image's.",
    )
    use_crops: bool = Field(
        default=False,
        description="Also match the query against the crops of each image (a collection created "
        "with use_crops); a hit scores the best of its global and crop similarities.",
    )


class HitOut(WithPreview):
    """One search hit: what `lookalike search --json` prints too."""

    record_id: str
    name: str
    description: str
    score: float
    payload: dict[str, Any] | None


class SearchResponse(BaseModel):
    hits: list[HitOut]
    collection: str
    model_id: str


# --- feedback ----------------------------------------------------------------


class FeedbackQuery(Strict):
    """What the person was looking for: a search id, a query image id or a text (any of them)."""

    search_id: str | None = Field(default=None, max_length=26)
    image_id: str | None = Field(default=None, max_length=26)
    text: str | None = Field(default=None, max_length=1000)


class FeedbackCreate(Strict):
    image_id: str = Field(min_length=1, max_length=26)
    action: Literal["relevant", "irrelevant", "duplicate", "anomaly"]
    query: FeedbackQuery | str | None = Field(
        default=None, description="The query judged against; a plain string is a text query."
    )
    note: str | None = Field(default=None, max_length=4000)
    score: int | None = Field(default=None, ge=1, le=10, strict=True)


class FeedbackOut(BaseModel):
    id: str
    image_id: str | None
    user: str
    action: str | None
    query: FeedbackQuery
    note: str | None
    score: int | None
    created_at: datetime

    @classmethod
    def of(cls, f: Feedback) -> FeedbackOut:
        return cls(
            id=f.id,
            image_id=f.image_id,
            user=f.user,
            action=f.action,
            query=FeedbackQuery(
                search_id=f.search_id, image_id=f.query_image_id, text=f.query_text
            ),
            note=f.note,
            score=f.score,
            created_at=f.created_at,
        )


class FeedbackPage(BaseModel):
    items: list[FeedbackOut]
    total: int
    limit: int
    offset: int


# --- compatibility: the image-search-worker contract -------------------------------


class SearchImageRequest(Strict):
    text: str = Field(min_length=1, max_length=1000)
    collection: str | None = Field(
        default=None, description="Collection id or name; default: the configured or first one."
    )
    limit: int = Field(default=10, ge=1, le=100)


class ImageMatch(BaseModel):
    image_name: str
    score: float


class SearchImageResponse(BaseModel):
    text: str
    model_name: str
    matches: list[ImageMatch]
    jwt: str = Field(description="Rates this search with POST /api/v1/create-feedback.")


class CreateFeedbackRequest(Strict):
    user_feedback: int = Field(ge=1, le=10, strict=True)
    jwt: str = Field(min_length=1, max_length=8192)


class CreateFeedbackResponse(BaseModel):
    id: str
    search_id: str
    user_feedback: int


# --- anomaly review queue -----------------------------------------------------------


class AnomalyItemOut(WithPreview):
    """One image of the review queue: what `lookalike anomalies --json` prints too."""

    record_id: str
    name: str = Field(description="The record's name.")
    dnn: float | None = Field(exclude=True)
    density: float | None = Field(exclude=True)
    ood: float | None = Field(exclude=True)
    reviewed: bool
    reviewed_at: datetime | None
    reviewed_by: str | None
    review_note: str | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def scores(self) -> AnomalyScoresOut:
        return AnomalyScoresOut(dnn=self.dnn, density=self.density, ood=self.ood)


class AnomalyPage(BaseModel):
    items: list[AnomalyItemOut]
    total: int = Field(description="Images matching the filters, over all pages.")


class AnomalyReview(Strict):
    reviewed: bool = Field(strict=True, description="false puts the image back in the queue.")
    note: str | None = Field(
        default=None, max_length=4000, description="Replaces the image's review note."
    )


class AnomalyRecompute(Strict):
    collection: str = Field(min_length=1, max_length=128, description="Collection id or name.")


class JobAccepted(BaseModel):
    job_id: str = Field(description="Follow it at GET /api/jobs/{id}; its `result` when done.")
