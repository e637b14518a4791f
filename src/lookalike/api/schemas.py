"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    field_validator,
    model_validator,
)

from lookalike.catalog import Feedback, Image
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


class _Extended:
    def __init__(self, obj: object, added: dict[str, Any]) -> None:
        self.__dict__.update(added)
        self._obj = obj

    def __getattr__(self, name: str) -> Any:  # only asked for what `added` lacks
        return getattr(self._obj, name)


def with_attributes(obj: object, **added: Any) -> object:
    """`obj` with `added` as attributes too, for a shape that reads attributes
    (`Shape.model_validate(with_attributes(collection, supports_text=...))`): the fields whose
    source is not one attribute of the object."""
    return _Extended(obj, added)


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
    ocr: Literal["off", "pages", "all"] | None = Field(
        default=None,
        description="Read text in images with OCR after they are searchable: `pages` for PDF "
        "pages without a text layer, `all` for every image too, `off` for none. Default: the "
        "server's LOOKALIKE_OCR.",
    )


class DedupThresholdsIn(Strict):
    """Duplicate thresholds (docs/quality.md). Unset fields keep the model's defaults."""

    phash_gate: int | None = Field(default=None, ge=0, le=11, description="pHash bits, 0..11.")
    near_exact_cosine: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="The cosine near_exact needs at the pHash gate when the geometric check "
        "has nothing to go on (too few features).",
    )
    similar_cosine: float | None = Field(default=None, gt=0, le=1)
    geometric_check: bool | None = Field(
        default=None,
        description="Decide near_exact by local features under one homography (default on).",
    )
    min_keypoints: int | None = Field(default=None, ge=4, le=10_000)
    min_inliers: int | None = Field(default=None, ge=4, le=10_000)
    min_overlap: float | None = Field(
        default=None, ge=0, le=1, description="Smallest share of a frame a copy may keep."
    )
    min_containment: float | None = Field(default=None, ge=0, le=1)
    min_correlation: float | None = Field(default=None, ge=-1, le=1)
    max_second_plane: float | None = Field(default=None, ge=0, le=1)
    min_spread: float | None = Field(default=None, ge=0, le=1)


class CollectionUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=10_000)
    dedup: DedupThresholdsIn | None = Field(
        default=None,
        description="This collection's duplicate thresholds (unset fields keep the model's "
        "defaults).",
    )


class CollectionOut(BaseModel):
    # Read from a Collection with what the service says of it added (`with_attributes`):
    # `supports_text` and, where a route counts them, `counts`.
    model_config = ConfigDict(from_attributes=True)
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
    counts: dict[str, int] | None = Field(
        default=None,
        description="records, images, images_<status>, and images_enriching: images whose "
        "enrichment stages have not all run yet.",
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
    # Read from an Image, whose columns are its scores' names with `anomaly_` in front.
    model_config = ConfigDict(
        from_attributes=True,
        alias_generator=AliasGenerator(validation_alias=lambda score: f"anomaly_{score}"),
    )
    reviewed_at: datetime | None = Field(validation_alias="reviewed_at")  # not a score


class DuplicateVerdictOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    tier: str = Field(description="exact | near_exact | similar")
    image_id: str
    score: float = Field(description="Cosine similarity of the two embeddings.")
    record_id: str | None = Field(
        default=None, description="The record of that image (in upload results)."
    )
    record_name: str | None = Field(
        default=None, description='Its name, to say "near-exact copy of <name>".'
    )


class ImageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
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
    page: int | None = Field(
        default=None, description="The 1-based page of the record's PDF this image is, if any."
    )
    status: str
    error: str | None
    quality_score: float | None
    nsfw_score: float | None
    anomaly: ImageAnomalyOut
    duplicate: DuplicateVerdictOut | None = Field(
        default=None,
        description="The nearest image already in the collection when it was added (null until "
        "the duplicate stage has run, or when none is near).",
    )
    created_at: datetime
    enrichment: dict[str, Literal["pending", "running", "done", "failed", "skipped"]] | None = (
        Field(
            default=None,
            description="State of each enrichment stage (thumbnail, quality, nsfw, duplicate, "
            "anomaly): the work done after the image is searchable. In `GET /api/images/{id}` "
            "only; empty for images stored before stages existed.",
        )
    )

    @model_validator(mode="before")
    @classmethod
    def _verdicts(cls, image: Any) -> Any:
        """`anomaly` and `duplicate` each gather several of the image's columns."""
        if not isinstance(image, Image):
            return image
        duplicate = (
            DuplicateVerdictOut(
                tier=image.duplicate_tier,
                image_id=image.duplicate_of,
                score=image.duplicate_score or 0.0,
            )
            if image.duplicate_tier and image.duplicate_of
            else None
        )
        return with_attributes(image, anomaly=image, duplicate=duplicate)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def thumbnail_url(self) -> str:
        return thumbnail_url(self.id)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def preview_url(self) -> str:
        return self.thumbnail_url

    @computed_field  # type: ignore[prop-decorator]
    @property
    def original_url(self) -> str:
        return f"/api/images/{self.id}/original"


class RecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    collection_id: str
    name: str
    description: str
    tags: list[str]
    metadata: dict[str, Any] = Field(validation_alias="extra")
    owner: str
    created_at: datetime
    images: list[ImageOut] = Field(default_factory=list)

    @field_validator("metadata", mode="before")
    @classmethod
    def _listable(cls, extra: Any) -> Any:
        # A record stored before its metadata was checked must still be listable.
        return extra if metadata_is_valid(extra) else {}


class IngestResultOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    filename: str | None
    status: Literal["added", "duplicate", "rejected"]
    image_id: str | None
    record_id: str | None
    job_id: str | None = None
    error: dict[str, str] | None = None
    duplicate: DuplicateVerdictOut | None = Field(
        default=None,
        description="For status duplicate: the stored image with the same bytes (tier exact). "
        "For an added image, when the request waited (`wait=true`): the stored image it is a "
        "near-exact copy of or similar to, if any; otherwise the verdict comes on the image "
        "(`GET /api/images/{id}`) once its duplicate stage has run.",
    )

    @model_validator(mode="before")
    @classmethod
    def _verdicts(cls, result: Any) -> Any:
        """`error` gathers the code and the reason; `duplicate` says what the status implies."""
        if not isinstance(result, IngestResult):
            return result
        return with_attributes(
            result,
            error={"code": result.error_code or "", "message": result.reason or ""}
            if result.reason
            else None,
            duplicate=DuplicateVerdictOut.model_validate(result.duplicate_of)
            if result.duplicate_of is not None
            else DuplicateVerdictOut(tier="exact", image_id=result.image_id, score=1.0)
            if result.status == "duplicate" and result.image_id
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
    include_weaker: bool = Field(
        default=False,
        description="Also list the weaker matches: hits below the model's relevance cut-off "
        "(`cutoff` in the answer), which are hidden by default. A score_threshold of your own "
        "replaces the cut-off.",
    )
    mode: Literal["vector", "keyword", "hybrid"] | None = Field(
        default=None,
        description="How a text_query is matched: `vector` (the model's text embedding), "
        "`keyword` (full text of names, descriptions, tags and page text) or `hybrid` (both, "
        "fused by reciprocal rank; the default). With a model that embeds images only, "
        "`hybrid` and `keyword` answer by keyword (`mode` in the answer says so). Not for an "
        "image query.",
    )

    @model_validator(mode="after")
    def _mode_is_for_text(self) -> SearchRequest:
        if self.mode is not None and self.text_query is None:
            raise ValueError("mode applies to text_query only; an image query is matched by vector")
        return self


class HitOut(WithPreview):
    """One search hit: what `lookalike search --json` prints too."""

    record_id: str
    name: str
    description: str
    score: float = Field(
        description="Cosine similarity in vector mode; in keyword and hybrid mode the "
        "reciprocal-rank-fusion score, which orders one answer and means nothing across answers."
    )
    payload: dict[str, Any] | None
    matched: list[Literal["keyword", "vector"]] = Field(
        default_factory=list, description="Which sides found this hit."
    )


class SearchResponse(BaseModel):
    hits: list[HitOut]
    collection: str
    model_id: str
    more: bool = Field(
        default=False, description="There are more hits after this page (at the same cut-off)."
    )
    cutoff: float | None = Field(
        default=None,
        description="The relevance cut-off that was applied (null: none): hits scoring below it "
        "are not matches for this model and are left out unless include_weaker.",
    )
    weaker: bool = Field(
        default=False,
        description="Hits below the cut-off exist: ask again with include_weaker to see them.",
    )
    unscored: dict[str, int] = Field(
        default_factory=dict,
        description="For each computed score the filter reads (quality, nsfw): how many images "
        "of the collection have none yet (enrichment pending or failed, or scoring off). A "
        "condition on a score leaves such images out.",
    )
    mode: Literal["vector", "keyword", "hybrid"] = Field(
        default="vector",
        description="How the query was matched: `keyword` where a text asked for in hybrid mode "
        "was matched by keyword alone, because the collection's model embeds images only.",
    )
    notes: list[str] = Field(
        default_factory=list,
        description="What to know of this answer, in words: `unscored`, a text matched by "
        "keyword alone.",
    )


# --- ask (image RAG) ---------------------------------------------------------


class AskRequest(Strict):
    question: str = Field(min_length=1, max_length=2000)
    collection: str = Field(description="Collection id or name.")
    filter: SearchFilters | None = None
    k: int = Field(default=5, ge=1, le=50, description="How many pages or images to retrieve.")
    mode: Literal["vector", "keyword", "hybrid"] = Field(
        default="hybrid", description="How the pages are retrieved, as in /api/search/similar."
    )
    stream: bool = Field(
        default=False,
        description="Answer as server-sent events: `sources` (the retrieval, at once), `delta` "
        "(`{text}`, each piece of the answer), then `done` (the whole AskResponse with its "
        "citations), or `error` (`{error: {code, message}}`) if the model fails half-way.",
    )


class AskSourceOut(WithPreview):
    """A retrieved page or image, numbered as the prompt and the answer's [n] number it."""

    number: int
    record_id: str
    name: str
    description: str
    page: int | None = Field(description="1-based page of a document; null for an image.")
    score: float
    matched: list[Literal["keyword", "vector"]]
    text: str = Field(description="The text the model was given (text layer or OCR, cut to fit).")
    in_prompt: bool = Field(
        description="False: retrieved, but left out of the prompt by the context budget."
    )


class CitationOut(WithPreview):
    source: int = Field(description="The `number` of the cited source.")
    record_id: str
    name: str
    page: int | None
    text: str = Field(description="The sentence of the source that supports the answer.")
    boxes: list[list[float]] = Field(
        description="Boxes [x0, y0, x1, y1] of those words in the image's pixels (from the text "
        "layer or OCR), to highlight them; empty when the words have no boxes."
    )
    cited_by_model: bool = Field(
        description="False: the model cited nothing, and this source was matched to the answer "
        "by the words they share."
    )


class AskResponse(BaseModel):
    question: str
    answer: str | None = Field(description="Null when no chat model is configured.")
    model: str | None
    citations: list[CitationOut]
    sources: list[AskSourceOut]
    mode: Literal["vector", "keyword", "hybrid"]
    notes: list[str] = Field(default_factory=list)


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
    model_config = ConfigDict(from_attributes=True)
    id: str
    image_id: str | None
    user: str
    action: str | None
    query: FeedbackQuery
    note: str | None
    score: int | None
    created_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _query(cls, feedback: Any) -> Any:
        """The query is three of the feedback's columns (its `image_id` is the judged image)."""
        if not isinstance(feedback, Feedback):
            return feedback
        query = FeedbackQuery(
            search_id=feedback.search_id, image_id=feedback.query_image_id, text=feedback.query_text
        )
        return with_attributes(feedback, query=query)


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
    model_config = ConfigDict(from_attributes=True)
    image_name: str
    score: float


class SearchImageResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    text: str
    model_name: str
    matches: list[ImageMatch]
    jwt: str = Field(
        validation_alias="token",
        description="Rates this search with POST /api/v1/create-feedback.",
    )


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
    priority: float = Field(
        description="Review priority 0..1: the larger of junk (1 - the weakest quality factor) "
        "and outlierness (the ood z-score, 3 sigma at the cut-off)."
    )
    needs_review: bool = Field(description="priority at or above the cut-off (0.85).")
    reasons: list[str] = Field(description="Why it needs review, in words.")

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
