"""Property-based fuzzing of the search filter DSL, parsed directly and through the HTTP API.

A filter is JSON from a user: `must`/`should`/`must_not` lists nesting conditions on payload
fields (`match`, `any`, `range`, `is_empty`) and the shorthand fields (`tags_any`, `owner`,
`min_quality`, ...). An outside probe sent deeply nested JSON (RecursionError) and NaN range
bounds (a panic inside the vector engine). Properties:

- Parsing, as the API does it (`validate(SearchFilters, raw)` and the translation for the
  engine), returns a filter the engine can run or raises a `LookalikeError` with a 4xx status
  and a message of bounded size; never RecursionError, TypeError, ValueError or anything else.
- `POST /api/search/similar`, by `image_id` (JSON) or by an uploaded image (multipart), never
  answers 5xx, and every 4xx is `{"error": {"code", "message"}}`.

Two kinds of input: anything (random types in every position, nesting to thousands of levels)
and well-formed filters with values at the edges (NaN, infinities, 2**64, year 1 at +14:00, huge
strings and lists), so that a nesting failure cannot hide what the engine does with the values.
Deep filters are built as text and as objects without recursion, so the test itself never hits
the recursion limit it looks for.
"""

from __future__ import annotations

import io
import json
import math
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response  # what Starlette's TestClient answers with
from hypothesis import given, note, settings
from hypothesis import strategies as st
from PIL import Image

from lookalike.api.app import create_app
from lookalike.composition import Lookalike
from lookalike.core.errors import LookalikeError
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.records.service import create_collection
from lookalike.search.filters import (
    DATETIME_FIELDS,
    MAX_DEPTH,
    NUMBER_FIELDS,
    FilterField,
    SearchFilters,
)
from lookalike.serving.bodies import validate
from lookalike.vectors.base import Filter, Range
from support import FUZZ, MAX_MESSAGE_CHARS, check_answer, make_settings, settle

FIELDS: tuple[str, ...] = typing.get_args(FilterField)
DSL_KEYS = (
    *("must", "should", "must_not", "key", "match", "any", "range", "is_empty"),
    *("gt", "gte", "lt", "lte", "tags_any", "tags_all", "tags_none", "owner", "record_ids"),
    *("created_after", "created_before", "min_quality", "max_nsfw"),
)


# --- values in every position ------------------------------------------------------------------

huge_ints = st.sampled_from(
    (2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400, -(10**400))
)
numbers = st.one_of(
    st.integers(-1000, 1000),
    st.integers(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from((math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324)),
)
# Long strings are made by repetition: Hypothesis draws them in one step instead of 10^5.
huge_texts = st.builds(lambda c, n: c * n, st.characters(), st.integers(1_000, 200_000))
texts = st.one_of(
    st.text(max_size=20), st.sampled_from(("", " ", "\x00", "tags", "NaN")), huge_texts
)


@st.composite
def iso_datetimes(draw: st.DrawFn) -> str:
    """ISO 8601 strings: aware, naive, at the ends of the calendar, or not a date at all."""
    extreme = st.sampled_from(
        (
            "0001-01-01T00:00:00+14:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59-14:00",
            "9999-12-31T23:59:59.999999Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01",
            "not a date",
        )
    )
    offset = st.integers(-24 * 60 + 1, 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
    aware = st.builds(
        lambda moment, tz: moment.replace(tzinfo=tz).isoformat(),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
        offset,
    )
    return draw(st.one_of(extreme, aware))


scalars = st.one_of(st.none(), st.booleans(), numbers, texts, iso_datetimes())
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(DSL_KEYS) | st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=16,
)
# Long lists, past `any`'s limit of 1024 and far past what a user types.
huge_lists = st.builds(
    lambda value, n: [value] * n, st.text(max_size=8) | st.integers(), st.integers(1_000, 100_000)
)


@st.composite
def edge_conditions(draw: st.DrawFn) -> Any:
    """A well-formed condition with values at the edges (NaN, infinities, 2**64, year 1 at
    +14:00, huge strings and lists), where the engine meets them."""
    test = draw(st.sampled_from(("match", "any", "range", "is_empty")))
    if test == "range":
        key = draw(st.sampled_from((*NUMBER_FIELDS, *DATETIME_FIELDS)))
        bound = iso_datetimes() if key in DATETIME_FIELDS else numbers
        names = st.sampled_from(("gt", "gte", "lt", "lte"))
        return {"key": key, "range": draw(st.dictionaries(names, bound, min_size=1))}
    condition: dict[str, Any] = {"key": draw(st.sampled_from(FIELDS))}
    if test == "match":
        condition["match"] = draw(st.one_of(numbers, texts, st.booleans()))
    elif test == "any":
        values = st.lists(numbers | texts, min_size=1, max_size=6)
        condition["any"] = draw(values | huge_lists)
    else:
        condition["is_empty"] = draw(st.booleans())
    return condition


@st.composite
def conditions(draw: st.DrawFn) -> Any:
    """Four times in five a well-formed condition with edge values, otherwise anything."""
    return draw(wild_conditions() if draw(st.integers(0, 4)) == 4 else edge_conditions())


@st.composite
def wild_conditions(draw: st.DrawFn) -> Any:
    """Any number of tests on any key, any value in any slot, sometimes an unknown key."""
    condition: dict[str, Any] = {"key": draw(st.sampled_from(FIELDS) | scalars)}
    for test in sorted(draw(st.sets(st.sampled_from(("match", "any", "range", "is_empty"))))):
        if test == "match":
            condition["match"] = draw(scalars | json_values)
        elif test == "any":
            condition["any"] = draw(st.lists(scalars, max_size=6) | huge_lists | json_values)
        elif test == "range":
            bound = numbers | iso_datetimes() | json_values
            names = st.sampled_from(("gt", "gte", "lt", "lte")) | st.text(max_size=3)
            condition["range"] = draw(st.dictionaries(names, bound, max_size=4) | json_values)
        else:
            condition["is_empty"] = draw(st.booleans() | scalars)
    if draw(st.booleans()):
        condition[draw(st.sampled_from(DSL_KEYS) | st.text(max_size=8))] = draw(json_values)
    return condition


bool_filters = st.recursive(
    conditions(),
    lambda children: st.dictionaries(
        st.sampled_from(("must", "should", "must_not")),
        st.lists(children, max_size=3) | children,
        min_size=1,
        max_size=3,
    ),
    max_leaves=12,
)
shorthands: dict[str, st.SearchStrategy[Any]] = {
    "tags_any": st.lists(texts, max_size=5) | huge_lists | json_values,
    "tags_all": st.lists(texts, max_size=5) | huge_lists | json_values,
    "tags_none": st.lists(texts, max_size=5) | huge_lists | json_values,
    "record_ids": st.lists(texts, max_size=5) | huge_lists | json_values,
    "owner": texts | json_values,
    "created_after": iso_datetimes() | json_values,
    "created_before": iso_datetimes() | json_values,
    "min_quality": numbers | json_values,
    "max_nsfw": numbers | json_values,
}


@st.composite
def search_filters(draw: st.DrawFn) -> Any:
    """A `SearchFilters` object: some shorthand fields and clauses, or something else entirely."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    names = draw(st.sets(st.sampled_from(sorted(shorthands)), max_size=4))
    value: dict[str, Any] = {name: draw(shorthands[name]) for name in sorted(names)}
    for clause in draw(st.sets(st.sampled_from(("must", "should", "must_not")), max_size=3)):
        value[clause] = draw(st.lists(bool_filters, max_size=4) | bool_filters)
    return value


@st.composite
def edge_filters(draw: st.DrawFn) -> Any:
    """Well-formed filters, within the nesting limit, with values at the edges: what gets past
    validation to the engine."""
    typed = {
        "tags_any": st.lists(texts, max_size=5) | huge_lists,
        "tags_all": st.lists(texts, max_size=5),
        "tags_none": st.lists(texts, max_size=5) | huge_lists,
        "record_ids": st.lists(texts, max_size=5) | huge_lists,
        "owner": texts,
        "created_after": iso_datetimes(),
        "created_before": iso_datetimes(),
        "min_quality": numbers,
        "max_nsfw": numbers,
    }
    names = draw(st.sets(st.sampled_from(sorted(typed)), max_size=3))
    value: dict[str, Any] = {name: draw(typed[name]) for name in sorted(names)}
    nested = st.recursive(
        edge_conditions(),
        lambda children: st.dictionaries(
            st.sampled_from(("must", "should", "must_not")),
            st.lists(children, min_size=1, max_size=3),
            min_size=1,
        ),
        max_leaves=6,
    )
    for clause in draw(st.sets(st.sampled_from(("must", "should", "must_not")), max_size=2)):
        value[clause] = draw(st.lists(nested, min_size=1, max_size=3))
    return value


# --- nesting to any depth -----------------------------------------------------------------------

# Each level of a deep filter: the JSON around the level below, and the same as an object.
WRAPPERS: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "must": ('{"must":[', "]}", lambda inner: {"must": [inner]}),
    "should": ('{"should":[', "]}", lambda inner: {"should": [inner]}),
    "must_not": ('{"must_not":[', "]}", lambda inner: {"must_not": [inner]}),
    "list": ("[", "]", lambda inner: [inner]),
    "dict": ('{"must":', "}", lambda inner: {"must": inner}),
    "range": ('{"key":"quality","range":{"gt":', "}}", lambda inner: {
        "key": "quality", "range": {"gt": inner}
    }),
}  # fmt: skip


@dataclass(frozen=True)
class Nested:
    """`inner` wrapped in `depth` levels, the wrappers taken from `pattern` in turn (outermost
    first). Depth 0 is `inner` itself."""

    inner: Any
    depth: int = 0
    pattern: tuple[str, ...] = ("must",)

    def levels(self) -> Iterator[str]:
        return (self.pattern[i % len(self.pattern)] for i in range(self.depth))

    def text(self) -> str:
        levels = list(self.levels())
        opening = "".join(WRAPPERS[level][0] for level in levels)
        closing = "".join(WRAPPERS[level][1] for level in reversed(levels))
        return opening + json.dumps(self.inner, allow_nan=True) + closing

    def value(self) -> Any:
        value = self.inner
        for level in reversed(list(self.levels())):
            value = WRAPPERS[level][2](value)
        return value


filter_inputs = st.one_of(
    st.builds(Nested, search_filters()),
    st.builds(
        Nested,
        st.one_of(conditions(), bool_filters, json_values),
        depth=st.integers(0, 8) | st.integers(0, 6_000),
        pattern=st.lists(st.sampled_from(sorted(WRAPPERS)), min_size=1, max_size=3).map(tuple),
    ),
)

LEAF = {"key": "owner", "match": "alice"}
DEEP = [
    Nested(LEAF, 5_000, ("must",)),
    Nested(LEAF, 5_000, ("should", "must_not")),
    Nested(LEAF, 5_000, ("list",)),
    Nested(LEAF, 5_000, ("dict",)),
    Nested(LEAF, 5_000, ("range",)),
    Nested(LEAF, 100_000, ("must",)),
]
DEEP_IDS = [f"{n.depth}x{'+'.join(n.pattern)}" for n in DEEP]


# --- parsing ------------------------------------------------------------------------------------


def _parse_or_error(raw: Any) -> Filter | LookalikeError | None:
    """What the API does with a filter (validate it, translate it for the engine), or the
    domain error that raised; any other exception propagates and fails the test."""
    try:
        return validate(SearchFilters, raw).to_vector_filter()
    except LookalikeError as exc:
        return exc


def _check_runnable(parsed: Filter | None) -> None:
    """Within the documented limits, and no NaN bound: a range nothing can satisfy or fail."""
    if parsed is None:
        return
    stack: list[tuple[Filter, int]] = [(parsed, 1)]
    while stack:
        node, depth = stack.pop()
        assert depth <= MAX_DEPTH + 1, f"nested {depth} levels deep"
        for child in (*node.must, *node.should, *node.must_not):
            if isinstance(child, Filter):
                stack.append((child, depth + 1))
            elif isinstance(child, Range):
                for bound in (child.gt, child.gte, child.lt, child.lte):
                    assert bound is None or not math.isnan(bound), f"NaN bound in {child}"


def _check_clear_error(error: LookalikeError) -> None:
    assert 400 <= error.status < 500, f"{error.code} is a {error.status}: {error.message[:500]}"
    assert 0 < len(error.message) <= MAX_MESSAGE_CHARS, (
        f"{error.code}: a {len(error.message):,}-character message: {error.message[:300]}..."
    )


@settings(FUZZ, max_examples=400)
@given(filter_=filter_inputs)
def test_parsing_gives_a_runnable_filter_or_a_clear_error(filter_: Nested) -> None:
    note(f"filter: {filter_!r}")
    outcome = _parse_or_error(filter_.value())
    if isinstance(outcome, LookalikeError):
        _check_clear_error(outcome)
    else:
        _check_runnable(outcome)


@settings(FUZZ, max_examples=200)
@given(filter_=edge_filters())
def test_parsing_edge_values_gives_a_runnable_filter_or_a_clear_error(filter_: Any) -> None:
    note(f"filter: {filter_!r}")
    outcome = _parse_or_error(filter_)
    if isinstance(outcome, LookalikeError):
        _check_clear_error(outcome)
    else:
        _check_runnable(outcome)


@pytest.mark.parametrize("filter_", DEEP, ids=DEEP_IDS)
def test_deep_filters_parse_to_a_clear_error(filter_: Nested) -> None:
    outcome = _parse_or_error(filter_.value())
    assert isinstance(outcome, LookalikeError)
    _check_clear_error(outcome)


# --- through the HTTP API -----------------------------------------------------------------------


@dataclass(frozen=True)
class SearchApi:
    client: TestClient
    collection: str
    image_id: str
    query_png: bytes

    def search(self, filter_: Nested, transport: str) -> Response:
        if transport == "json":
            body = (
                f'{{"collection":{json.dumps(self.collection)},"include_weaker":true,'
                f'"image_id":{json.dumps(self.image_id)},"filter":{filter_.text()}}}'
            )
            return self.client.post(
                "/api/search/similar",
                content=body.encode(),
                headers={"content-type": "application/json"},
            )
        return self.client.post(
            "/api/search/similar",
            data={"collection": self.collection, "filter": filter_.text(), "include_weaker": "1"},
            files={"file": ("query.png", self.query_png, "image/png")},
        )


@pytest.fixture(scope="module")
def search_api(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, photos: dict[str, bytes]
) -> Iterator[SearchApi]:
    """A real runtime with three photos, behind the real app; rate limits off so the fuzzer
    is not answered 429."""
    settings_ = make_settings(
        tmp_path_factory.mktemp("filter-fuzz"),
        models_dir,
        rate_limit_ip_per_s=0,
        rate_limit_tenant_per_s=0,
    )
    with Lookalike(settings_) as rt:
        collection = create_collection(rt, "default", "photos")
        items = [
            (NewRecord(name=name, owner=owner, tags=(name, "all")), IngestFile(photos[name], name))
            for name, owner in (("chelsea", "alice"), ("coffee", "alice"), ("astronaut", "bob"))
        ]
        results = rt.ingest.add_many(collection, items, wait=True)
        assert all(r.status == "added" for r in results), results
        settle(rt)  # quality and NSFW scores too, which filters read
        query = io.BytesIO()
        Image.open(io.BytesIO(photos["coffee"])).resize((64, 48)).save(query, "PNG")
        with TestClient(create_app(runtime=rt)) as client:
            yield SearchApi(client, collection.id, results[0].image_id or "", query.getvalue())


def _check_answer(response: Response) -> None:
    """Never a 5xx; a 4xx is `{"error": {"code", "message"}}`; a 200 has hits."""
    check_answer(response.status_code, response.content)
    if response.status_code < 400:
        payload = response.json()
        assert response.status_code == 200 and isinstance(payload.get("hits"), list), payload


@settings(FUZZ, max_examples=200)
@given(filter_=filter_inputs, transport=st.sampled_from(("json", "multipart")))
def test_search_api_never_fails_on_a_filter(
    search_api: SearchApi, filter_: Nested, transport: str
) -> None:
    note(f"{transport} request, filter: {filter_!r}")
    _check_answer(search_api.search(filter_, transport))


@settings(FUZZ, max_examples=200)
@given(filter_=edge_filters().map(Nested), transport=st.sampled_from(("json", "multipart")))
def test_search_api_never_fails_on_edge_values(
    search_api: SearchApi, filter_: Nested, transport: str
) -> None:
    """Well-formed filters only, so that a nesting or parsing failure cannot hide what the
    engine does with NaN, 2**64 or year 1."""
    note(f"{transport} request, filter: {filter_.inner!r}")
    _check_answer(search_api.search(filter_, transport))


@pytest.mark.parametrize("transport", ["json", "multipart"])
@pytest.mark.parametrize("filter_", DEEP, ids=DEEP_IDS)
def test_search_api_refuses_deep_filters_clearly(
    search_api: SearchApi, filter_: Nested, transport: str
) -> None:
    response = search_api.search(filter_, transport)
    _check_answer(response)
    assert 400 <= response.status_code < 500


def test_a_plain_filter_finds_what_it_names(search_api: SearchApi) -> None:
    """The fixture is not vacuous: a filter on a real owner narrows real hits."""
    response = search_api.search(Nested({"owner": "alice"}), "json")
    assert response.status_code == 200, response.text
    assert [hit["name"] for hit in response.json()["hits"]] == ["coffee"]
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    response = search_api.search(Nested({"created_after": since, "min_quality": 0}), "json")
    assert response.status_code == 200 and len(response.json()["hits"]) == 2
