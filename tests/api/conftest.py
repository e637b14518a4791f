from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from lookalike.api.app import create_app
from lookalike.runtime import Lookalike


@pytest.fixture
def client(rt: Lookalike) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=rt)) as c:
        yield c
