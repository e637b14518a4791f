"""Virus scan of ingested bytes with ClamAV's daemon, clamd, and the quarantine of what it finds.

The scan runs before the image decoder sees the bytes: the decoders are where a crafted file does
its harm. clamd's protocol is small (INSTREAM: the bytes in length-prefixed chunks, one reply
line), so it is spoken here directly rather than through a client library.

A scan that cannot be done (clamd down, a timeout, an error reply) raises
`VirusScannerUnavailable`: with a scanner configured, nothing is let through unscanned.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from lookalike.core.config import Settings
from lookalike.core.errors import Misconfigured, VirusScannerUnavailable

DEFAULT_PORT = 3310
CONNECT_TIMEOUT_S = 5.0
# The whole exchange. An image at the default byte limit scans in well under a second with the
# full signature set; clamd's own MaxScanTime (2 minutes) is for archives, which images are not.
SCAN_TIMEOUT_S = 30.0
CHUNK_BYTES = 64 * 1024
# clamd's replies are one short line; more than this is not clamd.
_MAX_REPLY_BYTES = 4096

Address = str | tuple[str, int]


class ClamdScanner:
    """One clamd, at `unix:///path/to/clamd.ctl` or `tcp://host:3310`.

    Each call opens its own connection, so one scanner serves all the ingest threads at once.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        scan_timeout_s: float = SCAN_TIMEOUT_S,
    ) -> None:
        self.url = url
        self._address = _parse_url(url)
        self.connect_timeout_s = connect_timeout_s
        self.scan_timeout_s = scan_timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> ClamdScanner | None:
        """The scanner `LOOKALIKE_CLAMD_URL` names; None when it is unset (no scan)."""
        return cls(settings.clamd_url) if settings.clamd_url else None

    def ping(self) -> None:
        """Return if clamd answers PING with PONG; raise `VirusScannerUnavailable` otherwise."""
        reply = self._exchange(b"zPING\0", iter(()))
        if reply != "PONG":
            raise self._unavailable(f"it answered PING with {reply!r}")

    def scan(self, data: bytes) -> str | None:
        """The name of the signature clamd found in `data`, or None when it found none."""
        reply = self._exchange(b"zINSTREAM\0", _instream_chunks(data))
        if reply == "stream: OK":
            return None
        if reply.startswith("stream: ") and reply.endswith(" FOUND"):
            return reply.removeprefix("stream: ").removesuffix(" FOUND")
        if "size limit exceeded" in reply:
            raise self._unavailable(
                f"it refused {len(data)} bytes ({reply}); raise StreamMaxLength in clamd.conf "
                "above LOOKALIKE_MAX_IMAGE_BYTES"
            )
        raise self._unavailable(f"the scan failed: {reply}")

    def _exchange(self, command: bytes, chunks: Iterator[bytes]) -> str:
        """Send `command` and then `chunks`; return clamd's reply without its NUL."""
        deadline = time.monotonic() + self.scan_timeout_s
        try:
            sock = self._connect()
        except OSError as exc:
            raise self._unavailable(_describe(exc)) from exc
        with sock:
            try:
                sock.settimeout(_remaining(deadline))
                sock.sendall(command)
                for chunk in chunks:
                    sock.settimeout(_remaining(deadline))
                    sock.sendall(chunk)
            except OSError as exc:
                # clamd closes the stream early when it refuses it (over StreamMaxLength): its
                # reply says why, and is worth more than the broken pipe.
                reply = _read_reply(sock, deadline, strict=False)
                if reply:
                    return reply
                raise self._unavailable(_describe(exc)) from exc
            try:
                reply = _read_reply(sock, deadline, strict=True)
            except OSError as exc:
                raise self._unavailable(_describe(exc)) from exc
        if not reply:
            raise self._unavailable("it closed the connection without a reply")
        return reply

    def _connect(self) -> socket.socket:
        if isinstance(self._address, tuple):
            return socket.create_connection(self._address, timeout=self.connect_timeout_s)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.connect_timeout_s)
            sock.connect(self._address)
        except BaseException:
            sock.close()
            raise
        return sock

    def _unavailable(self, problem: str) -> VirusScannerUnavailable:
        return VirusScannerUnavailable(
            f"the virus scanner (clamd at {self.url}) cannot scan uploads: {problem}; uploads "
            "are refused until it is back"
        )


def quarantine(
    directory: Path,
    data: bytes,
    sha256: str,
    *,
    filename: str | None,
    signature: str,
    source: str,
) -> Path:
    """Keep an infected file's bytes as `directory/<sha256>` with a `<sha256>.json` sidecar.

    Both are readable by the service's user only (0600, in a 0700 directory). Returns the path of
    the bytes. The same file refused again overwrites its sidecar: it says when it was last seen.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    sidecar = {
        "sha256": sha256,
        "filename": filename,
        "signature": signature,
        "source": source,
        "bytes": len(data),
        "quarantined_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = directory / sha256
    _write_private(path, data)
    _write_private(
        directory / f"{sha256}.json", json.dumps(sidecar, indent=2).encode("utf-8") + b"\n"
    )
    return path


def quarantine_dir(settings: Settings) -> Path:
    return settings.data_dir / "quarantine"


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` as 0600, replacing it at once (a reader never sees half a file)."""
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        # An earlier partial file may have been made with other permissions.
        os.fchmod(out.fileno(), 0o600)
        out.write(data)
    os.replace(partial, path)


def _instream_chunks(data: bytes) -> Iterator[bytes]:
    """INSTREAM's body: 4-byte big-endian length, then that many bytes; a zero length ends it."""
    view = memoryview(data)
    for start in range(0, len(view), CHUNK_BYTES):
        chunk = view[start : start + CHUNK_BYTES]
        yield struct.pack(">I", len(chunk)) + chunk
    yield struct.pack(">I", 0)


def _read_reply(sock: socket.socket, deadline: float, *, strict: bool) -> str:
    """clamd's reply up to its NUL (commands prefixed `z` get NUL-terminated replies).

    Not `strict`: whatever could be read, or "" (used after a failed send, for the reason why).
    """
    reply = bytearray()
    try:
        while len(reply) < _MAX_REPLY_BYTES and b"\0" not in reply:
            sock.settimeout(_remaining(deadline))
            part = sock.recv(_MAX_REPLY_BYTES)
            if not part:
                break
            reply += part
    except OSError:
        if strict:
            raise
    return reply.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    return remaining


def _describe(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "it did not answer in time"
    return exc.strerror or str(exc) or type(exc).__name__


def _parse_url(url: str) -> Address:
    """A socket path (`unix:///path`) or a host and port (`tcp://host[:port]`)."""
    parts = urlsplit(url)
    if parts.scheme == "unix" and parts.path and not parts.netloc:
        return parts.path
    if parts.scheme == "tcp" and parts.hostname and parts.path in ("", "/"):
        try:
            port = DEFAULT_PORT if parts.port is None else parts.port
        except ValueError:  # not a number, or out of range
            port = 0
        if port:
            return parts.hostname, port
    raise Misconfigured(
        f"LOOKALIKE_CLAMD_URL={url!r} is not a clamd address: use unix:///path/to/clamd.ctl "
        "or tcp://host:3310"
    )
