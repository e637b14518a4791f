"""The short-lived collection cache never brings back what this process changed."""

from __future__ import annotations

from lookalike.catalog import Collection
from lookalike.records.service import CollectionCache


def test_an_answer_read_before_a_change_is_not_stored_after_it() -> None:
    cache = CollectionCache(ttl_s=60)
    old = Collection(id="c1", tenant="t", name="old")
    key = ("t", "old")
    missing, generation = cache.get(key)
    assert missing is None
    # A lookup read the catalog; meanwhile another thread renames the collection and clears.
    cache.clear()
    cache.put(key, old, generation)
    assert cache.get(key)[0] is None
    # A lookup that starts after the change is cached as usual.
    _, generation = cache.get(key)
    cache.put(key, old, generation)
    assert cache.get(key)[0] is old


def test_entries_expire() -> None:
    cache = CollectionCache(ttl_s=0)
    _, generation = cache.get(("t", "c"))
    cache.put(("t", "c"), Collection(id="c", tenant="t", name="c"), generation)
    assert cache.get(("t", "c"))[0] is None
