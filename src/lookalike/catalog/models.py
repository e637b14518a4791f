"""The catalog schema: the source of truth. The vector engine can be rebuilt from it.

Change a model only together with a new migration in `catalog/migrations/versions/`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from ulid import ULID


def new_id() -> str:
    """A ULID: sortable by creation time, 26 characters."""
    return str(ULID())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite and MySQL drop the offset otherwise."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; use an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


IMAGE_STATUSES = ("pending", "embedded", "failed")
JOB_STATUSES = ("queued", "running", "done", "failed")
FEEDBACK_ACTIONS = ("relevant", "irrelevant", "duplicate", "anomaly")
DUPLICATE_TIERS = ("exact", "near_exact", "similar")
CLUSTER_STATUSES = ("open", "duplicate", "not_duplicate", "merged")
PAIR_VERDICTS = ("same", "different")


class Collection(Base):
    __tablename__ = "collection"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_collection_tenant_name"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    # Registry name of the model and the exact weights (`name@hash`) the vectors were made with.
    model: Mapped[str] = mapped_column(String(128))
    model_id: Mapped[str] = mapped_column(String(160))
    vector_name: Mapped[str] = mapped_column(String(128))
    dim: Mapped[int] = mapped_column(Integer)
    vector_settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    records: Mapped[list[Record]] = relationship(
        back_populates="collection", cascade="all, delete-orphan", passive_deletes=True
    )


class Record(Base):
    __tablename__ = "record"
    __table_args__ = (Index("ix_record_collection_created", "collection_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    collection_id: Mapped[str] = mapped_column(
        ForeignKey("collection.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(512))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(default=list)
    # `metadata` is taken by SQLAlchemy's declarative base.
    extra: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    collection: Mapped[Collection] = relationship(back_populates="records")
    images: Mapped[list[Image]] = relationship(
        back_populates="record",
        cascade="all, delete-orphan",
        passive_deletes=True,
        # A document's pages in page order (photos have no page: then by id, upload order).
        order_by="(Image.page, Image.id)",
    )


class Image(Base):
    __tablename__ = "image"
    __table_args__ = (
        # Idempotent ingest: the same bytes land once per collection.
        UniqueConstraint("collection_id", "sha256", name="uq_image_collection_sha256"),
        Index("ix_image_collection_status", "collection_id", "status"),
        Index("ix_image_collection_dnn", "collection_id", "anomaly_dnn"),
        Index("ix_image_collection_density", "collection_id", "anomaly_density"),
        Index("ix_image_collection_ood", "collection_id", "anomaly_ood"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    record_id: Mapped[str] = mapped_column(ForeignKey("record.id", ondelete="CASCADE"), index=True)
    collection_id: Mapped[str] = mapped_column(
        ForeignKey("collection.id", ondelete="CASCADE"), index=True
    )
    sha256: Mapped[str] = mapped_column(String(64))
    phash: Mapped[str | None] = mapped_column(String(16), default=None)
    width: Mapped[int] = mapped_column(Integer, default=0)
    height: Mapped[int] = mapped_column(Integer, default=0)
    mime: Mapped[str] = mapped_column(String(64), default="")
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    source: Mapped[str] = mapped_column(String(16), default="upload")
    filename: Mapped[str | None] = mapped_column(String(1024), default=None)
    # A page of a document (a PDF): its 1-based number; None for a photo.
    page: Mapped[int | None] = mapped_column(Integer, default=None)
    blob_key: Mapped[str | None] = mapped_column(String(128), default=None)
    thumbnail_key: Mapped[str | None] = mapped_column(String(128), default=None)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    model_id: Mapped[str | None] = mapped_column(String(160), default=None)
    quality_score: Mapped[float | None] = mapped_column(Float, default=None)
    # The weakest quality factor and the factors under 0.5 (`quality.scores`): why it scored low.
    quality_worst: Mapped[float | None] = mapped_column(Float, default=None)
    quality_issues: Mapped[list[str] | None] = mapped_column(default=None)
    nsfw_score: Mapped[float | None] = mapped_column(Float, default=None)
    # The duplicate verdict made at ingest: the nearest image already in the collection.
    duplicate_tier: Mapped[str | None] = mapped_column(String(16), default=None)
    duplicate_of: Mapped[str | None] = mapped_column(
        ForeignKey("image.id", ondelete="SET NULL", name="fk_image_duplicate_of"), default=None
    )
    duplicate_score: Mapped[float | None] = mapped_column(Float, default=None)
    # Anomaly scores (see quality/anomalies.py): columns, so the review queue sorts in the database.
    anomaly_dnn: Mapped[float | None] = mapped_column(Float, default=None)
    anomaly_density: Mapped[float | None] = mapped_column(Float, default=None)
    anomaly_ood: Mapped[float | None] = mapped_column(Float, default=None)
    anomaly_at: Mapped[datetime | None] = mapped_column(default=None)
    reviewed_at: Mapped[datetime | None] = mapped_column(default=None)
    reviewed_by: Mapped[str | None] = mapped_column(String(128), default=None)
    review_note: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    embedded_at: Mapped[datetime | None] = mapped_column(default=None)

    record: Mapped[Record] = relationship(back_populates="images")


class Job(Base):
    """Durable background work. A restart re-queues what was queued or running."""

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))
    collection_id: Mapped[str | None] = mapped_column(
        ForeignKey("collection.id", ondelete="CASCADE"), index=True, default=None
    )
    image_id: Mapped[str | None] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), index=True, default=None
    )
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ImageStage(Base):
    """One enrichment stage of one image (thumbnail, quality, nsfw, duplicate, anomaly): work
    done after the image is searchable, claimed in batches by whichever process runs the stages.

    `pending` rows are claimable; a `running` row whose lease has run out (its worker died) is
    claimable again. `done`, `failed` (after `attempts` tries; `error` says why) and `skipped`
    (switched off or not applicable) are final until the stage is requeued.
    """

    __tablename__ = "image_stage"
    __table_args__ = (
        Index("ix_image_stage_claim", "stage", "status", "lease_until"),
        Index("ix_image_stage_collection_status", "collection_id", "status"),
        CheckConstraint(
            "status IN ('pending', 'running', 'done', 'failed', 'skipped')",
            name="ck_image_stage_status",
        ),
    )

    image_id: Mapped[str] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
    )
    stage: Mapped[str] = mapped_column(String(16), primary_key=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collection.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A long-lived credential for one user of one tenant. Only a hash of the secret is kept."""

    __tablename__ = "api_key"

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    user: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128), default="")
    # The public part of the key (`lk_<prefix>_...`): finds the row without scanning hashes.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Feedback(Base):
    """A person's verdict on an image (an action) or on a search (a 1-10 score)."""

    __tablename__ = "feedback"
    __table_args__ = (
        CheckConstraint(
            "action IS NULL OR action IN ('relevant', 'irrelevant', 'duplicate', 'anomaly')",
            name="ck_feedback_action",
        ),
        CheckConstraint("score IS NULL OR (score >= 1 AND score <= 10)", name="ck_feedback_score"),
        CheckConstraint("action IS NOT NULL OR score IS NOT NULL", name="ck_feedback_kind"),
        Index("ix_feedback_image_created", "image_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    # Empty for a score given to a whole search (`/api/v1/create-feedback`).
    image_id: Mapped[str | None] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), default=None
    )
    user: Mapped[str] = mapped_column(String(128))
    action: Mapped[str | None] = mapped_column(String(16), default=None)
    # What the person was looking for when they judged: a search, a query image or a text.
    search_id: Mapped[str | None] = mapped_column(String(26), index=True, default=None)
    query_image_id: Mapped[str | None] = mapped_column(String(26), default=None)
    query_text: Mapped[str | None] = mapped_column(Text, default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    score: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DuplicateCluster(Base):
    """A group of images a dedup sweep found to be copies of each other, and what people did."""

    __tablename__ = "duplicate_cluster"
    __table_args__ = (
        CheckConstraint(
            "tier IN ('exact', 'near_exact', 'similar')", name="ck_duplicate_cluster_tier"
        ),
        Index("ix_duplicate_cluster_collection_status", "collection_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collection.id", ondelete="CASCADE"))
    # The job (sweep) that found it; a new sweep replaces the open clusters of the last one.
    sweep_id: Mapped[str | None] = mapped_column(String(26), index=True, default=None)
    tier: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")
    keeper_image_id: Mapped[str | None] = mapped_column(
        ForeignKey("image.id", ondelete="SET NULL"), default=None
    )
    decided_by: Mapped[str | None] = mapped_column(String(128), default=None)
    # A near-exact cluster inside a similar one (copies of one photo among shots of a scene).
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("duplicate_cluster.id", ondelete="SET NULL"), index=True, default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    members: Mapped[list[DuplicateClusterMember]] = relationship(
        back_populates="cluster",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="DuplicateClusterMember.image_id",
    )


class DuplicateClusterMember(Base):
    __tablename__ = "duplicate_cluster_member"

    cluster_id: Mapped[str] = mapped_column(
        ForeignKey("duplicate_cluster.id", ondelete="CASCADE"), primary_key=True
    )
    image_id: Mapped[str] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # Cosine similarity to the keeper (1.0 for the keeper itself).
    score: Mapped[float] = mapped_column(Float, default=1.0)

    cluster: Mapped[DuplicateCluster] = relationship(back_populates="members")


class PairVerdict(Base):
    """A person's "same" / "different" decision on two images; every later sweep honours it.

    Rows are never updated: a later decision on the same pair is a new row and wins, so the
    history stays. `image_a < image_b` always.
    """

    __tablename__ = "pair_verdict"
    __table_args__ = (
        CheckConstraint("verdict IN ('same', 'different')", name="ck_pair_verdict_verdict"),
        CheckConstraint("image_a < image_b", name="ck_pair_verdict_order"),
        Index("ix_pair_verdict_pair", "collection_id", "image_a", "image_b", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64))
    collection_id: Mapped[str] = mapped_column(ForeignKey("collection.id", ondelete="CASCADE"))
    image_a: Mapped[str] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    image_b: Mapped[str] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    user: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImagePairMatch(Base):
    """What the geometry said of two images (`imaging.photo_match`): measured once, when a
    duplicate verdict or a sweep first needs it, and kept so that neither measures it again.
    The figures, not a verdict, are kept: thresholds may change later. `method` is the
    measurement's version; rows of an older one are measured again. `image_a < image_b`.
    """

    __tablename__ = "image_pair_match"
    __table_args__ = (CheckConstraint("image_a < image_b", name="ck_image_pair_match_order"),)

    image_a: Mapped[str] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
    )
    image_b: Mapped[str] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    collection_id: Mapped[str] = mapped_column(
        ForeignKey("collection.id", ondelete="CASCADE"), index=True
    )
    method: Mapped[int] = mapped_column(Integer)
    keypoints: Mapped[int] = mapped_column(Integer)
    matches: Mapped[int] = mapped_column(Integer)
    inliers: Mapped[int] = mapped_column(Integer)
    overlap: Mapped[float] = mapped_column(Float)
    containment: Mapped[float] = mapped_column(Float)
    correlation: Mapped[float] = mapped_column(Float)
    second_plane: Mapped[float] = mapped_column(Float)
    spread: Mapped[float] = mapped_column(Float)
    same_pixels: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImageText(Base):
    """The words of an image: a PDF page's text layer, or what OCR read. `words` holds each word
    with its box in the image's pixels, `[x0, y0, x1, y1, text, confidence]`, so that a citation
    can highlight where its text is. One row per image and source."""

    __tablename__ = "image_text"

    image_id: Mapped[str] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(16), primary_key=True)  # text_layer | ocr
    collection_id: Mapped[str] = mapped_column(
        ForeignKey("collection.id", ondelete="CASCADE"), index=True
    )
    text: Mapped[str] = mapped_column(Text, default="")
    words: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReembedTask(Base):
    """An image embedded by a fallback model of its collection's chain (`embedding.fallback`),
    waiting for the collection's own model to embed it again. Tried at `next_attempt_at`,
    backing off while that model stays down; the row goes once the image has moved."""

    __tablename__ = "reembed_task"
    __table_args__ = (Index("ix_reembed_task_due", "next_attempt_at"),)

    image_id: Mapped[str] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
    )
    collection_id: Mapped[str] = mapped_column(
        ForeignKey("collection.id", ondelete="CASCADE"), index=True
    )
    # The model the image was embedded with, and the one it waits for.
    from_model_id: Mapped[str] = mapped_column(String(160))
    to_model_id: Mapped[str] = mapped_column(String(160))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
