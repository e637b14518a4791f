"""The relevance cut-off: per model and kind of query, only for models whose cosines are known."""

from __future__ import annotations

import pytest

from lookalike.catalog import Collection
from lookalike.search.relevance import relevance_cutoff


def _collection(model: str) -> Collection:
    return Collection(
        tenant="t", name="c", model=model, model_id=f"{model}@1", vector_name="v", dim=4
    )


@pytest.mark.parametrize(
    ("model", "image", "text"),
    [
        ("efficientnet-lite0", 0.55, None),
        ("clip-vit-b-32-laion2b", 0.5, 0.2),
        ("clip-vit-b-32-laion2b-int8", 0.5, 0.2),
        ("tiny-clip", None, None),  # a model placed by hand: every hit counts
        ("vit-b-32-random", None, None),
    ],
)
def test_cutoffs(model: str, image: float | None, text: float | None) -> None:
    assert relevance_cutoff(_collection(model), "image") == image
    assert relevance_cutoff(_collection(model), "text") == text
