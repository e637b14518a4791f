"""Catalog backends: every test in tests/catalog runs against each database that is reachable.

A new backend is one more entry in `BACKENDS`. PostgreSQL and MariaDB run on this machine and in
CI; where one is not reachable its tests are skipped with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lookalike.catalog import Catalog

BACKENDS = {
    "sqlite": None,
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}


def _scratch_database(admin_url: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"lookalike_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"{make_url(admin_url).get_backend_name()} not reachable: {exc}")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if admin.dialect.name == "postgresql":
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture(params=list(BACKENDS))
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    admin_url = BACKENDS[request.param]
    if admin_url is None:
        yield f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    else:
        yield from _scratch_database(admin_url)


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    cat = Catalog(catalog_url)
    cat.migrate()
    yield cat
    cat.close()
