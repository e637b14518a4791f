"""The virus scan on ingest, against a real clamd that knows one signature: EICAR's test file.

The daemon is Debian's `clamav-daemon` (`make test` installs it), started once per test session
with its own configuration, socket and signature database, so no signature download is needed.
Without clamd these tests fail, unless SKIP_CLAMAV_TESTS=1 (conftest.py clears LOOKALIKE_*).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lookalike.api.app import create_app
from lookalike.catalog import Image, Job, Record
from lookalike.composition import Lookalike
from lookalike.core.errors import Misconfigured, VirusScannerUnavailable
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.ingest.virus import ClamdScanner, quarantine_dir
from lookalike.records.service import create_collection
from support import free_port, make_settings, settle, stop_process, wait_until

SKIP_ENV = "SKIP_CLAMAV_TESTS"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
# Matches the EICAR string anywhere in any file: stricter than ClamAV's own signature (which wants
# the file to be exactly EICAR's), so an image with EICAR appended counts as infected here.
SIGNATURE_NAME = "Lookalike.Test.EICAR"
# clamd marks what it found with a signature of no official database.
SIGNATURE = f"{SIGNATURE_NAME}.UNOFFICIAL"
STREAM_MAX_BYTES = 1024 * 1024
TENANT = "default"


@dataclass(frozen=True)
class Clamd:
    unix_url: str
    tcp_url: str


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    binary = shutil.which("clamd", path=search)
    if binary is None:
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(f"clamd is not installed ({SKIP_ENV}=1)")
        pytest.fail(
            "clamd (ClamAV's daemon) is not installed: run `make test`, which installs Debian's "
            f"clamav-daemon (or `make clamav` alone); {SKIP_ENV}=1 skips these tests instead",
            pytrace=False,
        )
    root = tmp_path_factory.mktemp("clamd")
    (root / "db").mkdir()
    (root / "tmp").mkdir()
    (root / "db" / "lookalike-test.ndb").write_text(f"{SIGNATURE_NAME}:0:*:{EICAR.hex()}\n")
    port = free_port()
    conf = root / "clamd.conf"
    conf.write_text(
        f"LocalSocket {root / 'clamd.ctl'}\n"
        f"TCPSocket {port}\n"
        "TCPAddr 127.0.0.1\n"
        "Foreground yes\n"
        f"DatabaseDirectory {root / 'db'}\n"
        f"TemporaryDirectory {root / 'tmp'}\n"
        f"LogFile {root / 'clamd.log'}\n"
        f"StreamMaxLength {STREAM_MAX_BYTES}\n"
        "Bytecode no\n"
    )
    out = root / "clamd.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=sink, stderr=subprocess.STDOUT, cwd=root
        )
    try:
        unix_url = f"unix://{root / 'clamd.ctl'}"
        scanner = ClamdScanner(unix_url, connect_timeout_s=1, scan_timeout_s=5)
        wait_until(lambda: proc.poll() is not None or _answers(scanner), timeout=60)
        if not _answers(scanner):
            log = (root / "clamd.log").read_text() if (root / "clamd.log").exists() else ""
            pytest.fail(
                f"clamd did not answer PING (exit status {proc.poll()}):\n{out.read_text()}\n{log}",
                pytrace=False,
            )
        yield Clamd(unix_url=unix_url, tcp_url=f"tcp://127.0.0.1:{port}")
    finally:
        stop_process(proc, timeout=10)


@pytest.fixture
def scanned(tmp_path: Path, models_dir: Path, clamd: Clamd) -> Iterator[Lookalike]:
    """A runtime that scans every upload with the test clamd."""
    with Lookalike(make_settings(tmp_path / "data", models_dir, clamd_url=clamd.unix_url)) as rt:
        yield rt


@pytest.fixture
def scanner_down(tmp_path: Path, models_dir: Path) -> Iterator[Lookalike]:
    """A runtime configured to scan with a clamd that is not running."""
    url = f"unix://{tmp_path / 'no-clamd.ctl'}"
    with Lookalike(make_settings(tmp_path / "data", models_dir, clamd_url=url)) as rt:
        yield rt


def _answers(scanner: ClamdScanner) -> bool:
    try:
        scanner.ping()
    except VirusScannerUnavailable:
        return False
    return True


def _stored(rt: Lookalike, collection_id: str) -> tuple[int, int, int, int, int]:
    """Images, records, jobs, blobs and vectors: what an ingest may leave behind."""
    with rt.catalog.session() as s:
        images = s.scalar(select(func.count()).select_from(Image)) or 0
        records = s.scalar(select(func.count()).select_from(Record)) or 0
        jobs = s.scalar(select(func.count()).select_from(Job)) or 0
    return images, records, jobs, len(rt.blobs.iter_keys()), rt.vectors.count(collection_id)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the scanner ------------------------------------------------------------


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_clamd_tells_clean_bytes_from_infected(
    clamd: Clamd, photos: dict[str, bytes], transport: str
) -> None:
    scanner = ClamdScanner(clamd.unix_url if transport == "unix" else clamd.tcp_url)
    scanner.ping()
    assert scanner.scan(photos["chelsea"]) is None
    assert scanner.scan(EICAR) == SIGNATURE
    # Larger than one INSTREAM chunk, the signature in the last one.
    assert scanner.scan(photos["astronaut"] + EICAR) == SIGNATURE


def test_a_stream_over_clamds_limit_is_refused_with_the_reason(clamd: Clamd) -> None:
    scanner = ClamdScanner(clamd.unix_url)
    with pytest.raises(VirusScannerUnavailable, match="StreamMaxLength"):
        scanner.scan(os.urandom(STREAM_MAX_BYTES + 1))


def test_an_unreachable_clamd_is_reported_not_ignored(tmp_path: Path) -> None:
    for url in (f"unix://{tmp_path / 'missing.ctl'}", f"tcp://127.0.0.1:{free_port()}"):
        with pytest.raises(VirusScannerUnavailable, match="cannot scan uploads") as caught:
            ClamdScanner(url, connect_timeout_s=1).scan(b"bytes")
        assert caught.value.status == 503
        assert url in caught.value.message


def test_a_clamd_that_never_answers_times_out(tmp_path: Path) -> None:
    # A listening socket nobody accepts on: the connection is made, no reply ever comes.
    path = tmp_path / "silent.ctl"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(path))
        silent.listen(1)
        scanner = ClamdScanner(f"unix://{path}", connect_timeout_s=0.5, scan_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(VirusScannerUnavailable, match="did not answer in time"):
            scanner.scan(b"bytes")
        assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "url", ["clamd.ctl", "http://clamav:3310", "unix://", "tcp://", "tcp://clamav:port"]
)
def test_a_malformed_clamd_url_is_refused_at_start(
    tmp_path: Path, models_dir: Path, url: str
) -> None:
    with pytest.raises(Misconfigured, match="LOOKALIKE_CLAMD_URL"):
        ClamdScanner(url)
    with pytest.raises(Misconfigured):
        Lookalike(make_settings(tmp_path / "data", models_dir, clamd_url=url), start=False)


# --- the ingest pipeline -----------------------------------------------------


def test_a_clean_image_is_scanned_and_ingested(
    scanned: Lookalike, photos: dict[str, bytes]
) -> None:
    coll = create_collection(scanned, TENANT, "clean")
    (result,) = scanned.ingest.add(
        coll,
        NewRecord(name="cat", owner="a"),
        [IngestFile(photos["chelsea"], "cat.png")],
        wait=True,
    )
    assert result.status == "added", result.reason
    settle(scanned)
    assert _stored(scanned, coll.id) == (1, 1, 1, 2, 1)  # original and thumbnail blobs
    assert not quarantine_dir(scanned.settings).exists()


@pytest.mark.parametrize("kind", ["image-with-eicar-appended", "eicar"])
def test_an_infected_file_is_refused_quarantined_and_not_stored(
    scanned: Lookalike, photos: dict[str, bytes], kind: str
) -> None:
    coll = create_collection(scanned, TENANT, "infected")
    scanned.ingest.add(
        coll, NewRecord(name="ok", owner="a"), [IngestFile(photos["camera"], "ok.png")], wait=True
    )
    settle(scanned)
    before = _stored(scanned, coll.id)
    data = photos["coins"] + EICAR if kind.startswith("image") else EICAR

    for _ in range(2):  # refused again, not taken for a duplicate of the first attempt
        (result,) = scanned.ingest.add(
            coll,
            NewRecord(name="bad", owner="mallory"),
            [IngestFile(data, "coins.png", source="upload")],
            wait=True,
        )
        assert result.status == "rejected"
        assert result.error_code == "infected"
        assert result.reason is not None and SIGNATURE in result.reason
        assert result.image_id is None and result.record_id is None
    assert _stored(scanned, coll.id) == before

    sha = next(p.name for p in quarantine_dir(scanned.settings).iterdir() if "." not in p.name)
    kept = quarantine_dir(scanned.settings) / sha
    sidecar = kept.with_name(f"{sha}.json")
    assert kept.read_bytes() == data
    meta = json.loads(sidecar.read_text())
    assert meta["sha256"] == sha
    assert meta["filename"] == "coins.png"
    assert meta["signature"] == SIGNATURE
    assert meta["source"] == "upload"
    assert meta["bytes"] == len(data)
    assert meta["quarantined_at"]
    assert _mode(kept) == _mode(sidecar) == 0o600
    assert _mode(kept.parent) == 0o700
    assert sorted(p.name for p in kept.parent.iterdir()) == [sha, f"{sha}.json"]


def test_uploads_are_refused_while_clamd_is_down(
    scanner_down: Lookalike, photos: dict[str, bytes]
) -> None:
    coll = create_collection(scanner_down, TENANT, "down")
    results = scanner_down.ingest.add(
        coll,
        NewRecord(name="cat", owner="a"),
        [IngestFile(photos["chelsea"], "cat.png"), IngestFile(EICAR, "eicar.com")],
        wait=True,
    )
    assert [r.status for r in results] == ["rejected", "rejected"]
    assert {r.error_code for r in results} == {"virus_scanner_unavailable"}
    assert all("cannot scan uploads" in (r.reason or "") for r in results)
    assert _stored(scanner_down, coll.id) == (0, 0, 0, 0, 0)
    assert not quarantine_dir(scanner_down.settings).exists()


# --- through the HTTP API ----------------------------------------------------


def test_batch_upload_takes_the_clean_files_and_refuses_the_infected(
    scanned: Lookalike, photos: dict[str, bytes]
) -> None:
    coll = create_collection(scanned, TENANT, "api")
    files = [
        ("images", ("coffee.png", photos["coffee"], "image/png")),
        ("images", ("eicar.png", photos["moon"] + EICAR, "image/png")),
        ("images", ("eicar.com", EICAR, "application/octet-stream")),
    ]
    with TestClient(create_app(runtime=scanned)) as client:
        r = client.post("/api/images/batch", data={"collection": coll.name}, files=files)
        assert r.status_code == 202, r.text
        added, *refused = r.json()
        assert added["status"] == "added"
        for entry in refused:
            assert entry["status"] == "rejected"
            assert entry["error"]["code"] == "infected"
            assert SIGNATURE in entry["error"]["message"]
        assert wait_until(lambda: scanned.ingest.in_flight == 0)
        records = client.get(f"/api/collections/{coll.id}/records").json()
    assert [i["name"] for i in records["items"]] == ["coffee"]
    settle(scanned)
    assert _stored(scanned, coll.id) == (1, 1, 1, 2, 1)
    assert len(list(quarantine_dir(scanned.settings).glob("*.json"))) == 2


def test_batch_upload_while_clamd_is_down_stores_nothing(
    scanner_down: Lookalike, photos: dict[str, bytes]
) -> None:
    coll = create_collection(scanner_down, TENANT, "api-down")
    files = [("images", ("coffee.png", photos["coffee"], "image/png"))]
    with TestClient(create_app(runtime=scanner_down)) as client:
        r = client.post("/api/images/batch", data={"collection": coll.name}, files=files)
    # Every file refused for the same passing reason: the request as a whole is a 503 to retry.
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "virus_scanner_unavailable"
    assert "cannot scan uploads" in error["message"]
    assert _stored(scanner_down, coll.id) == (0, 0, 0, 0, 0)
