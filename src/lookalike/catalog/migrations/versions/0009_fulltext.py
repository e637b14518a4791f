"""full-text indexes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 11:00:00.000000

Keyword search (`catalog/fulltext.py`) over record names, descriptions and tags and over
`image_text`, by each database's own full-text engine, kept in step by the database itself:

- SQLite: FTS5 tables `fulltext_record` and `fulltext_image_text`, whose rowids `fulltext_key`
  hands out, written by triggers on `record` and `image_text`. A later migration that copies
  either table (a batch alter on SQLite) drops its triggers and must make them again.
- PostgreSQL: GIN indexes on the expressions `fulltext.PG_RECORD_VECTOR` / `PG_TEXT_VECTOR`.
- MySQL / MariaDB: InnoDB FULLTEXT indexes; the JSON tags are indexed through a stored
  generated column, `record.fulltext_tags` (MySQL cannot index a JSON column for full text).

None of these objects is in the models: every name starts with `fulltext_`, which
`fulltext.include_object` keeps out of autogenerate.
"""

# The SQL here is built from this file's constants only.
# ruff: noqa: S608

from __future__ import annotations

from alembic import op

from lookalike.catalog.fulltext import MYSQL_TAGS_COLUMN, PG_RECORD_VECTOR, PG_TEXT_VECTOR

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# SQLite: the tags as words (JSON escapes decoded), the row's key in `fulltext_key`.
_TAGS = (
    "CASE WHEN json_valid({row}.tags) THEN "
    "(SELECT group_concat(value, ' ') FROM json_each({row}.tags)) ELSE {row}.tags END"
)
_TOKENIZE = "tokenize = 'unicode61 remove_diacritics 2'"
_RECORD_KEY = "(SELECT id FROM fulltext_key WHERE kind = 'record' AND ref = {row}.id)"
_TEXT_REF = "{row}.image_id || '/' || {row}.source"
_TEXT_KEY = "(SELECT id FROM fulltext_key WHERE kind = 'text' AND ref = " + _TEXT_REF + ")"


def _sqlite_record_row(row: str) -> str:
    return f"{row}.collection_id, {row}.name, {_TAGS.format(row=row)}, {row}.description"


_SQLITE_UP = [
    "CREATE TABLE fulltext_key (id INTEGER PRIMARY KEY, kind VARCHAR(8) NOT NULL, "
    "ref VARCHAR(64) NOT NULL, UNIQUE (kind, ref))",
    "CREATE VIRTUAL TABLE fulltext_record USING fts5("
    f"collection_id, name, tags, description, {_TOKENIZE})",
    f"CREATE VIRTUAL TABLE fulltext_image_text USING fts5(collection_id, text, {_TOKENIZE})",
    # record
    # An INSERT OR REPLACE deletes the row it replaces without its delete trigger (unless
    # recursive_triggers is on): an insert clears what a row of that key left.
    "CREATE TRIGGER fulltext_record_insert AFTER INSERT ON record BEGIN "
    f"DELETE FROM fulltext_record WHERE rowid = {_RECORD_KEY.format(row='new')}; "
    "INSERT OR IGNORE INTO fulltext_key (kind, ref) VALUES ('record', new.id); "
    "INSERT INTO fulltext_record (rowid, collection_id, name, tags, description) VALUES ("
    f"{_RECORD_KEY.format(row='new')}, {_sqlite_record_row('new')}); END",
    "CREATE TRIGGER fulltext_record_update "
    "AFTER UPDATE OF collection_id, name, tags, description ON record BEGIN "
    f"DELETE FROM fulltext_record WHERE rowid = {_RECORD_KEY.format(row='old')}; "
    "INSERT INTO fulltext_record (rowid, collection_id, name, tags, description) VALUES ("
    f"{_RECORD_KEY.format(row='new')}, {_sqlite_record_row('new')}); END",
    "CREATE TRIGGER fulltext_record_delete AFTER DELETE ON record BEGIN "
    f"DELETE FROM fulltext_record WHERE rowid = {_RECORD_KEY.format(row='old')}; "
    "DELETE FROM fulltext_key WHERE kind = 'record' AND ref = old.id; END",
    # image_text
    "CREATE TRIGGER fulltext_image_text_insert AFTER INSERT ON image_text BEGIN "
    f"DELETE FROM fulltext_image_text WHERE rowid = {_TEXT_KEY.format(row='new')}; "
    "INSERT OR IGNORE INTO fulltext_key (kind, ref) "
    f"VALUES ('text', {_TEXT_REF.format(row='new')}); "
    "INSERT INTO fulltext_image_text (rowid, collection_id, text) VALUES ("
    f"{_TEXT_KEY.format(row='new')}, new.collection_id, new.text); END",
    "CREATE TRIGGER fulltext_image_text_update "
    "AFTER UPDATE OF image_id, source, collection_id, text ON image_text BEGIN "
    f"DELETE FROM fulltext_image_text WHERE rowid = {_TEXT_KEY.format(row='old')}; "
    f"DELETE FROM fulltext_key WHERE kind = 'text' AND ref = {_TEXT_REF.format(row='old')}; "
    f"INSERT INTO fulltext_key (kind, ref) VALUES ('text', {_TEXT_REF.format(row='new')}); "
    "INSERT INTO fulltext_image_text (rowid, collection_id, text) VALUES ("
    f"{_TEXT_KEY.format(row='new')}, new.collection_id, new.text); END",
    "CREATE TRIGGER fulltext_image_text_delete AFTER DELETE ON image_text BEGIN "
    f"DELETE FROM fulltext_image_text WHERE rowid = {_TEXT_KEY.format(row='old')}; "
    f"DELETE FROM fulltext_key WHERE kind = 'text' AND ref = {_TEXT_REF.format(row='old')}; END",
    # what is there already
    "INSERT INTO fulltext_key (kind, ref) SELECT 'record', id FROM record",
    "INSERT INTO fulltext_record (rowid, collection_id, name, tags, description) "
    f"SELECT {_RECORD_KEY.format(row='r')}, {_sqlite_record_row('r')} FROM record AS r",
    f"INSERT INTO fulltext_key (kind, ref) SELECT 'text', {_TEXT_REF.format(row='t')} "
    "FROM image_text AS t",
    "INSERT INTO fulltext_image_text (rowid, collection_id, text) "
    f"SELECT {_TEXT_KEY.format(row='t')}, t.collection_id, t.text FROM image_text AS t",
]
_SQLITE_DOWN = [
    *(
        f"DROP TRIGGER IF EXISTS fulltext_{table}_{event}"
        for table in ("record", "image_text")
        for event in ("insert", "update", "delete")
    ),
    "DROP TABLE IF EXISTS fulltext_image_text",
    "DROP TABLE IF EXISTS fulltext_record",
    "DROP TABLE IF EXISTS fulltext_key",
]

_POSTGRES_UP = [
    f"CREATE INDEX fulltext_record ON record USING gin (({PG_RECORD_VECTOR}))",
    f"CREATE INDEX fulltext_image_text ON image_text USING gin (({PG_TEXT_VECTOR}))",
]
_POSTGRES_DOWN = [
    "DROP INDEX IF EXISTS fulltext_image_text",
    "DROP INDEX IF EXISTS fulltext_record",
]

_MYSQL_UP = [
    f"ALTER TABLE record ADD COLUMN {MYSQL_TAGS_COLUMN} TEXT "
    "GENERATED ALWAYS AS (CAST(tags AS CHAR)) STORED",
    f"CREATE FULLTEXT INDEX fulltext_record ON record (name, description, {MYSQL_TAGS_COLUMN})",
    "CREATE FULLTEXT INDEX fulltext_image_text ON image_text (text)",
]
_MYSQL_DOWN = [
    "DROP INDEX fulltext_image_text ON image_text",
    "DROP INDEX fulltext_record ON record",
    f"ALTER TABLE record DROP COLUMN {MYSQL_TAGS_COLUMN}",
]

_STATEMENTS = {
    "sqlite": (_SQLITE_UP, _SQLITE_DOWN),
    "postgresql": (_POSTGRES_UP, _POSTGRES_DOWN),
    "mysql": (_MYSQL_UP, _MYSQL_DOWN),
    "mariadb": (_MYSQL_UP, _MYSQL_DOWN),
}


def _run(index: int) -> None:
    dialect = op.get_bind().dialect.name
    if dialect not in _STATEMENTS:
        raise NotImplementedError(f"no full-text indexes for a {dialect} catalog")
    for statement in _STATEMENTS[dialect][index]:
        op.execute(statement)


def upgrade() -> None:
    _run(0)


def downgrade() -> None:
    _run(1)
