"""Crop embeddings: a query that shows part of an image finds that image (`use_crops`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from lookalike.api.app import create_app
from lookalike.composition import Lookalike
from lookalike.core.errors import InvalidInput
from lookalike.embedding.crops import (
    MAX_CROPS,
    crop_boxes,
    crops_vector_name,
    grid_boxes,
    salient_boxes,
    uses_crops,
)
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.records.service import VectorOptions, create_collection
from lookalike.search import search_similar
from support import jpeg, make_settings, open_image, wait_until

# --- which crops --------------------------------------------------------------------------------


def test_grid_cells_overlap_and_cover_the_image() -> None:
    cells = grid_boxes(600, 400)
    assert cells == [(0, 0, 360, 240), (240, 0, 600, 240), (0, 160, 360, 400), (240, 160, 600, 400)]


def test_crops_of_the_sample_photos(photos: dict[str, bytes]) -> None:
    for name in ("astronaut", "coffee", "chelsea", "text", "rocket"):
        image = open_image(photos[name])
        boxes = crop_boxes(image)
        assert boxes == crop_boxes(image), name  # deterministic
        assert 4 < len(boxes) <= MAX_CROPS, name
        for left, top, right, bottom in boxes:
            assert 0 <= left < right <= image.width and 0 <= top < bottom <= image.height
        for left, top, right, bottom in boxes[4:]:
            assert abs((right - left) - (bottom - top)) <= 1, name  # squares, as the model sees
    # The coffee cup is the salient object of its photo: the first salient crop holds its middle.
    left, top, right, bottom = crop_boxes(open_image(photos["coffee"]))[4]
    assert left < 300 < right and top < 200 < bottom


def test_a_flat_image_has_only_the_grid() -> None:
    flat = PILImage.new("RGB", (320, 240), (90, 120, 30))
    assert salient_boxes(flat) == []
    assert len(crop_boxes(flat)) == 4


def test_crops_are_a_collection_setting() -> None:
    assert uses_crops({"use_crops": True}) and not uses_crops({}) and not uses_crops(None)
    assert crops_vector_name("efficientnet-lite0-abc") == "efficientnet-lite0-abc-crops"


# --- ingest and search ------------------------------------------------------------------------

# (source photo, box): things to paste into other photos, as a product shot in a scene.
PRODUCTS = {
    "cat": ("chelsea", (60, 20, 300, 260)),
    "cup": ("coffee", (100, 20, 500, 380)),
    "rocket": ("rocket", (250, 0, 400, 427)),
    "helmet": ("astronaut", (300, 300, 512, 512)),
    "cameraman": ("camera", (100, 50, 400, 350)),
}
BACKGROUNDS = ("grass", "brick", "gravel", "hubble_deep_field", "moon")
SPOTS = ((40, 40), (380, 260), (380, 40), (40, 260), (200, 150))
DISTRACTORS = (
    "motorcycle_right",
    "retina",
    "coins",
    "text",
    "cell",
    "clock_motion",
    "grace_hopper",
)


def _product(photos: dict[str, bytes], name: str) -> PILImage.Image:
    source, box = PRODUCTS[name]
    return open_image(photos[source]).crop(box)


def _scenes(photos: dict[str, bytes]) -> dict[str, PILImage.Image]:
    """Each product, 140 px wide, pasted into a 640x480 background: about 6% of the scene."""
    scenes = {}
    for name, background, spot in zip(PRODUCTS, BACKGROUNDS, SPOTS, strict=True):
        scene = open_image(photos[background]).resize((640, 480))
        product = _product(photos, name)
        product = product.resize((140, round(140 * product.height / product.width)))
        scene.paste(
            product, (min(spot[0], 640 - product.width), min(spot[1], 480 - product.height))
        )
        scenes[name] = scene
    return scenes


def test_a_product_finds_the_scene_it_is_in(rt: Lookalike, photos: dict[str, bytes]) -> None:
    # The same scenes and distractors, in a collection without crops and in one with.
    items = [(f"scene:{n}", jpeg(im)) for n, im in _scenes(photos).items()]
    items += [(n, photos[n]) for n in DISTRACTORS]
    plain = create_collection(rt, "default", "plain")
    cropped = create_collection(rt, "default", "cropped", options=VectorOptions(use_crops=True))
    for coll in (plain, cropped):
        results = rt.ingest.add_many(
            coll, [(NewRecord(name=n, owner="a"), IngestFile(d, n)) for n, d in items], wait=True
        )
        assert {r.status for r in results} == {"added"}

    # Stored: the global vector, and the crops as a cosine multivector of the same model.
    assert cropped.vector_settings["use_crops"] is True
    assert plain.vector_settings["use_crops"] is False
    specs = {s.name: s for s in rt.vectors.vector_specs(cropped.id)}
    crops = specs[crops_vector_name(cropped.vector_name)]
    assert crops.multivector and crops.dim == cropped.dim and crops.distance == "cosine"
    assert [s.name for s in rt.vectors.vector_specs(plain.id)] == [plain.vector_name]
    points = list(rt.vectors.iter_points(cropped.id, with_vectors=True))
    assert len(points) == len(items)
    for point in points:
        assert point.vectors[cropped.vector_name].shape == (cropped.dim,)
        assert 4 < point.vectors[crops.name].shape[0] <= MAX_CROPS

    ranks: dict[bool, list[int]] = {False: [], True: []}
    margins: dict[bool, list[float]] = {False: [], True: []}
    for name in PRODUCTS:
        query = jpeg(_product(photos, name))
        for use_crops, coll in ((False, plain), (True, cropped)):
            hits = search_similar(
                rt, "default", coll, image_bytes=query, limit=20, use_crops=use_crops
            )
            names = [h.name for h in hits]
            rank = names.index(f"scene:{name}")
            ranks[use_crops].append(rank + 1)
            margins[use_crops].append(
                hits[rank].score - max(h.score for i, h in enumerate(hits) if i != rank)
            )
    # With crops every product finds its scene first, by a wide margin ...
    assert ranks[True] == [1] * len(PRODUCTS), ranks
    assert min(margins[True]) > 0.1, margins
    # ... where the global vectors alone lose some among the distractors (measured with
    # EfficientNet-Lite0: ranks [1, 1, 1, 2, 3] and margins -0.02 to 0.35, against margins
    # 0.24 to 0.44 with crops).
    assert sum(ranks[True]) < sum(ranks[False]), ranks
    mean_gain = sum(margins[True]) / len(PRODUCTS) - sum(margins[False]) / len(PRODUCTS)
    assert mean_gain > 0.1, margins


QUARTER_SET = ("astronaut", "grace_hopper", "camera", "chelsea", "coffee", "rocket", "coins")


def test_a_quarter_of_a_photo_finds_it(rt: Lookalike, photos: dict[str, bytes]) -> None:
    coll = create_collection(rt, "default", "quarters", options=VectorOptions(use_crops=True))
    rt.ingest.add_many(
        coll, [(NewRecord(name=n, owner="a"), IngestFile(photos[n], n)) for n in QUARTER_SET],
        wait=True,
    )  # fmt: skip
    astronaut = open_image(photos["astronaut"])
    for box in ((0, 0, 256, 256), (256, 256, 512, 512)):
        query = jpeg(astronaut.crop(box))
        with_crops = search_similar(rt, "default", coll, image_bytes=query, limit=3, use_crops=True)
        without = search_similar(rt, "default", coll, image_bytes=query, limit=3)
        assert with_crops[0].name == "astronaut"
        assert with_crops[0].score > without[0].score + 0.1
        assert with_crops[0].score - with_crops[1].score > without[0].score - without[1].score


def test_merged_pages_and_filters(rt: Lookalike, photos: dict[str, bytes]) -> None:
    coll = create_collection(rt, "default", "pages", options=VectorOptions(use_crops=True))
    names = sorted(photos)[:10]
    rt.ingest.add_many(
        coll, [(NewRecord(name=n, owner="a", tags=(n,)), IngestFile(photos[n], n)) for n in names],
        wait=True,
    )  # fmt: skip
    query = jpeg(open_image(photos["astronaut"]).crop((0, 0, 300, 300)))
    every = search_similar(rt, "default", coll, image_bytes=query, limit=10, use_crops=True)
    assert sorted(h.name for h in every) == names  # each image once, however many crops match
    scores = [h.score for h in every]
    assert scores == sorted(scores, reverse=True)
    page = search_similar(rt, "default", coll, image_bytes=query, limit=3, offset=4, use_crops=True)
    assert [h.image_id for h in page] == [h.image_id for h in every[4:7]]
    cut = (every[2].score + every[3].score) / 2
    above = search_similar(
        rt, "default", coll, image_bytes=query, limit=10, use_crops=True, score_threshold=cut
    )
    assert [h.image_id for h in above] == [h.image_id for h in every[:3]]
    by_id = search_similar(
        rt, "default", coll, image_id=every[0].image_id, limit=10, use_crops=True
    )
    assert every[0].image_id not in {h.image_id for h in by_id} and len(by_id) == 9


def test_resumed_images_get_their_crops(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    # First process: stops after the prepare stage, before anything is embedded.
    settings = make_settings(tmp_path / "data", models_dir, nsfw=False)
    first = Lookalike(settings, start=False)
    coll = create_collection(first, "default", "resume", options=VectorOptions(use_crops=True))
    result, item = first.ingest._prepare(
        coll, first.models.for_collection(coll), NewRecord(name="cat", owner="a"),
        IngestFile(photos["chelsea"]),
    )  # fmt: skip
    assert result.status == "added" and item is not None and item.crops is not None
    first.vectors.close()
    first.catalog.close()

    with Lookalike(settings) as second:
        assert wait_until(lambda: second.vectors.count(coll.id) == 1)
        (point,) = second.vectors.retrieve(coll.id, [result.image_id or ""], with_vectors=True)
        assert point.vectors[crops_vector_name(coll.vector_name)].shape[0] > 4


def test_use_crops_on_a_collection_without_crops_is_refused(
    rt: Lookalike, photos: dict[str, bytes]
) -> None:
    coll = create_collection(rt, "default", "nocrops")
    with pytest.raises(InvalidInput, match="use_crops"):
        search_similar(rt, "default", coll, image_bytes=photos["coffee"], limit=3, use_crops=True)


def test_crops_over_http(rt: Lookalike, photos: dict[str, bytes]) -> None:
    with TestClient(create_app(runtime=rt)) as client:
        r = client.post("/api/collections", json={"name": "shop", "use_crops": True})
        assert r.status_code == 201, r.text
        assert r.json()["vector_settings"]["use_crops"] is True
        assert client.post("/api/collections", json={"name": "plain"}).status_code == 201
        r = client.post(
            "/api/collections/shop/records?wait=true",
            data={"name": "astronaut"},
            files=[("images", ("a.png", photos["astronaut"], "image/png"))],
        )
        assert r.status_code == 201, r.text
        quarter = jpeg(open_image(photos["astronaut"]).crop((0, 0, 256, 256)))
        r = client.post(
            "/api/search/similar",
            data={"collection": "shop", "use_crops": "true"},
            files={"file": ("q.jpg", quarter, "image/jpeg")},
        )
        assert r.status_code == 200, r.text
        assert [h["name"] for h in r.json()["hits"]] == ["astronaut"]
        r = client.post(
            "/api/search/similar",
            data={"collection": "plain", "use_crops": "true"},
            files={"file": ("q.jpg", quarter, "image/jpeg")},
        )
        assert r.status_code == 422
        assert "use_crops" in r.json()["error"]["message"]
