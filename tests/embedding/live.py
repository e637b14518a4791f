"""Real HTTP servers on 127.0.0.1 for the embedding-service tests: the service app under
uvicorn, a proxy that fails on demand and counts concurrent requests, and a plain file server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import httpx
import uvicorn

from support import wait_until

_FORWARDED = ("content-type", "x-lookalike-", "authorization", "x-api-key")


class LiveServer:
    """An ASGI app served by uvicorn in a background thread on a free port."""

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self, ready_path: str = "/readyz", timeout: float = 60.0) -> LiveServer:
        self._thread.start()
        assert wait_until(lambda: self.server.started, timeout), "uvicorn did not start"

        def ready() -> bool:
            try:
                return httpx.get(self.url + ready_path, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(ready, timeout), f"{self.url}{ready_path} never answered 200"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@dataclass
class ProxyState:
    """Knobs and counters of a `FlakyProxy`."""

    upstream: str
    fail_next: int = 0
    fail_mode: Literal["500", "drop"] = "500"
    hold: threading.Event | None = None  # requests wait on it (up to 5 s) while counted active
    requests: int = 0
    active: int = 0
    peak: int = 0
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _proxy_handler(state: ProxyState, client: httpx.Client) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with state.lock:
                state.requests += 1
                state.paths.append(self.path)
                state.active += 1
                state.peak = max(state.peak, state.active)
                fail = state.fail_next > 0
                if fail:
                    state.fail_next -= 1
            counted = True

            def leave() -> None:
                # Before the response goes out: once the client has it, it may send the next
                # request at once, and that one must not find this one still counted.
                nonlocal counted
                if counted:
                    counted = False
                    with state.lock:
                        state.active -= 1

            try:
                if state.hold is not None:
                    state.hold.wait(5)
                if fail and state.fail_mode == "drop":
                    self.close_connection = True
                    return
                if fail:
                    leave()
                    self._send(
                        500,
                        {"content-type": "application/json"},
                        b'{"error": {"code": "internal", "message": "flaking on purpose"}}',
                    )
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower().startswith(_FORWARDED)
                }
                upstream = client.request(
                    self.command, state.upstream + self.path, content=body, headers=headers
                )
                kept = {
                    k: v for k, v in upstream.headers.items() if k.lower().startswith(_FORWARDED)
                }
                leave()
                self._send(upstream.status_code, kept, upstream.content)
            finally:
                leave()

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


class _ThreadedServer:
    """A stdlib HTTP server on a free loopback port, serving from a background thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class FlakyProxy:
    """Forwards to `upstream`, failing the next `state.fail_next` requests on demand."""

    def __init__(self, upstream: str) -> None:
        self.state = ProxyState(upstream=upstream)
        self._client = httpx.Client(timeout=30, trust_env=False)
        self._server = _ThreadedServer(_proxy_handler(self.state, self._client))
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()
        self._client.close()


class FileServer:
    """Serves `routes[path]()` -> (status, headers, body) over plain HTTP, and records each
    request's path and Host header in `requests`."""

    def __init__(self, routes: dict[str, Callable[[], tuple[int, dict[str, str], bytes]]]) -> None:
        self.requests: list[tuple[str, str]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                seen.append((self.path, self.headers.get("Host", "")))
                route = routes.get(self.path.split("?")[0])
                status, headers, body = route() if route else (404, {}, b"not found")
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = _ThreadedServer(Handler)
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()
