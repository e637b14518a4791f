"""The catalog behaves the same on every database backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from lookalike.catalog import ApiKey, Catalog, Collection, Feedback, Image, Job, Record
from lookalike.catalog.db import alembic_config
from lookalike.catalog.fulltext import include_object
from lookalike.catalog.models import Base
from lookalike.catalog.repository import find_image_by_sha256, get_collection, get_image
from lookalike.core.errors import CollectionNotFound, ImageNotFound


def _collection(tenant: str = "t1", name: str = "shoes") -> Collection:
    return Collection(tenant=tenant, name=name, model="m", model_id="m@abc", vector_name="m", dim=4)


def _seed(catalog: Catalog) -> tuple[str, str, str]:
    with catalog.session() as s:
        c = _collection()
        s.add(c)
        s.flush()
        r = Record(
            collection_id=c.id,
            name="Red sneaker",
            owner="alice",
            tags=["red", "shoe"],
            extra={"path": "/in/a.jpg", "sku": 42},
        )
        s.add(r)
        s.flush()
        i = Image(record_id=r.id, collection_id=c.id, sha256="a" * 64, phash="0f" * 8)
        s.add(i)
        s.flush()
        s.add(Job(kind="embed", collection_id=c.id, image_id=i.id))
        return c.id, r.id, i.id


def test_migrations_reach_head_and_are_idempotent(catalog: Catalog) -> None:
    assert catalog.revision() == catalog.head_revision()
    catalog.migrate()
    assert catalog.revision() == catalog.head_revision()


def test_models_match_migrations(catalog: Catalog) -> None:
    """A model changed without a migration shows up here, on every database."""
    with catalog.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": include_object}
        )
        assert compare_metadata(context, Base.metadata) == []


def test_roundtrip_keeps_json_and_aware_datetimes(catalog: Catalog) -> None:
    _, record_id, image_id = _seed(catalog)
    with catalog.session() as s:
        record = s.get(Record, record_id)
        assert record is not None
        assert record.tags == ["red", "shoe"]
        assert record.extra == {"path": "/in/a.jpg", "sku": 42}
        assert record.created_at.tzinfo is not None
        assert abs(record.created_at - datetime.now(UTC)) < timedelta(minutes=1)
        image = s.get(Image, image_id)
        assert image is not None and image.status == "pending"


def test_json_path_lookup(catalog: Catalog) -> None:
    _, record_id, _ = _seed(catalog)
    with catalog.session() as s:
        found = s.scalars(
            select(Record).where(Record.extra["path"].as_string() == "/in/a.jpg")
        ).all()
    assert [r.id for r in found] == [record_id]


def test_same_bytes_once_per_collection(catalog: Catalog) -> None:
    collection_id, record_id, _ = _seed(catalog)
    with pytest.raises(IntegrityError), catalog.session() as s:
        s.add(Image(record_id=record_id, collection_id=collection_id, sha256="a" * 64))
    with catalog.session() as s:
        other = _collection(name="other")
        s.add(other)
        s.flush()
        r = Record(collection_id=other.id, name="x", owner="bob")
        s.add(r)
        s.flush()
        s.add(Image(record_id=r.id, collection_id=other.id, sha256="a" * 64))
    with catalog.session() as s:
        assert find_image_by_sha256(s, collection_id, "a" * 64) is not None


def test_collection_names_unique_per_tenant(catalog: Catalog) -> None:
    with catalog.session() as s:
        s.add(_collection("t1", "same"))
        s.add(_collection("t2", "same"))
    with pytest.raises(IntegrityError), catalog.session() as s:
        s.add(_collection("t1", "same"))


def test_tenant_scoped_lookups(catalog: Catalog) -> None:
    collection_id, _, image_id = _seed(catalog)
    with catalog.session() as s:
        assert get_collection(s, "t1", "shoes").id == collection_id
        assert get_collection(s, "t1", collection_id).id == collection_id
        assert get_image(s, "t1", image_id).id == image_id
        with pytest.raises(CollectionNotFound):
            get_collection(s, "t2", collection_id)
        with pytest.raises(ImageNotFound):
            get_image(s, "t2", image_id)


def test_deleting_a_collection_cascades(catalog: Catalog) -> None:
    collection_id, _, _ = _seed(catalog)
    with catalog.session() as s:
        c = s.get(Collection, collection_id)
        assert c is not None
        s.delete(c)
    with catalog.session() as s:
        assert s.scalars(select(Record)).all() == []
        assert s.scalars(select(Image)).all() == []
        assert s.scalars(select(Job)).all() == []


def test_naive_datetimes_are_refused(catalog: Catalog) -> None:
    c = _collection()
    c.created_at = datetime(2026, 1, 1)  # naive on purpose
    with catalog.session() as s:
        s.add(c)
        with pytest.raises(Exception, match="naive datetime"):
            s.flush()
        s.rollback()


# --- api keys and feedback (migration 0002) -------------------------------------


def test_api_key_prefixes_are_unique(catalog: Catalog) -> None:
    with catalog.session() as s:
        s.add(ApiKey(tenant="t1", user="ci", prefix="abcdef012345", secret_hash="0" * 64))
    with pytest.raises(IntegrityError), catalog.session() as s:
        s.add(ApiKey(tenant="t2", user="ci", prefix="abcdef012345", secret_hash="1" * 64))
    with catalog.session() as s:
        (key,) = s.scalars(select(ApiKey)).all()
        assert key.revoked_at is None and key.last_used_at is None
        assert key.created_at.tzinfo is not None


def test_feedback_roundtrip_and_cascade(catalog: Catalog) -> None:
    collection_id, _, image_id = _seed(catalog)
    with catalog.session() as s:
        s.add(Feedback(tenant="t1", image_id=image_id, user="alice", action="duplicate", note="n"))
        s.add(Feedback(tenant="t1", user="alice", search_id="01SEARCH", score=10, query_text="q"))
    with catalog.session() as s:
        rows = s.scalars(select(Feedback)).all()
        assert sorted((f.action or "", f.score or 0) for f in rows) == [("", 10), ("duplicate", 0)]
    with catalog.session() as s:
        c = s.get(Collection, collection_id)
        assert c is not None
        s.delete(c)
    with catalog.session() as s:
        # The image's feedback went with it; the score for a whole search stays.
        assert [f.search_id for f in s.scalars(select(Feedback)).all()] == ["01SEARCH"]


@pytest.mark.parametrize(
    "fields",
    [
        {"action": "great"},
        {"score": 0},
        {"score": 11},
        {},  # neither a verdict nor a score
    ],
)
def test_feedback_constraints(catalog: Catalog, fields: dict[str, object]) -> None:
    _, _, image_id = _seed(catalog)
    # MariaDB reports a failed CHECK as an operational error (4025), the others as integrity.
    with pytest.raises((IntegrityError, OperationalError)), catalog.session() as s:
        s.add(Feedback(tenant="t1", image_id=image_id, user="alice", **fields))


def test_feedback_needs_an_existing_image(catalog: Catalog) -> None:
    with pytest.raises(IntegrityError), catalog.session() as s:
        s.add(Feedback(tenant="t1", image_id="0" * 26, user="alice", action="relevant"))


def _seed_0001(catalog: Catalog) -> tuple[str, str]:
    """Rows as revision 0001 knew them (the models describe the head revision)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    c, r, i = "0" * 25 + "c", "0" * 25 + "r", "0" * 25 + "i"
    with catalog.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO collection (id, tenant, name, description, model, model_id, "
                "vector_name, dim, vector_settings, created_at, updated_at) VALUES "
                "(:c, 't1', 'shoes', '', 'm', 'm@abc', 'm', 4, '{}', :now, :now)"
            ),
            {"c": c, "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO record (id, collection_id, name, description, tags, metadata, owner, "
                "created_at, updated_at) VALUES (:r, :c, 'Red sneaker', '', '[]', '{}', 'alice', "
                ":now, :now)"
            ),
            {"r": r, "c": c, "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO image (id, record_id, collection_id, sha256, phash, width, height, "
                "mime, bytes, source, status, anomaly_scores, created_at) VALUES (:i, :r, :c, "
                ":sha, '0f0f0f0f0f0f0f0f', 1, 1, 'image/png', 1, 'upload', 'pending', '{}', :now)"
            ),
            {"i": i, "r": r, "c": c, "sha": "a" * 64, "now": now},
        )
    return r, i


def test_upgrade_from_0001_keeps_data(catalog_url: str) -> None:
    cat = Catalog(catalog_url)
    try:
        cfg = alembic_config(catalog_url)
        with cat.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "0001")
        assert cat.revision() == "0001"
        assert "feedback" not in inspect(cat.engine).get_table_names()
        record_id, image_id = _seed_0001(cat)

        cat.migrate()
        assert cat.revision() == cat.head_revision() and cat.head_revision() is not None
        tables = set(inspect(cat.engine).get_table_names())
        assert {"api_key", "feedback", "collection", "record", "image", "job"} <= tables
        assert {"duplicate_cluster", "duplicate_cluster_member", "pair_verdict"} <= tables
        with cat.session() as s:
            assert s.get(Record, record_id) is not None
            image = s.get(Image, image_id)
            assert image is not None and image.anomaly_dnn is None and image.reviewed_at is None
            s.add(Feedback(tenant="t1", image_id=image_id, user="a", action="relevant"))
            s.add(ApiKey(tenant="t1", user="a", prefix="0123456789ab", secret_hash="f" * 64))

        # And back down: the later tables go, 0001's data stays.
        with cat.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "0001")
        tables = set(inspect(cat.engine).get_table_names())
        assert "feedback" not in tables and "api_key" not in tables
        assert "pair_verdict" not in tables and "duplicate_cluster" not in tables
        with cat.engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM image")).scalar_one() == image_id
        cat.migrate()
        assert cat.revision() == cat.head_revision()
    finally:
        cat.close()


def test_record_listing_conditions(catalog: Catalog) -> None:
    from lookalike.catalog.repository import record_conditions

    collection_id, first_id, _ = _seed(catalog)
    with catalog.session() as s:
        s.add_all(
            [
                Record(collection_id=collection_id, name="Blue_cap 50%", owner="bob",
                       tags=["blue", "50%_off", "café"]),
                Record(collection_id=collection_id, name="redundant", owner="bob",
                       tags=["reddish"]),
            ]
        )  # fmt: skip

    def names(**kw: str) -> set[str]:
        with catalog.session() as s:
            rows = s.scalars(select(Record).where(*record_conditions(collection_id, **kw)))
            return {r.name for r in rows}

    assert names() == {"Red sneaker", "Blue_cap 50%", "redundant"}
    assert names(tag="red") == {"Red sneaker"}  # not "reddish"
    assert names(tag="50%_off") == {"Blue_cap 50%"}
    assert names(tag="50") == set()
    assert names(tag="café") == {"Blue_cap 50%"}
    assert names(owner="bob") == {"Blue_cap 50%", "redundant"}
    assert names(name_contains="red") == {"Red sneaker", "redundant"}
    assert names(name_contains="_cap 50%") == {"Blue_cap 50%"}
    assert names(name_contains="d_n") == set()  # "_" is no wildcard ("redundant" has "dun")
    assert first_id
