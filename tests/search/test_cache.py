"""The Redis search cache: hits skip the embedding, every write retires them, tenants never share
them, and a Redis outage costs only the cache. Against the real Redis on 127.0.0.1:6379 (each
test under a key prefix of its own) and, for the outage, a private `redis-server`."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from lookalike.api.metrics import Metrics
from lookalike.catalog import Collection
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.embedding import Models
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.records.service import (
    create_collection,
    delete_images,
    update_record,
)
from lookalike.search import SearchFilters, SearchHit, search_similar
from lookalike.search.cache import InvalidatingIndex, SearchCache, SearchKey, search_cache_of
from lookalike.vectors.base import IndexSettings, VectorIndex
from support import free_port, make_settings, settle, stop_process, wait_until

REDIS_URL = "redis://127.0.0.1:6379/0"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "moon")
TEXT = "a photo of a cat"


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own in the real Redis, removed afterwards."""
    if not _reachable(6379):
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    import redis

    prefix = f"lookalike-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@dataclass
class Uncached:
    """The runtime's stores with the engine itself instead of the caching wrapper: what a
    search answers without any cache."""

    settings: Settings
    catalog: Any
    blobs: Any
    vectors: VectorIndex
    ingest: Any
    collection_cache: Any
    models: Models


def uncached(rt: Lookalike) -> Uncached:
    assert isinstance(rt.vectors, InvalidatingIndex)
    return Uncached(
        rt.settings,
        rt.catalog,
        rt.blobs,
        rt.vectors.inner,
        rt.ingest,
        rt.collection_cache,
        rt.models,
    )


OpenRuntime = Callable[..., Lookalike]


@pytest.fixture
def open_rt(tmp_path: Path, models_dir: Path, tiny_clip: str, prefix: str) -> Iterator[OpenRuntime]:
    """Open runtimes with the search cache on (closed after the test)."""
    opened: list[Lookalike] = []

    def open_runtime(**overrides: object) -> Lookalike:
        values: dict[str, object] = {
            "model": tiny_clip,
            "cache_url": REDIS_URL,
            "redis_key_prefix": prefix,
            **overrides,
        }
        rt = Lookalike(make_settings(tmp_path / f"d{len(opened)}", models_dir, **values))
        opened.append(rt)
        return rt

    yield open_runtime
    for rt in reversed(opened):
        rt.close()


def add_photos(
    rt: Lookalike, coll: Collection, photos: dict[str, bytes], names: tuple[str, ...]
) -> dict[str, str]:
    """Ingest `names` (one record each, tagged `all`) and wait until enriched; image ids by name."""
    items = [
        (
            NewRecord(name=name, owner="alice", tags=("all",), description=f"the {name} photo"),
            IngestFile(photos[name], name),
        )
        for name in names
    ]
    results = rt.ingest.add_many(coll, items, wait=True)
    settle(rt)
    return {r.filename or "": r.image_id or "" for r in results}


def cache_of(rt: Lookalike) -> SearchCache:
    cache = search_cache_of(rt.vectors)
    assert cache is not None
    return cache


def requests(rt: Lookalike) -> dict[str, int]:
    return {result: count for result, count in cache_of(rt).stats().requests.items()}


class EmbedSpy:
    """Counts the query embeddings of the real batcher (its methods still run)."""

    def __init__(self, rt: Lookalike, coll: Collection, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        batcher = rt.models.query_batcher(coll)
        for name in ("embed_text", "embed_image"):
            real = getattr(batcher, name)

            def counted(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
                self.calls += 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(batcher, name, counted)


@pytest.fixture
def loaded(
    open_rt: OpenRuntime, photos: dict[str, bytes]
) -> tuple[Lookalike, Collection, dict[str, str]]:
    rt = open_rt()
    coll = create_collection(rt, "acme", "photos")
    return rt, coll, add_photos(rt, coll, photos, PHOTOS)


def test_a_repeated_search_is_a_hit_that_skips_the_embedding(
    loaded: tuple[Lookalike, Collection, dict[str, str]],
    photos: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt, coll, ids = loaded
    spy = EmbedSpy(rt, coll, monkeypatch)
    queries: list[dict[str, Any]] = [
        {"text": TEXT},
        {"image_bytes": photos["chelsea"]},
        {"image_id": ids["coffee"]},
    ]
    for query in queries:
        before = requests(rt)
        first = search_similar(rt, "acme", "photos", limit=4, **query)
        embedded = spy.calls
        again = search_similar(rt, "acme", "photos", limit=4, **query)
        assert first and again == first
        assert spy.calls == embedded  # the hit embedded nothing
        after = requests(rt)
        assert after["miss"] == before["miss"] + 1
        assert after["hit"] == before["hit"] + 1
    assert spy.calls == 2  # the text's and the uploaded image's misses; an image id needs none
    assert requests(rt)["error"] == 0


def test_cached_answers_equal_uncached_ones(
    loaded: tuple[Lookalike, Collection, dict[str, str]], photos: dict[str, bytes]
) -> None:
    rt, coll, ids = loaded
    plain = uncached(rt)
    cases: list[dict[str, Any]] = [
        {"text": TEXT, "limit": 3},
        {"text": TEXT, "limit": 3, "offset": 2},
        {"text": TEXT, "limit": 10, "score_threshold": 0.0, "include_payload": True},
        {"image_bytes": photos["rocket"], "limit": 5, "phash_gate": 11, "include_payload": True},
        {"image_id": ids["moon"], "limit": 10, "filters": SearchFilters(tags_any=["all"])},
        {"image_id": ids["moon"], "limit": 10, "filters": SearchFilters(tags_none=["all"])},
    ]
    for case in cases:
        expected = search_similar(plain, "acme", coll.id, **case)
        miss = search_similar(rt, "acme", coll.id, **case)
        hit = search_similar(rt, "acme", coll.id, **case)
        assert miss == expected, case
        assert hit == expected, case
    assert requests(rt) == {"hit": len(cases), "miss": len(cases), "error": 0}


def test_each_parameter_is_part_of_the_key(
    loaded: tuple[Lookalike, Collection, dict[str, str]],
) -> None:
    rt, coll, _ = loaded
    variants: list[dict[str, Any]] = [
        {},
        {"limit": 5},
        {"offset": 1},
        {"score_threshold": -0.5},
        {"include_payload": True},
        {"filters": SearchFilters(tags_any=["all"])},
        {"filters": SearchFilters(tags_any=["other"])},
        {"filters": SearchFilters(owner="bob")},
    ]
    for variant in variants:
        search_similar(rt, "acme", coll.id, **{"text": TEXT, "limit": 4, **variant})
    assert requests(rt) == {"hit": 0, "miss": len(variants), "error": 0}
    # The same filters written differently (defaults spelled out) are the same search.
    search_similar(rt, "acme", coll.id, text=TEXT, limit=4, filters=SearchFilters(tags_all=[]))
    assert requests(rt)["hit"] == 1


def test_every_field_of_the_key_changes_the_entry(open_rt: OpenRuntime) -> None:
    cache = cache_of(open_rt())
    base = SearchKey(
        tenant="acme",
        collection_id="c1",
        model_id="m@1",
        vector_name="v",
        query="text:cat",
        filters="",
        limit=10,
        offset=0,
        score_threshold=None,
        phash_gate=None,
        use_crops=False,
        include_payload=False,
        ef=64,
    )
    changed = [
        replace(base, tenant="other"),
        replace(base, collection_id="c2"),
        replace(base, model_id="m@2"),
        replace(base, vector_name="w"),
        replace(base, query="text:dog"),
        replace(base, query="image_id:cat"),
        replace(base, filters='{"owner":"bob"}'),
        replace(base, limit=11),
        replace(base, offset=1),
        replace(base, score_threshold=0.5),
        replace(base, phash_gate=6),
        replace(base, use_crops=True),
        replace(base, include_payload=True),
        replace(base, ef=128),
    ]
    keys = {cache.lookup(k).entry_key for k in (base, *changed)}
    assert len(keys) == 1 + len(changed)


def test_writes_retire_the_collections_entries(
    loaded: tuple[Lookalike, Collection, dict[str, str]],
    photos: dict[str, bytes],
) -> None:
    rt, coll, ids = loaded
    plain = uncached(rt)

    def check(**query: Any) -> list[SearchHit]:
        """The cached answer is the uncached one."""
        got = search_similar(rt, "acme", coll.id, limit=20, **query)
        assert got == search_similar(plain, "acme", coll.id, limit=20, **query)
        return got

    by_text = check(text=TEXT)
    check(text=TEXT)
    assert requests(rt)["hit"] == 1

    # Ingest (upsert): the new photo is found at once.
    added = add_photos(rt, coll, photos, ("coins",))
    assert added["coins"] in {h.image_id for h in check(text=TEXT)}
    assert len(check(text=TEXT)) == len(by_text) + 1

    # Deleting an image (its record stays, so only the version can hide it).
    delete_images(rt, coll.id, [ids["chelsea"]])
    assert ids["chelsea"] not in {h.image_id for h in check(text=TEXT)}

    # A payload change (tags, as quality scores are set): the filters see it.
    only_all = SearchFilters(tags_all=["all"])
    before = check(text=TEXT, filters=only_all)
    check(text=TEXT, filters=only_all)
    record_id = next(h.record_id for h in before if h.image_id == ids["coffee"])
    update_record(rt, "acme", record_id, tags=["renamed-tag"])
    after = check(text=TEXT, filters=only_all)
    assert ids["coffee"] not in {h.image_id for h in after}
    assert len(after) == len(before) - 1

    # A rename touches no vector: the hit is still a hit, with the new name.
    check(text=TEXT)
    hits_before = requests(rt)["hit"]
    update_record(rt, "acme", record_id, name="renamed")
    renamed = check(text=TEXT)
    assert requests(rt)["hit"] == hits_before + 1
    assert "renamed" in {h.name for h in renamed}


def test_every_write_to_the_vectors_bumps_the_version(
    loaded: tuple[Lookalike, Collection, dict[str, str]],
) -> None:
    rt, coll, ids = loaded
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    key = f"{rt.settings.redis_key_prefix}search:{{{coll.id}}}:v"
    search_similar(rt, "acme", coll.id, text=TEXT)  # makes the version if no write has yet
    point = rt.vectors.retrieve(coll.id, [ids["moon"]], with_vectors=True)[0]
    spec = rt.vectors.vector_specs(coll.id)
    writes: list[Callable[[], object]] = [
        lambda: rt.vectors.upsert(coll.id, [point]),
        lambda: rt.vectors.set_payload(coll.id, [point.id], {"quality": 0.5}),
        lambda: rt.vectors.delete(coll.id, [point.id]),
        lambda: rt.vectors.drop_collection(coll.id),
        lambda: rt.vectors.create_collection(coll.id, spec, IndexSettings(), {}),
    ]
    try:
        for write in writes:
            before = client.get(key)
            write()
            assert client.get(key) not in (None, before)
    finally:
        client.close()


def test_a_tenant_never_gets_another_tenants_hits(
    open_rt: OpenRuntime, photos: dict[str, bytes]
) -> None:
    rt = open_rt()
    ours = create_collection(rt, "acme", "photos")
    theirs = create_collection(rt, "globex", "photos")
    our_ids = add_photos(rt, ours, photos, ("astronaut", "chelsea", "coffee"))
    their_ids = add_photos(rt, theirs, photos, ("rocket", "camera", "moon"))

    ours_hits = search_similar(rt, "acme", "photos", text=TEXT, limit=10)
    assert {h.image_id for h in ours_hits} == set(our_ids.values())
    theirs_hits = search_similar(rt, "globex", "photos", text=TEXT, limit=10)
    assert {h.image_id for h in theirs_hits} == set(their_ids.values())
    assert requests(rt) == {"hit": 0, "miss": 2, "error": 0}

    # Even a genuine entry copied under the other tenant's key is not an answer there.
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        entries = sorted(client.scan_iter(match=f"{rt.settings.redis_key_prefix}*:r:*"))
        assert len(entries) == 2
        ours_key = next(k for k in entries if ours.id.encode() in k)
        theirs_key = next(k for k in entries if theirs.id.encode() in k)
        client.set(theirs_key, client.get(ours_key) or b"")
        # ... with its version too, so that only the entry's signature can tell.
        prefix = rt.settings.redis_key_prefix
        client.set(
            f"{prefix}search:{{{theirs.id}}}:v",
            client.get(f"{prefix}search:{{{ours.id}}}:v") or b"",
        )
    finally:
        client.close()
    again = search_similar(rt, "globex", "photos", text=TEXT, limit=10)
    assert {h.image_id for h in again} == set(their_ids.values())
    assert requests(rt)["hit"] == 0


def test_no_cache_configured_leaves_the_engine_alone(tmp_path: Path, models_dir: Path) -> None:
    with Lookalike(make_settings(tmp_path / "data", models_dir)) as rt:
        assert not isinstance(rt.vectors, InvalidatingIndex)
        assert search_cache_of(rt.vectors) is None
        assert b"search_cache" not in Metrics(lambda: rt).render()


def test_metrics_and_health(
    loaded: tuple[Lookalike, Collection, dict[str, str]],
) -> None:
    rt, coll, _ = loaded
    for _ in range(3):
        search_similar(rt, "acme", coll.id, text=TEXT)
    text = Metrics(lambda: rt).render().decode()
    assert 'lookalike_search_cache_requests_total{result="hit"} 2.0' in text
    assert 'lookalike_search_cache_requests_total{result="miss"} 1.0' in text
    assert 'lookalike_search_cache_requests_total{result="error"} 0.0' in text
    assert "lookalike_search_cache_pending_invalidations 0.0" in text
    assert cache_of(rt).health() == "ok"


def test_an_unreachable_cache_keeps_its_password_out_of_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = SearchCache(f"redis://:hunter3@127.0.0.1:{free_port()}/0", prefix="x:", secret="s" * 32)
    try:
        lookup = cache.lookup(
            SearchKey("acme", "c", "m", "v", "text:cat", "", 10, 0, None, None, False, False, 64)
        )
        assert lookup.hits is None and lookup.version is None  # nothing to store either
        cache.invalidate("c")  # remembered, never raised
        assert cache.stats().pending_invalidations == 1
        assert cache.health().startswith("error: ")
    finally:
        cache.close()
    assert "Connection refused" in caplog.text and "hunter3" not in caplog.text


class RedisServer:
    """A private redis-server on a free port; its data survives a restart (saved on stop)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_until(lambda: _reachable(self.port), timeout=10), "redis-server did not start"

    def stop(self) -> None:
        """Stop, saving the data first: entries from before an outage are there after it."""
        assert self.proc is not None
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "shutdown", "save"],
            check=False,
            capture_output=True,
            timeout=10,
        )
        stop_process(self.proc)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    yield server
    if server.proc is not None:
        stop_process(server.proc)


def test_an_outage_costs_only_the_cache(
    open_rt: OpenRuntime,
    redis_server: RedisServer,
    photos: dict[str, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = open_rt(cache_url=redis_server.url)
    coll = create_collection(rt, "acme", "photos")
    add_photos(rt, coll, photos, PHOTOS)
    plain = uncached(rt)
    query: dict[str, Any] = {"image_bytes": photos["coins"], "limit": 4}
    cached = search_similar(rt, "acme", coll.id, **query)
    assert search_similar(rt, "acme", coll.id, **query) == cached
    assert requests(rt) == {"hit": 1, "miss": 1, "error": 0}

    redis_server.stop()
    caplog.set_level(logging.WARNING, logger="lookalike.search.cache")
    for _ in range(3):
        assert search_similar(rt, "acme", coll.id, **query) == cached
    assert requests(rt)["error"] == 3
    assert cache_of(rt).health().startswith("error: ")
    # A write while Redis is down: its version bump must not be lost.
    added = add_photos(rt, coll, photos, ("coins",))
    assert cache_of(rt).stats().pending_invalidations == 1
    fresh = search_similar(plain, "acme", coll.id, **query)
    assert fresh[0].image_id == added["coins"]
    assert search_similar(rt, "acme", coll.id, **query) == fresh
    warnings = [r for r in caplog.records if r.name == "lookalike.search.cache"]
    assert len(warnings) == 1  # once a minute, not once a search

    # Back, with the entry from before the write still stored: it is never served.
    redis_server.start()
    hits = requests(rt)["hit"]

    def resumed() -> bool:
        assert search_similar(rt, "acme", coll.id, **query) == fresh
        return requests(rt)["hit"] > hits

    assert wait_until(resumed)
    assert cache_of(rt).stats().pending_invalidations == 0
    assert cache_of(rt).health() == "ok"
