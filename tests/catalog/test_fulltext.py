"""The keyword index answers the same on every catalog database (SQLite FTS5, PostgreSQL full-text
search, InnoDB FULLTEXT on MariaDB), kept in step with the rows by the database itself."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, text, update

from lookalike.catalog import Catalog, Collection, Image, ImageText, Record
from lookalike.catalog.fulltext import (
    MAX_TERMS,
    KeywordIndex,
    keyword_index_for,
    parse_query,
)

# InnoDB weighs a word by log(rows / rows with the word): a word in every row weighs nothing, so
# each collection here has filler records that the queries never name.
FILLER = 12


def _collection(catalog: Catalog, tenant: str = "t1", name: str = "things") -> str:
    with catalog.session() as s:
        c = Collection(tenant=tenant, name=name, model="m", model_id="m@1", vector_name="m", dim=4)
        s.add(c)
        s.flush()
        for n in range(FILLER):
            _add_record(s, c.id, f"filler item {n}", description="nothing to see here")
        return c.id


def _add_record(
    s: object,
    collection_id: str,
    name: str,
    *,
    description: str = "",
    tags: Sequence[str] = (),
    images: int = 1,
    status: str = "embedded",
) -> tuple[str, list[str]]:
    from sqlalchemy.orm import Session

    assert isinstance(s, Session)
    r = Record(
        collection_id=collection_id, name=name, description=description, tags=list(tags), owner="a"
    )
    s.add(r)
    s.flush()
    ids = []
    for page in range(images):
        i = Image(
            record_id=r.id,
            collection_id=collection_id,
            sha256=uuid.uuid4().hex * 2,
            page=page + 1 if images > 1 else None,
            status=status,
        )
        s.add(i)
        s.flush()
        ids.append(i.id)
    return r.id, ids


def _record(catalog: Catalog, collection_id: str, name: str, **kw: object) -> tuple[str, list[str]]:
    with catalog.session() as s:
        return _add_record(s, collection_id, name, **kw)  # type: ignore[arg-type]


def _text(
    catalog: Catalog, collection_id: str, image_id: str, text: str, source: str = "ocr"
) -> None:
    with catalog.session() as s:
        s.add(ImageText(image_id=image_id, source=source, collection_id=collection_id, text=text))


def _index(catalog: Catalog) -> KeywordIndex:
    return keyword_index_for(catalog.engine.dialect.name)


def _search(catalog: Catalog, collection_id: str, query: str, limit: int = 20) -> list[str]:
    with catalog.session() as s:
        return [i for i, _ in _index(catalog).search(s, collection_id, query, limit)]


def test_names_descriptions_and_tags_match_and_the_exact_phrase_ranks_first(
    catalog: Catalog,
) -> None:
    c = _collection(catalog)
    _, apart = _record(catalog, c, "Blue sneaker", description="with red laces")
    _, exact = _record(catalog, c, "Red sneaker", description="a classic running shoe")
    _, partial = _record(catalog, c, "Red car")
    _, tagged = _record(catalog, c, "Green hat", tags=["vintage", "wool"])
    _, described = _record(catalog, c, "Lamp", description="a vintage brass lamp")

    hits = _search(catalog, c, "red sneaker")
    assert hits[0] == exact[0]
    assert set(hits) == {exact[0], apart[0], partial[0]}
    assert hits.index(apart[0]) < hits.index(partial[0])  # both words beat one
    assert set(_search(catalog, c, "vintage")) == {tagged[0], described[0]}
    assert _search(catalog, c, "wool") == tagged
    # Any word of several matches (a question finds what names its subject).
    assert set(_search(catalog, c, "where is my brass telescope")) == {described[0]}


def test_phrases_and_exclusions(catalog: Catalog) -> None:
    c = _collection(catalog)
    _, apart = _record(catalog, c, "Blue sneaker", description="with red laces")
    _, exact = _record(catalog, c, "Red sneaker")
    assert _search(catalog, c, '"red sneaker"') == exact
    assert _search(catalog, c, "sneaker -blue") == exact
    assert _search(catalog, c, 'sneaker -"red sneaker"') == apart
    assert _search(catalog, c, "-sneaker") == []  # nothing wanted, nothing found


def test_image_text_finds_its_page_and_a_record_hit_every_page(catalog: Catalog) -> None:
    c = _collection(catalog)
    _, pages = _record(catalog, c, "Annual report", images=3)
    _text(catalog, c, pages[1], "invoice total amount payable within thirty days")
    _text(catalog, c, pages[2], "appendix tables", source="text_layer")
    _text(catalog, c, pages[2], "appendix tables amount", source="ocr")

    assert _search(catalog, c, "payable") == [pages[1]]
    hits = _search(catalog, c, "amount payable")
    assert hits[0] == pages[1] and set(hits) == {pages[1], pages[2]}  # an image once
    # A record hit stands for each of its pages, in page order; a page that also matches by
    # its own text ranks first.
    assert _search(catalog, c, "annual report") == pages
    assert _search(catalog, c, "annual appendix")[0] == pages[2]


def test_only_searchable_images_are_returned(catalog: Catalog) -> None:
    c = _collection(catalog)
    _record(catalog, c, "Pending teapot", status="pending")
    _, failed = _record(catalog, c, "Broken teapot", status="failed")
    _text(catalog, c, failed[0], "teapot")
    _, ready = _record(catalog, c, "Ready teapot")
    assert _search(catalog, c, "teapot") == ready


def test_rows_are_followed_on_update_and_delete(catalog: Catalog) -> None:
    c = _collection(catalog)
    record_id, images = _record(catalog, c, "Old kettle", tags=["copper"])
    _text(catalog, c, images[0], "whistling kettle manual")
    with catalog.session() as s:
        s.execute(update(Record).where(Record.id == record_id).values(name="New teapot"))
    assert _search(catalog, c, "kettle") == images  # still in its text
    assert _search(catalog, c, "old") == []
    assert _search(catalog, c, "teapot") == images
    with catalog.session() as s:
        s.execute(update(ImageText).values(text="steam iron manual"))
    assert _search(catalog, c, "kettle") == []
    assert _search(catalog, c, "steam") == images
    if catalog.engine.dialect.name == "sqlite":
        # REPLACE deletes the old row without firing its delete trigger.
        with catalog.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT OR REPLACE INTO image_text (image_id, source, collection_id, text, "
                    "created_at) SELECT image_id, source, collection_id, 'flat iron', created_at "
                    "FROM image_text"
                )
            )
        assert _search(catalog, c, "steam") == [] and _search(catalog, c, "flat") == images
    with catalog.session() as s:
        s.execute(delete(ImageText))
        s.execute(update(Record).where(Record.id == record_id).values(tags=["brass"]))
    assert _search(catalog, c, "steam") == [] and _search(catalog, c, "copper") == []
    assert _search(catalog, c, "brass") == images
    with catalog.session() as s:
        s.execute(delete(Record).where(Record.id == record_id))
    assert _search(catalog, c, "teapot brass") == []


def test_collections_and_tenants_are_isolated(catalog: Catalog) -> None:
    mine = _collection(catalog, "t1", "mine")
    other = _collection(catalog, "t1", "other")
    theirs = _collection(catalog, "t2", "mine")
    _, found = _record(catalog, mine, "Silver spoon")
    for c in (other, theirs):
        _, images = _record(catalog, c, "Silver spoon")
        _text(catalog, c, images[0], "silver spoon")
    assert _search(catalog, mine, "silver spoon") == found
    assert _search(catalog, mine, f'silver {other} "{theirs}"') == found


def test_accents(catalog: Catalog) -> None:
    c = _collection(catalog)
    _, cafe = _record(catalog, c, "Café crème", tags=["église"])
    assert _search(catalog, c, "café") == cafe
    assert _search(catalog, c, "CRÈME") == cafe
    folds = catalog.engine.dialect.name != "postgresql"  # `simple` keeps accents
    assert _search(catalog, c, "cafe") == (cafe if folds else [])
    # Tags are JSON, stored with \\u escapes: SQLite and PostgreSQL read the JSON; InnoDB
    # indexes its text.
    assert _search(catalog, c, "église") == ([] if catalog.engine.dialect.name == "mysql" else cafe)


HOSTILE = [
    '"',
    '""',
    '"unterminated phrase',
    "*",
    "sneaker*",
    "-",
    "--",
    "- -red",
    "red OR",
    "OR AND NOT",
    "NEAR(red sneaker, 2)",
    "name:red",
    "collection_id : x",
    "^red",
    "red + sneaker",
    "(red",
    "red)",
    "@3 red",
    "~red <sneaker> >x",
    "'; DROP TABLE record; --",
    "' OR 1=1 --",
    "\\",
    "%_%",
    "!red & sneaker | :*",
    "red <-> sneaker",
    "\x00red",
    "日本語のテキスト",
    "red " * 400,
    "x" * 1000,
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "the and of",
]


def test_no_query_raises(catalog: Catalog) -> None:
    c = _collection(catalog)
    _, exact = _record(catalog, c, "Red sneaker")
    for query in HOSTILE:
        hits = _search(catalog, c, query)
        parsed = parse_query(query)
        if ("red",) in parsed.phrases and ("red",) not in parsed.excluded:
            assert exact[0] in hits, query
        elif parsed.empty:
            assert hits == [], query


def test_the_query_language() -> None:
    q = parse_query('Red, sneaker! "Running SHOE" -blue -"old boot" OR')
    assert q.phrases == (
        ("red",),
        ("sneaker",),
        ("running", "shoe"),
        ("red", "sneaker", "or"),  # the words in order, stop words and all
    )
    assert q.excluded == (("blue",), ("old", "boot"))
    assert parse_query("*** ' -- ").empty
    assert parse_query('"').empty
    many = parse_query(" ".join(f"w{i}" for i in range(100)))
    assert len(many.phrases) == MAX_TERMS  # no phrase of all: too long to be one
    assert parse_query("  ").phrases == ()
    assert parse_query("what is the").empty  # stop words only
    assert parse_query('"the who"').phrases == (("the", "who"),)
