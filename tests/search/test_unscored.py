"""A filter on a score that is not computed yet leaves those images out, and says so."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from lookalike.api.app import create_app
from lookalike.composition import Lookalike
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.records.service import create_collection
from lookalike.search import SearchFilters
from support import make_settings

NAMES = ("coffee", "chelsea", "rocket", "astronaut")


def test_filters_on_scores_not_computed_yet_say_how_many_images_they_leave_out(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    settings = make_settings(tmp_path / "data", models_dir, enrichment=False)
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        coll = create_collection(rt, "default", "shop")
        items = [(NewRecord(name=n, owner="o"), IngestFile(photos[n], n)) for n in NAMES]
        ids = [r.image_id for r in rt.ingest.add_many(coll, items, wait=True)]

        def search(filter_: dict[str, object] | None) -> dict[str, object]:
            body = {
                "collection": "shop",
                "image_id": ids[0],
                "limit": 10,
                "filter": filter_,
                "include_weaker": True,
            }
            r = client.post("/api/search/similar", json=body)
            assert r.status_code == 200, r.text
            return dict(r.json())

        # Searchable, not scored: a filter on a score finds nothing and says why.
        everything = search(None)
        assert len(everything["hits"]) == 3 and everything["unscored"] == {}  # type: ignore[arg-type]
        found = search({"min_quality": 0.0, "max_nsfw": 1.0})
        assert found["hits"] == []
        assert found["unscored"] == {"nsfw": 4, "quality": 4}
        notes = found["notes"]
        assert isinstance(notes, list) and len(notes) == 2
        assert notes[0].startswith("4 images of this collection have no nsfw score yet")
        # Deep in the boolean form too; a filter on other fields says nothing.
        nested = {"must": [{"should": [{"key": "quality", "range": {"gte": 0}}]}]}
        assert search(nested)["unscored"] == {"quality": 4}
        assert search({"owner": "o"})["unscored"] == {}
        assert SearchFilters.model_validate(nested).score_fields() == {"quality"}

        # Scored: the same filters find them, and nothing is said.
        rt.enrichment.drain()
        found = search({"min_quality": 0.0, "max_nsfw": 1.0})
        assert len(found["hits"]) == 3  # type: ignore[arg-type]
        assert found["unscored"] == {} and found["notes"] == []
