"""Print the API's OpenAPI document as JSON, without starting a server or opening a data dir.

    python scripts/openapi.py > openapi.json

The web app's types (web/src/api/schema.d.ts) are generated from it; `make test` regenerates
them and fails when the committed file differs.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from lookalike.api.app import create_app
from lookalike.core.config import Settings


def openapi_document() -> dict[str, object]:
    """The OpenAPI document of the app the default settings build (no `.env`, no env vars)."""
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir), _env_file=None)  # type: ignore[call-arg]
        return create_app(settings).openapi()


def main() -> None:
    json.dump(openapi_document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
