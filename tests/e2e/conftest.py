"""A real server on a free port, a real collection, and Debian's Chromium driven by Playwright.

The server is `lookalike serve` in a child process on a temporary data directory, with the
tests' own tiny CLIP model (so text search works) and authentication on. The browser is
/usr/bin/chromium: Playwright never downloads one here. Screenshots go to
`$WEB_E2E_OUT/screenshots` (`make e2e` sets it to test-output/).

Without the browser or a built web app (`make web`) the tests skip, unless WEB_E2E_REQUIRED=1
(as `make e2e` sets it) makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backends.llm import LlmServer
from lookalike.auth.tokens import create_token
from lookalike.core.config import Settings
from support import free_port, make_settings, stop_process, wait_until

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("WEB_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REQUIRED = os.environ.get("WEB_E2E_REQUIRED") == "1"
SECRET = "e2e-secret-key-that-is-long-enough-0123456789"


def _missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def out_dir() -> Path:
    base = Path(os.environ.get("WEB_E2E_OUT") or REPO / "test-output")
    shots = base / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    return shots


@pytest.fixture(scope="session")
def web_dist() -> Path:
    dist = REPO / "web" / "dist"
    if not (dist / "index.html").is_file():
        _missing("the web app is not built (make web)")
    return dist


class Server:
    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings

    def token(self, user: str = "alice", tenant: str = "acme") -> str:
        return create_token(self.settings, user=user, tenant=tenant)

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )


@contextlib.contextmanager
def _serve(
    data_dir: Path,
    models_dir: Path,
    model: str,
    web_dist: Path,
    log_path: Path,
    **extra_env: str,
) -> Iterator[Server]:
    """`lookalike serve` on `data_dir` until the block ends; `extra_env` adds LOOKALIKE_*
    variables (a chat model, for one)."""
    port = free_port()
    settings = make_settings(
        data_dir, models_dir, model=model, auth="on", secret_key=SECRET, web_dir=web_dist
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update(
        LOOKALIKE_DATA_DIR=str(data_dir),
        LOOKALIKE_MODEL_CACHE_DIR=str(models_dir),
        LOOKALIKE_MODEL=model,
        LOOKALIKE_MODEL_DOWNLOAD="false",
        LOOKALIKE_AUTH="on",
        LOOKALIKE_SECRET_KEY=SECRET,
        LOOKALIKE_WEB_DIR=str(web_dist),
        LOOKALIKE_LOG_FORMAT="text",
        LOOKALIKE_EMBED_THREADS="1",
        **extra_env,
    )
    lookalike = Path(sys.executable).with_name("lookalike")
    command = [str(lookalike) if lookalike.exists() else "lookalike", "serve"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=data_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                return True
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ready, timeout=90)
            if proc.poll() is not None:
                pytest.fail(f"the server exited ({proc.returncode}); see {log_path}")
            yield Server(url, settings)
        finally:
            stop_process(proc, timeout=20)


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    tiny_clip: str,
    web_dist: Path,
    out_dir: Path,
) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("e2e-data")
    with _serve(data_dir, models_dir, tiny_clip, web_dist, out_dir.parent / "e2e-server.log") as s:
        yield s


@pytest.fixture(scope="module")
def answering_server(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    tiny_clip: str,
    web_dist: Path,
    out_dir: Path,
    llm_server: LlmServer,
) -> Iterator[Server]:
    """A server of its own whose Ask answers with a real chat model (tests/backends/llm.py),
    deterministic and short as tests/rag/test_ask.py has it."""
    data_dir = tmp_path_factory.mktemp("e2e-ask-data")
    with _serve(
        data_dir,
        models_dir,
        tiny_clip,
        web_dist,
        out_dir.parent / "e2e-ask-server.log",
        LOOKALIKE_LLM_URL=llm_server.url,
        LOOKALIKE_LLM_MODEL=llm_server.model,
        LOOKALIKE_LLM_TEMPERATURE="0",
        LOOKALIKE_LLM_MAX_ANSWER_TOKENS="40",
    ) as s:
        yield s


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        _missing(f"no browser at {CHROMIUM} (make chromium installs Debian's)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
