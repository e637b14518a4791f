"""Alembic environment: runs on the connection `Catalog.migrate` hands in, or on the URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from lookalike.catalog.fulltext import include_object
from lookalike.catalog.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite can only alter tables by copying them
        compare_type=True,
        # The full-text objects are made by SQL (migration 0009), not by the models.
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {}, poolclass=pool.NullPool
    )
    with engine.connect() as conn:
        _run(conn)
