from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api.app import create_app
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from support import make_settings


@pytest.fixture
def client(rt: Lookalike) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=rt)) as c:
        yield c


@pytest.fixture
def secured(tmp_path: Path, models_dir: Path) -> Settings:
    """Settings with authentication on (the default outside the demo)."""
    return make_settings(tmp_path / "secured", models_dir, auth="on")


@pytest.fixture
def secured_client(secured: Settings) -> Iterator[TestClient]:
    with Lookalike(secured) as rt, TestClient(create_app(runtime=rt)) as c:
        yield c
