"""Property-based requests generated from the OpenAPI schema must never cause a server error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from lookalike.api.app import create_app
from lookalike.collections import create_collection
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.runtime import Lookalike
from support import make_settings


@pytest.fixture(scope="module")
def fuzzed_app(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, photos: dict[str, bytes]
) -> Iterator[object]:
    rt = Lookalike(make_settings(tmp_path_factory.mktemp("fuzz"), models_dir))
    coll = create_collection(rt, "default", "demo")
    rt.ingest.add_many(
        coll,
        [(NewRecord(name=n, owner="o"), IngestFile(photos[n])) for n in ("chelsea", "coffee")],
        wait=True,
    )
    yield create_app(runtime=rt)
    rt.close()


@pytest.fixture(scope="module")
def api_schema(fuzzed_app: object) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/api/openapi.json", fuzzed_app)


@pytest.mark.slow
def test_no_server_errors(api_schema: schemathesis.BaseSchema) -> None:
    """Every operation, 25 generated requests each (valid and invalid bodies, ids, params)."""
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        try:
            run()
        except Exception as exc:  # collect all operations' failures, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert operations >= 15
    assert not failures, "\n\n".join(failures)
