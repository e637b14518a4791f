"""Full-text search in the catalog: the keyword side of hybrid retrieval.

Record names, descriptions and tags, and the words of an image (`image_text`: a page's text
layer or what OCR read), are matched by the database's own full-text engine, so that nothing in
the application has to keep an index in step with the rows: SQLite FTS5 tables that triggers
maintain, PostgreSQL GIN expression indexes, InnoDB FULLTEXT indexes on MySQL and MariaDB.
Migration 0009 makes them; the SQL that reads them lives here, next to the SQL that made them.

One query language on all three, parsed here so that no input ever reaches an engine's own query
syntax (which differs, and raises on a stray quote or operator): words, any of which matches
(more of them, and rarer ones, rank higher; InnoDB's stop words, "the", "in", count as none);
"quoted phrases", whose words must follow each other; `-word` or `-"a phrase"`, which leaves
out what has it. A query of a few words also counts those words in order as a phrase, so the
exact phrase ranks above the same words apart.

Scores are each engine's own (BM25 in SQLite, ts_rank in PostgreSQL, InnoDB's TF-IDF) and mean
nothing across engines or across queries: callers fuse rankings, never scores.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from lookalike.catalog.models import Image

# Words in the engines' sense: letters and digits (an underscore or a hyphen separates words in
# all three tokenizers).
_WORD = re.compile(r"[^\W_]+")
_CHUNK = re.compile(r'(-?)"([^"]*)"?|(\S+)')
MAX_TERMS = 32
MAX_WORD_CHARS = 64  # InnoDB indexes no longer token than 84 bytes
_AUTO_PHRASE_WORDS = 8
# InnoDB's default stop words (INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD), left out of the
# words on every engine: a question's "in" or "the" would otherwise match nearly every row in
# SQLite and PostgreSQL and none in MySQL. Inside a quoted phrase they stay.
STOP_WORDS = frozenset(
    (
        "a", "about", "an", "are", "as", "at", "be", "by", "com", "de", "en", "for", "from",
        "how", "i", "in", "is", "it", "la", "of", "on", "or", "that", "the", "this", "to", "was",
        "what", "when", "where", "who", "will", "with", "und", "www",
    )
)  # fmt: skip

# The names of every database object migration 0009 makes: the catalog models know none of them.
OBJECT_PREFIX = "fulltext_"

# The record's text as PostgreSQL indexes it: the GIN index of migration 0009 is on exactly this
# expression, and a query must repeat it word for word for the planner to use the index.
PG_RECORD_VECTOR = (
    "setweight(to_tsvector('simple'::regconfig, name), 'A') || "
    "setweight(json_to_tsvector('simple'::regconfig, tags, '[\"string\"]'::jsonb), 'B') || "
    "setweight(to_tsvector('simple'::regconfig, description), 'C')"
)
PG_TEXT_VECTOR = "to_tsvector('simple'::regconfig, text)"
# MySQL cannot index a JSON column for full text: a stored column generated from it can be.
MYSQL_TAGS_COLUMN = "fulltext_tags"


def include_object(obj: object, name: str | None, type_: str, reflected: bool, _: object) -> bool:
    """Alembic's `include_object`: the full-text objects are made by SQL in migration 0009, not
    by the models, so autogenerate and the model check leave them alone."""
    return not (name or "").startswith(OBJECT_PREFIX)


@dataclass(frozen=True)
class KeywordQuery:
    """A parsed query: `phrases` hold single words as one-word phrases."""

    phrases: tuple[tuple[str, ...], ...]
    excluded: tuple[tuple[str, ...], ...]

    @property
    def empty(self) -> bool:
        return not self.phrases


def parse_query(query: str) -> KeywordQuery:
    """The words and phrases of `query`; anything else in it (operators, quotes, punctuation,
    SQL) is a separator. At most `MAX_TERMS` words count."""
    phrases: list[tuple[str, ...]] = []
    excluded: list[tuple[str, ...]] = []
    bare: list[str] = []
    budget = MAX_TERMS
    for match in _CHUNK.finditer(query):
        negate, quoted, chunk = match.group(1), match.group(2), match.group(3)
        if quoted is not None:
            words = _words(quoted)[:budget]
            if words:
                (excluded if negate else phrases).append(tuple(words))
        else:
            assert chunk is not None
            negate = chunk.startswith("-")
            words = _words(chunk)[:budget]
            if negate:
                excluded.extend((w,) for w in words)
            else:
                bare.extend(words)
                phrases.extend((w,) for w in words if w not in STOP_WORDS)
        budget -= len(words)
        if budget <= 0:
            break
    if 2 <= len(bare) <= _AUTO_PHRASE_WORDS and phrases:
        phrases.append(tuple(bare))
    return KeywordQuery(tuple(dict.fromkeys(phrases)), tuple(dict.fromkeys(excluded)))


def _words(chunk: str) -> list[str]:
    return [w[:MAX_WORD_CHARS] for w in _WORD.findall(chunk.casefold())]


class KeywordIndex(ABC):
    """The full-text index of one catalog database: ranked image ids for a text query.

    A hit on a record's name, description or tags stands for each of the record's images, at the
    record's rank; a hit on an image's text for that image. The two rankings are fused by
    reciprocal rank (`rrf_k`), and only searchable (embedded) images are returned.
    """

    dialect: str

    def search(
        self, session: Session, collection_id: str, query: str, limit: int, *, rrf_k: int = 60
    ) -> list[tuple[str, float]]:
        """Up to `limit` (image id, score) pairs of `collection_id`, best first."""
        parsed = parse_query(query)
        if parsed.empty or limit < 1:
            return []
        records = self.search_records(session, collection_id, parsed, limit)
        texts = self.search_texts(session, collection_id, parsed, limit)
        record_ids = [r for r, _ in records]
        wanted = set(record_ids)
        text_ids = [i for i, _ in texts]
        rows = session.execute(
            select(Image.id, Image.record_id, Image.page).where(
                Image.collection_id == collection_id,
                Image.status == "embedded",
                Image.record_id.in_(record_ids) | Image.id.in_(text_ids),
            )
        ).all()
        images_of: dict[str, list[tuple[int, str]]] = defaultdict(list)
        searchable: set[str] = set()
        for image_id, record_id, page in rows:
            searchable.add(image_id)
            if record_id in wanted:
                images_of[record_id].append((page or 0, image_id))
        scores: dict[str, float] = defaultdict(float)
        for rank, record_id in enumerate(record_ids, 1):
            for _, image_id in sorted(images_of[record_id])[:limit]:
                scores[image_id] += 1.0 / (rrf_k + rank)
        for rank, image_id in enumerate((i for i in text_ids if i in searchable), 1):
            scores[image_id] += 1.0 / (rrf_k + rank)
        return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

    @abstractmethod
    def search_records(
        self, session: Session, collection_id: str, query: KeywordQuery, limit: int
    ) -> list[tuple[str, float]]:
        """(record id, score) of the records whose name, description or tags match, best first."""

    @abstractmethod
    def search_texts(
        self, session: Session, collection_id: str, query: KeywordQuery, limit: int
    ) -> list[tuple[str, float]]:
        """(image id, score) of the images whose text matches, best first, each image once."""


def _best_once(rows: Sequence[tuple[str, float]], limit: int) -> list[tuple[str, float]]:
    """Rows ordered best first, each id at its best place (an image has two texts at most)."""
    seen: dict[str, float] = {}
    for key, score in rows:
        seen.setdefault(key, float(score))
    return list(seen.items())[:limit]


class SQLiteKeywordIndex(KeywordIndex):
    """FTS5 tables `fulltext_record` and `fulltext_image_text`, written by triggers on `record`
    and `image_text`. Their rowids come from `fulltext_key`, whose INTEGER PRIMARY KEY survives
    VACUUM and table copies, unlike the implicit rowid of a table keyed by a string. The
    collection is an indexed column, matched as a term: the engine intersects it with the
    query's terms instead of ranking every collection's matches."""

    dialect = "sqlite"

    @staticmethod
    def render(query: KeywordQuery) -> str:
        def phrase(words: tuple[str, ...]) -> str:
            return '"' + " ".join(words).replace('"', '""') + '"'

        expression = "(" + " OR ".join(phrase(p) for p in query.phrases) + ")"
        if query.excluded:
            expression += " NOT (" + " OR ".join(phrase(p) for p in query.excluded) + ")"
        return expression

    def _match(self, collection_id: str, query: KeywordQuery) -> str:
        return f"collection_id : {_quote_fts(collection_id)} AND {self.render(query)}"

    def search_records(
        self, session: Session, collection_id: str, query: KeywordQuery, limit: int
    ) -> list[tuple[str, float]]:
        rows = session.execute(
            text(
                "SELECT k.ref, bm25(fulltext_record, 0.0, 10.0, 5.0, 2.0) AS score "
                "FROM fulltext_record JOIN fulltext_key k ON k.id = fulltext_record.rowid "
                "WHERE fulltext_record MATCH :q ORDER BY score, k.ref LIMIT :n"
            ),
            {"q": self._match(collection_id, query), "n": limit},
        ).all()
        # bm25() is lower for better matches.
        return [(ref, -float(score)) for ref, score in rows]

    def search_texts(
        self, session: Session, collection_id: str, query: KeywordQuery, limit: int
    ) -> list[tuple[str, float]]:
        rows = session.execute(
            text(
                "SELECT k.ref, bm25(fulltext_image_text, 0.0, 1.0) AS score "
                "FROM fulltext_image_text JOIN fulltext_key k "
                "ON k.id = fulltext_image_text.rowid "
                "WHERE fulltext_image_text MATCH :q ORDER BY score, k.ref LIMIT :n"
            ),
            {"q": self._match(collection_id, query), "n": 2 * limit},
        ).all()
        return _best_once([(ref.split("/", 1)[0], -float(score)) for ref, score in rows], limit)


def _quote_fts(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class PostgresKeywordIndex(KeywordIndex):
    """GIN indexes on `PG_RECORD_VECTOR` and `PG_TEXT_VECTOR` with the `simple` configuration:
    no stemming and no stop words, like the other two engines, so a query means the same on
    each; accents count (no `unaccent`, which is not immutable and so cannot be indexed)."""

    dialect = "postgresql"

    @staticmethod
    def render(query: KeywordQuery) -> str:
        def phrase(words: tuple[str, ...]) -> str:
            return "(" + " <-> ".join(f"'{w}'" for w in words) + ")"

        expression = "(" + " | ".join(phrase(p) for p in query.phrases) + ")"
        for p in query.excluded:
            expression += f" & !{phrase(p)}"
        return expression

    def search_records(
        self, session: Session, collection_id: str, query: KeywordQuery, limit: int
    ) -> list[tuple[str, float]]:
        rows = session.execute(
            text(
                f"SELECT id, ts_rank({PG_RECORD_VECTOR}, q) AS score "  # noqa: S608 (constants; input is bound)
                "FROM record, to_tsquery('simple'::regconfig, :q) AS q "
                f"WHERE collection_id = :c AND ({PG_RECORD_VECTOR}) @@ q "
                "ORDER BY score DESC, id LIMIT :n"
            ),
            {"q": self.render(query), "c": collection_id, "n": limit},
        ).all()
        return [(i, float(s)) for i, s in rows]

    def search_texts(
        self, session: Session, collection_id: str, query: KeywordQuery, limit: int
    ) -> list[tuple[str, float]]:
        rows = session.execute(
            text(
                f"SELECT image_id, ts_rank({PG_TEXT_VECTOR}, q) AS score "  # noqa: S608 (constants; input is bound)
                "FROM image_text, to_tsquery('simple'::regconfig, :q) AS q "
                f"WHERE collection_id = :c AND {PG_TEXT_VECTOR} @@ q "
                "ORDER BY score DESC, image_id LIMIT :n"
            ),
            {"q": self.render(query), "c": collection_id, "n": 2 * limit},
        ).all()
        return _best_once([(i, float(s)) for i, s in rows], limit)


class MySQLKeywordIndex(KeywordIndex):
    """InnoDB FULLTEXT indexes in boolean mode, on MySQL and MariaDB. InnoDB leaves out words
    shorter than `innodb_ft_min_token_size` (3) and its stop words, and sees a row's new text
    only once its transaction commits."""

    dialect = "mysql"

    @staticmethod
    def render(query: KeywordQuery) -> str:
        def phrase(words: tuple[str, ...]) -> str:
            return words[0] if len(words) == 1 else '"' + " ".join(words) + '"'

        # A bare phrase among words flattens InnoDB's scores (measured on MariaDB 10.11: every
        # row with the words scores alike); `>` makes it count for more, as in the others.
        terms = [phrase(p) if len(p) == 1 else ">" + phrase(p) for p in query.phrases]
        terms += ["-" + phrase(p) for p in query.excluded]
        return " ".join(terms)

    def search_records(
        self, session: Session, collection_id: str, query: KeywordQuery, limit: int
    ) -> list[tuple[str, float]]:
        match = f"MATCH (name, description, {MYSQL_TAGS_COLUMN}) AGAINST (:q IN BOOLEAN MODE)"
        rows = session.execute(
            text(
                f"SELECT id, {match} AS score FROM record "  # noqa: S608 (constants; input is bound)
                f"WHERE collection_id = :c AND {match} "
                "ORDER BY score DESC, id LIMIT :n"
            ),
            {"q": self.render(query), "c": collection_id, "n": limit},
        ).all()
        return [(i, float(s)) for i, s in rows]

    def search_texts(
        self, session: Session, collection_id: str, query: KeywordQuery, limit: int
    ) -> list[tuple[str, float]]:
        match = "MATCH (text) AGAINST (:q IN BOOLEAN MODE)"
        rows = session.execute(
            text(
                f"SELECT image_id, {match} AS score FROM image_text "  # noqa: S608 (constants; input is bound)
                f"WHERE collection_id = :c AND {match} ORDER BY score DESC, image_id LIMIT :n"
            ),
            {"q": self.render(query), "c": collection_id, "n": 2 * limit},
        ).all()
        return _best_once([(i, float(s)) for i, s in rows], limit)


_INDEXES: dict[str, type[KeywordIndex]] = {
    "sqlite": SQLiteKeywordIndex,
    "postgresql": PostgresKeywordIndex,
    "mysql": MySQLKeywordIndex,
    "mariadb": MySQLKeywordIndex,
}


def keyword_index_for(dialect: str) -> KeywordIndex:
    """The full-text index of a catalog on `dialect` (SQLAlchemy's dialect name)."""
    try:
        return _INDEXES[dialect]()
    except KeyError:
        raise ValueError(f"no full-text search for a {dialect} catalog") from None


__all__ = [
    "KeywordIndex",
    "KeywordQuery",
    "include_object",
    "keyword_index_for",
    "parse_query",
]
