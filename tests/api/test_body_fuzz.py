"""Property-based fuzzing of every JSON and multipart request body, and of request sequences.

`test_schema_fuzz.py` sends schema-generated requests with random path parameters, so most
bodies stop at a 404. Here the bodies reach their handlers, and more is checked:

- schema-generated bodies and query parameters of every operation but the deletes, with path
  parameters and body fields that name a real collection, record and image;
- hand-written bodies the OpenAPI document cannot describe: record fields of every length up to
  and past their limits, `metadata` nested up to thousands of levels, fields of the wrong type
  or sent as files, tags as a comma list or a deep JSON list, batch uploads with long record
  names and file names, presign + ingest with any record;
- a stateful run (schemathesis' links between operations): create collection, create record,
  upload, ingest, search, delete, in any order.

Properties, after every request: never a 5xx; a 4xx is `{"error": {"code", "message"}}`; every
collection still lists its records (200), every record the request made or changed still reads
back (200), and every stored record is within the documented field limits (a record once
stored must never make its listing fail, nor hold what PATCH would refuse). The stateful run
also requires that background work (ingest, jobs) logs no error and that the runtime closes
cleanly afterwards.
"""

from __future__ import annotations

import io
import json
import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response  # what Starlette's TestClient answers with
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.transport.serialization import Binary

from lookalike.api.app import create_app
from lookalike.catalog.record_fields import (
    DESCRIPTION_MAX,
    METADATA_MAX_BYTES,
    METADATA_MAX_DEPTH,
    NAME_MAX,
    OWNER_MAX,
    TAG_MAX,
    TAGS_MAX,
)
from lookalike.composition import Lookalike
from support import FUZZ, check_answer, make_settings


def _png(seed: int, size: tuple[int, int] = (24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 40 + seed).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


# --- the checks after every request -------------------------------------------------------------


def success_payload(status: int, headers: Any, content: bytes) -> Any:
    """The JSON body of a 2xx answer, or None (an error, no body, or an image)."""
    media = headers.get("content-type") or ""
    if isinstance(media, list):  # schemathesis keeps every value of a header
        media = media[0] if media else ""
    is_json = media.startswith("application/json")
    return json.loads(content) if status < 300 and content and is_json else None


def touched_records(payload: Any) -> set[str]:
    """Ids of the records a successful answer says it made or changed."""
    found: set[str] = set()
    items = payload if isinstance(payload, list) else [payload]
    for item in items:
        if not isinstance(item, dict):
            continue
        record = item.get("record")
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            found.add(record["id"])
        for result in [item, *(item.get("results") or [])]:
            if isinstance(result, dict) and isinstance(result.get("record_id"), str):
                found.add(result["record_id"])
        if "collection_id" in item and "tags" in item and isinstance(item.get("id"), str):
            found.add(item["id"])  # a RecordOut
    return found


def check_record_fields(record: dict[str, Any]) -> None:
    """What RecordCreate documents, whichever entry point stored the record."""
    name, owner = record["name"], record["owner"]
    assert isinstance(name, str) and name.strip() and len(name) <= NAME_MAX, f"name {name[:80]!r}"
    assert isinstance(owner, str) and owner.strip() and len(owner) <= OWNER_MAX, (
        f"owner of {len(owner)} characters: {owner[:80]!r}"
    )
    assert len(record["description"]) <= DESCRIPTION_MAX, "description too long"
    tags = record["tags"]
    assert len(tags) <= TAGS_MAX, f"{len(tags)} tags"
    assert all(isinstance(t, str) and len(t) <= TAG_MAX for t in tags), "a tag is too long"
    metadata = json.dumps(record["metadata"], ensure_ascii=False)
    assert len(metadata.encode()) <= METADATA_MAX_BYTES, "metadata too large"


def check_records_readable(client: TestClient, touched: set[str]) -> None:
    """Every collection lists all its records; each touched record reads back; all are within
    the documented limits."""
    collections = client.get("/api/collections")
    assert collections.status_code == 200, collections.text[:2000]
    for collection in collections.json():
        offset = 0
        while True:
            page = client.get(
                f"/api/collections/{collection['id']}/records",
                params={"limit": 500, "offset": offset},
            )
            assert page.status_code == 200, f"listing {collection['id']}: {page.text[:2000]}"
            items = page.json()["items"]
            for record in items:
                check_record_fields(record)
            offset += len(items)
            if not items or offset >= page.json()["total"]:
                break
    for record_id in touched:
        answer = client.get(f"/api/records/{record_id}")
        assert answer.status_code == 200, f"reading {record_id}: {answer.text[:2000]}"
        check_record_fields(answer.json())


def check_response(client: TestClient, response: Response) -> None:
    event(f"status {response.status_code}")
    check_answer(response.status_code, response.content)
    payload = success_payload(response.status_code, response.headers, response.content)
    check_records_readable(client, touched_records(payload))


# --- a real API with a collection, a record and an image --------------------------------------


@dataclass
class Api:
    rt: Lookalike
    app: FastAPI
    client: TestClient
    collection_id: str = ""
    record_id: str = ""
    image_id: str = ""

    def seed(self) -> None:
        """Start over: no collection but `shop`, holding one record with one embedded image."""
        for collection in self.client.get("/api/collections").json():
            assert self.client.delete(f"/api/collections/{collection['id']}").status_code == 204
        collection = self.client.post("/api/collections", json={"name": "shop"})
        assert collection.status_code == 201, collection.text
        self.collection_id = collection.json()["id"]
        created = self.client.post(
            f"/api/collections/{self.collection_id}/records",
            params={"wait": "true"},
            data={"name": "first", "tags": "red,blue"},
            files=[("images", ("first.png", _png(0), "image/png"))],
        )
        assert created.status_code == 201, created.text
        self.record_id = created.json()["record"]["id"]
        self.image_id = created.json()["results"][0]["image_id"]


@contextmanager
def open_api(data_dir: Path, models_dir: Path) -> Iterator[Api]:
    """A real runtime behind the real app, seeded; rate limits off so the fuzzer is not
    answered 429. Closing the runtime is part of the test: it must close cleanly."""
    settings_ = make_settings(
        data_dir, models_dir, rate_limit_ip_per_s=0, rate_limit_tenant_per_s=0
    )
    with Lookalike(settings_) as rt:
        app = create_app(runtime=rt)
        with TestClient(app) as client:
            api = Api(rt, app, client)
            api.seed()
            yield api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Api]:
    with open_api(tmp_path_factory.mktemp("body-fuzz"), models_dir) as opened:
        yield opened


# --- values: lengths at and past the limits, deep nesting, wrong types -------------------------


@dataclass(frozen=True)
class Long:
    """`char` repeated `length` times (a compact repr for a long string)."""

    char: str
    length: int

    def __str__(self) -> str:
        return self.char * self.length


@dataclass(frozen=True)
class Deep:
    """`inner` wrapped in `depth` objects (`{"a": ...}`) or arrays (`[...]`), as JSON text built
    without recursion."""

    inner: Any
    depth: int
    kind: str = "dict"

    def json(self) -> str:
        opening, closing = ('{"a":', "}") if self.kind == "dict" else ("[", "]")
        return opening * self.depth + to_json(self.inner) + closing * self.depth


def to_json(value: Any) -> str:
    """JSON text of a generated value (NaN and Infinity written as Python's parser reads them)."""
    if isinstance(value, Deep):
        return value.json()
    if isinstance(value, Long):
        return json.dumps(str(value))
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value, allow_nan=True)


def to_form(value: Any) -> str:
    """A generated value as a form field's text."""
    if isinstance(value, str | Long):
        return str(value)
    return to_json(value)


def mostly(
    valid: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """A valid value three times in four, so that most bodies get past validation; otherwise
    anything (mostly invalid)."""

    @st.composite
    def pick(draw: st.DrawFn) -> Any:
        return draw(anything) if draw(st.integers(0, 3)) == 3 else draw(valid)

    return pick()


def fitting_texts(limit: int, blank: bool = False) -> st.SearchStrategy[Any]:
    """Strings within `limit` characters (not blank unless `blank`)."""
    short = st.text(max_size=20) if blank else st.text(min_size=1, max_size=20).filter(str.strip)
    return short | st.builds(Long, st.sampled_from(("a", "é", "😀")), st.integers(1, limit))


def sized_texts(limit: int) -> st.SearchStrategy[Any]:
    """Strings at the limit, one past it, far past it, empty, blank, or short and random."""
    return st.one_of(
        st.builds(
            Long,
            st.sampled_from(("a", " ", "é", "😀", ",")),
            st.sampled_from((limit, limit + 1, 2 * limit, 10 * limit)) | st.integers(0, 2 * limit),
        ),
        st.sampled_from(("", " ", "\t\n", "\x00", "a,b", "[]")),
        st.text(max_size=12),
    )


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from((2**63, 10**400)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)
finite_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)
metadata_values = mostly(
    st.one_of(
        st.dictionaries(st.text(max_size=8), finite_values, max_size=5),
        st.builds(
            lambda depth: Deep({"leaf": 1}, depth, "dict"), st.integers(0, METADATA_MAX_DEPTH - 2)
        ),
        st.builds(lambda n: {"blob": Long("x", n)}, st.integers(0, METADATA_MAX_BYTES - 20)),
    ),
    st.one_of(
        # Around the depth limit and far past it (the probe's RecursionError).
        st.builds(
            Deep,
            json_values,
            st.sampled_from((METADATA_MAX_DEPTH - 1, METADATA_MAX_DEPTH, METADATA_MAX_DEPTH + 1))
            | st.integers(0, 100)
            | st.integers(100, 6_000),
            st.just("dict"),
        ),
        st.builds(
            lambda depth, inner: {"a": Deep(inner, depth, "list")},
            st.integers(0, 6_000),
            json_values,
        ),
        # Around the size limit.
        st.builds(
            lambda n: {"blob": Long("x", n)},
            st.sampled_from((METADATA_MAX_BYTES - 20, METADATA_MAX_BYTES, METADATA_MAX_BYTES + 20))
            | st.integers(0, 3 * METADATA_MAX_BYTES),
        ),
        json_values,
    ),
)
tag_lists = mostly(
    st.lists(fitting_texts(TAG_MAX), max_size=8)
    | st.builds(lambda n: [f"t{i}" for i in range(n)], st.integers(0, TAGS_MAX)),
    st.one_of(
        st.lists(sized_texts(TAG_MAX), max_size=6),
        st.builds(
            lambda n, tag: [tag] * n, st.integers(TAGS_MAX - 2, TAGS_MAX + 300), st.text(max_size=4)
        ),
        st.builds(lambda n: [f"t{i}" for i in range(n)], st.integers(TAGS_MAX - 2, TAGS_MAX + 300)),
        json_values,
    ),
)
RECORD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "name": mostly(fitting_texts(NAME_MAX), sized_texts(NAME_MAX) | json_values),
    "description": mostly(
        fitting_texts(DESCRIPTION_MAX, blank=True), sized_texts(DESCRIPTION_MAX) | json_values
    ),
    "owner": mostly(fitting_texts(OWNER_MAX), sized_texts(OWNER_MAX) | json_values),
    "tags": tag_lists,
    "metadata": metadata_values,
}


@st.composite
def record_objects(draw: st.DrawFn, required_name: bool = True) -> dict[str, Any]:
    """A record body: usually a name, any of the other fields, sometimes an unknown field."""
    names = draw(st.sets(st.sampled_from(sorted(RECORD_FIELDS)), max_size=5))
    if required_name and draw(st.integers(0, 9)) > 0:
        names.add("name")
    body = {name: draw(RECORD_FIELDS[name]) for name in sorted(names)}
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(max_size=8))] = draw(json_values)
    return body


# --- JSON bodies ---------------------------------------------------------------------------------


def post_json(client: TestClient, url: str, body: Any, method: str = "POST") -> Response:
    return client.request(
        method, url, content=to_json(body).encode(), headers={"content-type": "application/json"}
    )


@settings(FUZZ, max_examples=100)
@given(body=record_objects(), wait=st.booleans())
def test_record_create_json(api: Api, body: dict[str, Any], wait: bool) -> None:
    note(f"body: {body!r}")
    url = f"/api/collections/{api.collection_id}/records" + ("?wait=true" if wait else "")
    check_response(api.client, post_json(api.client, url, body))


@settings(FUZZ, max_examples=60)
@given(body=record_objects(required_name=False) | json_values)
def test_record_update_json(api: Api, body: Any) -> None:
    note(f"body: {body!r}")
    response = post_json(api.client, f"/api/records/{api.record_id}", body, method="PATCH")
    check_response(api.client, response)
    check_records_readable(api.client, {api.record_id})


@settings(FUZZ, max_examples=40)
@given(
    record=record_objects(),
    record_id=st.sampled_from((None, None, None, "existing")) | st.text(max_size=30),
)
def test_presign_and_ingest_with_any_record(
    api: Api, record: dict[str, Any], record_id: str | None
) -> None:
    note(f"record: {record!r}, record_id: {record_id!r}")
    presigned = api.client.post("/api/images/presign", json={"collection": api.collection_id})
    assert presigned.status_code == 201, presigned.text
    upload = api.client.put(presigned.json()["url"], content=_png(len(str(record)) % 7))
    assert upload.status_code == 201, upload.text
    body: dict[str, Any] = {"key": presigned.json()["key"]}
    if record_id is None or len(record_id) % 3 == 1:  # sometimes both, which is refused
        body["record"] = record
    if record_id is not None:
        body["record_id"] = api.record_id if record_id == "existing" else record_id
    check_response(api.client, post_json(api.client, "/api/images/ingest", body))


# --- multipart bodies ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One multipart field; `as_file` sends a text field as a file part (a wrong type)."""

    name: str
    value: Any
    as_file: bool = False


@dataclass(frozen=True)
class Upload:
    """A file part: a small valid PNG, bytes that are no image, or nothing."""

    kind: str
    filename: Any = "image.png"
    field: str = "images"

    def content(self) -> bytes:
        return {
            "png": _png(len(str(self.filename)) % 5),
            "garbage": b"GIF89a\x00\x01",
            "empty": b"",
        }[self.kind]


uploads = st.builds(
    Upload,
    st.sampled_from(("png", "png", "garbage", "empty")),
    st.one_of(
        st.just("image.png"),
        st.text(max_size=20),
        st.builds(Long, st.sampled_from(("a", "é", ".")), st.integers(NAME_MAX - 5, 4 * NAME_MAX)),
        st.builds(lambda n: "x" * n + ".png", st.integers(NAME_MAX - 5, NAME_MAX + 10)),
        st.none(),
    ),
)


def _multipart(parts: list[Part], files: list[Upload]) -> list[tuple[str, Any]]:
    sent: list[tuple[str, Any]] = []
    for part in parts:
        text = to_form(part.value)
        if part.as_file:
            sent.append((part.name, ("field.txt", text.encode(), "text/plain")))
        else:
            sent.append((part.name, (None, text.encode())))
    for upload in files:
        filename = None if upload.filename is None else str(upload.filename)
        sent.append((upload.field, (filename, upload.content(), "image/png")))
    return sent


@st.composite
def record_parts(draw: st.DrawFn) -> list[Part]:
    """The record create form: each field zero, one or more times, as text or as a file; tags
    also as a JSON list, deep or long; sometimes a field the form does not know."""
    parts: list[Part] = []
    for name in ("name", "description", "owner", "metadata"):
        for _ in range(draw(st.sampled_from((1, 1, 1, 0, 2)))):
            value = draw(RECORD_FIELDS[name] if name != "metadata" else metadata_values)
            parts.append(Part(name, value, as_file=draw(st.integers(0, 14)) == 0))
    for _ in range(draw(st.integers(0, 3))):
        tags = draw(
            st.one_of(
                sized_texts(TAG_MAX),
                tag_lists.map(lambda t: ",".join(str(v) for v in t) if isinstance(t, list) else t),
                tag_lists,
                st.builds(Deep, st.just("red"), st.integers(0, 6_000), st.just("list")),
            )
        )
        parts.append(Part("tags", tags, as_file=draw(st.integers(0, 14)) == 0))
    if draw(st.integers(0, 9)) == 0:
        parts.append(Part(draw(st.text(min_size=1, max_size=8)), draw(json_values)))
    return parts


@settings(FUZZ, max_examples=80)
@given(
    parts=record_parts(),
    files=st.lists(uploads, max_size=2),
    wait=st.booleans(),
)
def test_record_create_multipart(
    api: Api, parts: list[Part], files: list[Upload], wait: bool
) -> None:
    note(f"parts: {parts!r}, files: {files!r}")
    response = api.client.post(
        f"/api/collections/{api.collection_id}/records",
        params={"wait": "true"} if wait else None,
        files=_multipart(parts, files),
    )
    check_response(api.client, response)


@st.composite
def batch_parts(draw: st.DrawFn) -> list[Part]:
    parts = [Part("collection", draw(st.sampled_from(("<id>", "shop")) | st.text(max_size=10)))]
    for _ in range(draw(st.sampled_from((0, 1, 1, 2)))):
        parts.append(
            Part("record_name", draw(RECORD_FIELDS["name"]), as_file=draw(st.integers(0, 14)) == 0)
        )
    for _ in range(draw(st.integers(0, 3))):
        tags = draw(
            st.one_of(
                sized_texts(TAG_MAX),
                tag_lists.map(lambda t: ",".join(str(v) for v in t) if isinstance(t, list) else t),
                tag_lists,
                st.builds(Deep, st.just("red"), st.integers(0, 6_000), st.just("list")),
            )
        )
        parts.append(Part("tags", tags))
    if draw(st.integers(0, 9)) == 0:
        parts.append(Part(draw(st.text(min_size=1, max_size=8)), draw(json_values)))
    return parts


@settings(FUZZ, max_examples=60)
@given(parts=batch_parts(), files=st.lists(uploads, min_size=1, max_size=3))
def test_batch_upload_multipart(api: Api, parts: list[Part], files: list[Upload]) -> None:
    note(f"parts: {parts!r}, files: {files!r}")
    parts = [Part(p.name, api.collection_id, p.as_file) if p.value == "<id>" else p for p in parts]
    response = api.client.post("/api/images/batch", files=_multipart(parts, files))
    check_response(api.client, response)


# --- schema-generated bodies, with path parameters that exist -----------------------------------


def error_shape(ctx: Any, response: schemathesis.Response, case: Case[Any]) -> None:
    """A schemathesis check: every 4xx is `{"error": {"code", "message"}}`."""
    check_answer(response.status_code, response.content)


def _real_ids(api: Api, case: Case[Any]) -> None:
    """Path parameters and body fields that name a collection, record or image name real ones
    (random ones only get as far as a 404, which test_schema_fuzz.py covers)."""
    known = {
        "collection_id": api.collection_id,
        "collection": api.collection_id,
        "record_id": api.record_id,
        "image_id": api.image_id,
    }
    for name in list(case.path_parameters or {}):
        if name in known:
            case.path_parameters[name] = known[name]
    if isinstance(case.body, dict):
        for name in list(case.body):
            if name in known and isinstance(case.body[name], str):
                case.body[name] = known[name]


def _real_images(case: Case[Any]) -> None:
    """Every other generated file becomes a real image, so uploads get past the decoder."""
    if not isinstance(case.body, dict):
        return
    for name, value in list(case.body.items()):
        if isinstance(value, Binary) and len(value.data) % 2 == 0:
            case.body[name] = Binary(_png(len(value.data) % 5))
        elif isinstance(value, list):
            case.body[name] = [
                Binary(_png(len(v.data) % 5))
                if isinstance(v, Binary) and len(v.data) % 2 == 0
                else v
                for v in value
            ]


@pytest.mark.slow
def test_schema_generated_requests_reach_their_handlers(api: Api) -> None:
    """Every operation but the deletes (the stateful run has those), its bodies and query
    parameters generated from the schema, its ids real: bodies get past the 404 and queries
    (offsets, limits, filters) reach the catalog."""
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", api.app)
    failures: list[str] = []
    with_bodies = 0
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            failures.append(f"an operation the schema cannot describe: {result}")
            continue
        operation = result.ok()
        if operation.method.upper() == "DELETE":
            continue
        with_bodies += bool(operation.body)

        @given(case=operation.as_strategy())
        @settings(FUZZ, max_examples=25)
        def run(case: Case[Any]) -> None:
            _real_ids(api, case)
            _real_images(case)
            response = case.call()
            case.validate_response(response, checks=[not_a_server_error, error_shape])
            payload = success_payload(response.status_code, response.headers, response.content)
            check_records_readable(api.client, touched_records(payload))

        try:
            run()
        # Every operation's failure, reported together (schemathesis' FailureGroup is a
        # BaseExceptionGroup).
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert with_bodies >= 15
    assert not failures, "\n\n".join(failures)


@dataclass(frozen=True)
class Listing:
    """A GET operation with numeric query parameters (paging, thresholds)."""

    path: str
    numeric: tuple[str, ...]
    required: tuple[str, ...]


def _listings(api: Api) -> list[Listing]:
    found = []
    for path, operations in api.client.get("/api/openapi.json").json()["paths"].items():
        parameters = operations.get("get", {}).get("parameters", [])
        numeric, required = [], []
        for parameter in parameters:
            schema = parameter.get("schema", {})
            types = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
            if parameter["in"] == "query" and types & {"integer", "number"}:
                numeric.append(parameter["name"])
            elif parameter["in"] == "query" and parameter.get("required"):
                required.append(parameter["name"])
        if numeric:
            found.append(Listing(path, tuple(numeric), tuple(required)))
    return found


numbers_of_any_size = st.one_of(
    st.integers(),
    st.sampled_from((2**63 - 1, 2**63, 2**64, 10**30, -(2**63) - 1)),
    st.floats(allow_nan=True, allow_infinity=True),
)


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_numeric_query_parameters_of_any_size(api: Api, data: st.DataObject) -> None:
    """Offsets, limits and thresholds past 64 bits, NaN or negative: a 4xx or an answer, never a
    5xx (schemathesis rarely draws an integer past 2**63)."""
    listing = data.draw(st.sampled_from(_listings(api)), label="listing")
    url = listing.path.format(
        collection_id=api.collection_id, image_id=api.image_id, record_id=api.record_id
    )
    query: dict[str, str] = {name: api.collection_id for name in listing.required}
    for name in data.draw(st.sets(st.sampled_from(listing.numeric), min_size=1), label="fuzzed"):
        query[name] = str(data.draw(numbers_of_any_size, label=name))
    check_response(api.client, api.client.get(url, params=query))


# --- sequences of requests ----------------------------------------------------------------------


class ErrorLog(logging.Handler):
    """The ERRORs the service logs outside a request: an exception in a background step
    (ingest, jobs) answers no 5xx, but it is an unexpected exception all the same. A request's
    own errors are left to its status code."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("lookalike.api"):
            self.records.append(record)

    def describe(self, start: int = 0) -> str:
        return "\n\n".join(self.format(r) for r in self.records[start:])


class _KnownIds:
    """Ids seen in a scenario's answers. A generated id that names nothing is swapped for a
    known one two times in three, so that sequences act on what they made (schemathesis' own
    links fill path parameters, but not body fields such as `collection`)."""

    def __init__(self, api: Api) -> None:
        self.ids: dict[str, list[str]] = {
            "collection": [api.collection_id],
            "record": [api.record_id],
            "image": [api.image_id],
        }

    def learn(self, payload: Any) -> None:
        items = payload if isinstance(payload, list) else [payload]
        for item in items:
            if not isinstance(item, dict):
                continue
            if "vector_name" in item and isinstance(item.get("id"), str):
                self.ids["collection"].append(item["id"])
            self.ids["record"].extend(sorted(touched_records(item)))
            for result in [item, *(item.get("results") or [])]:
                if isinstance(result, dict) and isinstance(result.get("image_id"), str):
                    self.ids["image"].append(result["image_id"])

    def swap(self, kind: str, value: Any) -> Any:
        known = self.ids[kind]
        if not isinstance(value, str) or value in known:
            return value
        choice = zlib.crc32(value.encode(errors="replace"))
        return value if choice % 3 == 0 else known[choice % len(known)]

    def apply(self, case: Case[Any]) -> None:
        kinds = {
            "collection_id": "collection",
            "collection": "collection",
            "record_id": "record",
            "image_id": "image",
        }
        for name, value in list((case.path_parameters or {}).items()):
            if name in kinds:
                case.path_parameters[name] = self.swap(kinds[name], value)
        if isinstance(case.body, dict):
            for name, value in list(case.body.items()):
                if name in kinds:
                    case.body[name] = self.swap(kinds[name], value)


@pytest.mark.slow
def test_request_sequences_never_fail(tmp_path: Path, models_dir: Path) -> None:
    """Schemathesis follows the links it infers between operations (a created collection's id
    into its records, a record's id into its images, an image's id into search...). Each
    scenario starts from the same state, so that a failure replays; it ends once ingest is idle,
    with no error logged meanwhile. The runtime closes cleanly at the end."""
    errors = ErrorLog()
    service_log = logging.getLogger("lookalike")
    service_log.addHandler(errors)
    try:
        with open_api(tmp_path / "data", models_dir) as api:
            _run_sequences(api, errors)
    finally:
        service_log.removeHandler(errors)
    assert not errors.records, errors.describe()


def _run_sequences(api: Api, errors: ErrorLog) -> None:
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", api.app)
    # The first failing scenario, step by step. Hypothesis replays a failure before reporting
    # it, and a replay against background threads may not draw the same steps: this keeps
    # the report of what actually failed.
    first_failure: list[str] = []

    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            api.seed()
            self.known = _KnownIds(api)
            self.first_error = len(errors.records)
            self.steps: list[str] = []

        def teardown(self) -> None:
            with self._reported("after the last step"):
                assert api.rt.ingest.wait_idle(timeout=60), "ingest still busy after 60 s"
                assert api.rt.enrichment.wait_idle(timeout=60), "enrichment busy after 60 s"
                assert len(errors.records) == self.first_error, errors.describe(self.first_error)

        @contextmanager
        def _reported(self, where: str) -> Iterator[None]:
            try:
                yield
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup too
                if not first_failure:
                    steps = "\n".join(f"  {i}. {step}" for i, step in enumerate(self.steps, 1))
                    first_failure.append(f"{where}, after these steps:\n{steps}\n\n{exc}")
                raise

        def before_call(self, case: Case[Any]) -> None:
            self.known.apply(case)
            _real_images(case)
            if case.path.endswith(("/records", "/images")) and case.method.upper() == "POST":
                # Embedded before the answer: later steps see the same state on every replay.
                case.query = {**(case.query or {}), "wait": "true"}

        def validate_response(
            self,
            response: schemathesis.Response,
            case: Case[Any],
            *args: Any,
            **kwargs: Any,
        ) -> None:
            step = f"{case.method.upper()} {case.formatted_path} -> {response.status_code}"
            self.steps.append(step)
            note(step)
            with self._reported(step):
                case.validate_response(
                    response, checks=[not_a_server_error, error_shape], recorder=self.recorder
                )
                payload = success_payload(response.status_code, response.headers, response.content)
                self.known.learn(payload)
                if case.method.upper() != "GET":
                    check_records_readable(api.client, touched_records(payload))

    try:
        Sequences.run(
            settings=settings(
                FUZZ,
                max_examples=40,
                stateful_step_count=15,
                # Shrinking would replay against background threads too.
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
        )
    except (Exception, BaseExceptionGroup) as exc:
        if first_failure:
            raise AssertionError(first_failure[0]) from exc
        raise
