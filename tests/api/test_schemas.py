"""The response shapes read from the catalog's objects: the fields whose source is not one
attribute of the object (several columns, a guard, the route's own knowledge)."""

from __future__ import annotations

from datetime import UTC, datetime

from lookalike.api.schemas import (
    CollectionOut,
    FeedbackOut,
    ImageOut,
    IngestResultOut,
    RecordOut,
    with_attributes,
)
from lookalike.catalog import Collection, Feedback, Image, Record
from lookalike.ingest.pipeline import IngestResult

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _image(**columns: object) -> Image:
    return Image(
        id="img1",
        record_id="rec1",
        collection_id="col1",
        sha256="0" * 64,
        width=3,
        height=4,
        mime="image/png",
        bytes=10,
        source="api",
        status="ready",
        created_at=WHEN,
        **columns,
    )


def test_image_gathers_its_verdicts_and_links_its_bytes() -> None:
    shown = ImageOut.model_validate(
        _image(duplicate_tier="similar", duplicate_of="img0", anomaly_dnn=0.25, reviewed_at=WHEN)
    ).model_dump(mode="json")
    assert shown["duplicate"] == {
        "tier": "similar",
        "image_id": "img0",
        "score": 0.0,
        "record_id": None,  # named by the route that has the catalog at hand
        "record_name": None,
    }
    assert shown["anomaly"] == {
        "dnn": 0.25,
        "density": None,
        "ood": None,
        "reviewed_at": "2026-01-02T03:04:05Z",
    }
    assert shown["thumbnail_url"] == shown["preview_url"] == "/api/images/img1/thumbnail"
    assert shown["original_url"] == "/api/images/img1/original"
    assert ImageOut.model_validate(_image(duplicate_tier="similar")).duplicate is None


def test_record_reads_its_images_and_hides_metadata_stored_before_it_was_checked() -> None:
    record = Record(
        id="rec1",
        collection_id="col1",
        name="cup",
        description="",
        tags=["a"],
        extra={"notes": "x" * 70_000},  # over 64 KiB
        owner="alice",
        created_at=WHEN,
    )
    record.images = [_image()]
    shown = RecordOut.model_validate(record)
    assert shown.metadata == {}
    assert [i.id for i in shown.images] == ["img1"]
    record.extra = {"colour": "red"}
    assert RecordOut.model_validate(record).metadata == {"colour": "red"}


def test_ingest_result_says_why_and_what_it_duplicates() -> None:
    rejected = IngestResultOut.model_validate(
        IngestResult("a.png", "rejected", error_code="too_large", reason="over 1 MB")
    )
    assert rejected.error == {"code": "too_large", "message": "over 1 MB"}
    assert rejected.duplicate is None
    duplicate = IngestResultOut.model_validate(IngestResult("b.png", "duplicate", "img1", "rec1"))
    assert duplicate.error is None
    assert duplicate.duplicate is not None and duplicate.duplicate.image_id == "img1"


def test_feedback_query_is_its_own_columns_not_the_judged_image() -> None:
    feedback = Feedback(
        id="fb1",
        tenant="t",
        image_id="img1",
        user="alice",
        action="relevant",
        query_image_id="img2",
        query_text="a cup",
        created_at=WHEN,
    )
    shown = FeedbackOut.model_validate(feedback)
    assert shown.image_id == "img1"
    assert shown.query.model_dump() == {"search_id": None, "image_id": "img2", "text": "a cup"}


def test_collection_takes_what_the_service_knows_as_added_attributes() -> None:
    collection = Collection(
        id="col1",
        tenant="t",
        name="cups",
        description="",
        model="m",
        model_id="m@1",
        vector_name="v",
        dim=4,
        vector_settings={},
        created_at=WHEN,
    )
    shown = CollectionOut.model_validate(
        with_attributes(collection, supports_text=True, counts={"records": 2})
    )
    assert (shown.name, shown.supports_text, shown.counts) == ("cups", True, {"records": 2})
