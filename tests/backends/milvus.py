"""A real Milvus 2.3 standalone (the PyPI `milvus` wheel) on free 127.0.0.1 ports.

`milvus_server` starts one for the session; `MilvusProcess` starts private ones (the outage
test stops and restarts its own). SKIP_MILVUS_TESTS=1 skips every test that needs one; otherwise
a server that does not start fails the test.

The wheel's own `MilvusServer` probes ports from fixed defaults, leaves the embedded etcd on its
fixed peer port 2380 (so a second server on the machine fails), and its child outlives a
killed test run. Here every port is chosen free, etcd gets its own config file, and the server
is started with a parent-death signal so that it never outlives pytest.
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
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import Backend

VECTOR_BACKEND = Backend(
    "milvus",
    "lookalike.vectors.milvus:MilvusIndex",
    {"index": "hnsw", "timeout_s": 30.0},
    server="milvus_server",
    mark="milvus",
    skips={
        "test_maybe_build_index_after_threshold": (
            "Milvus indexes sealed segments by itself; `maybe_build_index` keeps the "
            "interface's default (False), which the test expects to start a build"
        ),
        "test_drop_or_close_during_build": (
            "the build runs in the Milvus server, which a client's close does not stop: right "
            "after the reopen the server is still indexing the flushed segments, so the "
            "test's `not status().building` describes the embedded engine's cancelled build"
        ),
        "test_searches_and_writes_during_build": (
            "Milvus builds the index inside the server in well under a second at this size, so "
            "`status().building` right after `build_index()` and 20 searches while it builds "
            "cannot be observed reliably"
        ),
    },
)

_PORT_KEYS = (
    "etcd_port",
    "proxy_port",
    "proxy_internal_port",
    "root_coord_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
)
# Test-speed settings; nothing here changes what the engine does or sees. A read with
# consistency Strong waits for the next time tick (200 ms by default: most of a test's time);
# the query coordinator's loops (0.5-1 s) pace every collection's first load.
_TEST_TUNING = {
    "proxy.timeTickInterval": 50,
    "queryCoord.checkInterval": 100,
    "queryCoord.distPullInterval": 100,
}
_START_TIMEOUT_S = 120.0
# Milvus's graceful stop can hang for minutes with collections loaded; its data is safe from a
# kill (etcd and RocksMQ write ahead), which the outage test's restart checks.
_STOP_TIMEOUT_S = 3.0
_PR_SET_PDEATHSIG = 1


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills it when pytest goes, however it goes."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class MilvusProcess:
    """One Milvus standalone with its data under `base_dir`; `start` again (after `stop`)
    reopens the same data on the same port."""

    def __init__(self, base_dir: Path, binaries: Path) -> None:
        self.base_dir = base_dir
        self._binaries = binaries
        ports = _free_ports(len(_PORT_KEYS) + 2)
        self._ports = dict(zip(_PORT_KEYS, ports, strict=False))
        self._etcd_peer_port, self._metrics_port = ports[-2:]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self._ports['proxy_port']}"

    def start(self) -> str:
        from milvus import _initialize_data_files

        _initialize_data_files(str(self._binaries))  # unpacks once; later calls check md5s
        config_dir = self.base_dir / "configs"
        config_dir.mkdir(parents=True, exist_ok=True)
        etcd_config = config_dir / "etcd.yaml"
        peer = f"http://127.0.0.1:{self._etcd_peer_port}"
        client = f"http://127.0.0.1:{self._ports['etcd_port']}"
        etcd_config.write_text(
            f"name: default\nlisten-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
            f"listen-client-urls: {client}\nadvertise-client-urls: {client}\n"
            f"initial-cluster: default={peer}\n"
        )
        if not (config_dir / "milvus.yaml").exists():
            # A restart keeps the config: the wheel's port check would refuse ports that
            # the stopped server's connections still hold in TIME_WAIT.
            self._write_config(config_dir, etcd_config)

        (self.base_dir / "logs").mkdir(exist_ok=True)
        env = dict(os.environ)
        bin_dir = str(self._binaries / "bin")
        env.update(
            DEPLOY_MODE="STANDALONE",
            METRICS_PORT=str(self._metrics_port),
            MILVUS_RUN_DIR=str(self.base_dir / "run"),
            LD_LIBRARY_PATH=os.pathsep.join(filter(None, [bin_dir, env.get("LD_LIBRARY_PATH")])),
        )
        with (
            open(self.base_dir / "logs" / "milvus-stdout.log", "ab") as out,
            open(self.base_dir / "logs" / "milvus-stderr.log", "ab") as err,
        ):
            self._process = subprocess.Popen(
                [str(self._binaries / "bin" / "milvus"), "run", "standalone"],
                cwd=self.base_dir,  # Milvus reads configs/milvus.yaml from its working directory
                env=env,
                stdout=out,
                stderr=err,
                preexec_fn=_die_with_parent,
            )
        self._wait_ready()
        return self.uri

    def _write_config(self, config_dir: Path, etcd_config: Path) -> None:
        from milvus import MilvusServerConfig

        template = config_dir / "milvus.yaml.template"
        stock_template = Path(MilvusServerConfig().template_file)
        stock = stock_template.read_text(encoding="utf-8")
        # The wheel's template has no key for the embedded etcd's own config file.
        template.write_text(
            stock.replace(
                "  use:\n    embed: true",
                f"  config:\n    path: {etcd_config}\n  use:\n    embed: true",
            ),
            encoding="utf-8",
        )
        config = MilvusServerConfig(template=str(template), data_dir=str(self.base_dir))
        # Set by the wheel only when it uses its own template.
        config.glog_conf_file = str(stock_template.with_name("glog.conf"))
        config.update(**self._ports)
        for key, value in _TEST_TUNING.items():
            config.set(key, value)
        config.resolve()  # writes configs/milvus.yaml

    def _wait_ready(self) -> None:
        from pymilvus import connections, utility

        deadline = time.monotonic() + _START_TIMEOUT_S
        health = f"http://127.0.0.1:{self._metrics_port}/healthz"
        alias = f"probe-{os.getpid()}-{id(self)}"
        while True:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"Milvus exited while starting:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Milvus did not start in {_START_TIMEOUT_S:.0f} s")
            try:
                with urllib.request.urlopen(health, timeout=2) as response:
                    healthy = b"OK" in response.read()
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                healthy = False
            if healthy:
                # Healthy is not yet serving: the proxy answers a request when it is.
                try:
                    connections.connect(alias, uri=self.uri, timeout=5)
                    utility.list_collections(using=alias, timeout=5)
                    return
                except Exception:
                    pass
                finally:
                    with contextlib.suppress(Exception):
                        connections.disconnect(alias)
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period); its data stays."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log_tail(self, lines: int = 20) -> str:
        path = self.base_dir / "logs" / "milvus-stderr.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def milvus_binaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the wheel's server binaries are unpacked, once per session for every server."""
    if os.environ.get("SKIP_MILVUS_TESTS") == "1":
        pytest.skip("SKIP_MILVUS_TESTS=1")
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed")
    return tmp_path_factory.mktemp("milvus-binaries")


@pytest.fixture(scope="session")
def milvus_server(milvus_binaries: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI ("http://127.0.0.1:PORT") of a Milvus standalone shared by the session."""
    server = MilvusProcess(tmp_path_factory.mktemp("milvus"), milvus_binaries)
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def private_milvus(milvus_binaries: Path, tmp_path: Path) -> Iterator[MilvusProcess]:
    """A Milvus of the test's own (not started), for tests that stop it."""
    server = MilvusProcess(tmp_path / "milvus", milvus_binaries)
    try:
        yield server
    finally:
        server.stop()
