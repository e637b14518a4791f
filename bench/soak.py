"""Soak: one real `lookalike serve` under minutes of mixed traffic; memory must stay flat and no
request may answer 5xx.

    python bench/soak.py                      # 10 minutes, 4 client threads
    python bench/soak.py --minutes 0.5        # a quick try
    python bench/soak.py --minutes 30 --clients 6 --max-growth 1.2

Why it exists: the tests and the other benches drive one path at a time, for seconds. A cache
that never evicts, a session or a thread left behind per request or per job, and races between
ingest, deletes, searches and duplicate sweeps only show when all of them run together for a
while. So this starts a real server in a subprocess (fresh temporary data directory, auth off,
the offline EfficientNet-Lite0 model, rate limits off so that the server is measured, not the
limiter) and drives it from a few client threads, each picking requests from a fixed mix:
search by uploaded image, by stored image id and by text (when the model has a text encoder),
ingest through POST /api/images/batch and multipart record creation (distinct JPEGs made from
the sample photos by random crops, resizes, edits and noise), listing records, deleting
records and single images. A sweeper thread runs a duplicate sweep now and then, alternately
inline and as a background job it polls. The number of images is held under --max-images
(deletes take the place of ingests above it), so memory has no reason to grow with the data.

Every minute it prints one line: the server's RSS and peak RSS (VmRSS, VmHWM of its process),
requests by kind with p50/p95 latency, and the counts of 4xx, 5xx and transport errors. The
summary compares RSS at minute 1 and at the end. Exit status 1 when any request answered 5xx,
failed in transport (timeout, reset), a background sweep failed, an image failed to embed, or
RSS at the end exceeds --max-growth times RSS at the end of minute 2 (minute 1 is warm-up:
model load, first allocations of every path). 5xx responses are listed with their request and
the server's log lines for them; 4xx are counted by request (a search by the id of an image
another client just deleted is a legitimate 404); the error lines of the server's log (an
after-ingest step that failed in the background) are listed at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from lookalike.demo.samples import sample_photos, transform

COLLECTION = "soak"
TEXTS = (
    "a cat sleeping on a sofa",
    "an astronaut in a white suit",
    "a cup of coffee on a table",
    "a rocket on the launch pad",
    "a motorcycle parked indoors",
    "coins on a dark background",
)
# Request kinds in print order, and the share of client picks each gets.
MIX: dict[str, int] = {
    "search-file": 3,
    "search-id": 4,
    "search-text": 2,
    "batch": 1,
    "record": 1,
    "list": 2,
    "del-record": 1,
    "del-image": 1,
}
KINDS = (*MIX, "sweep", "sweep-bg", "job")
# One extra edit on top of the crop, resize and noise every image gets (None: no edit).
EDITS: tuple[tuple[str, dict[str, Any]] | None, ...] = (
    None,
    ("flip", {}),
    ("rotate", {"degrees": 3}),
    ("brightness", {"factor": 0.8}),
    ("brightness", {"factor": 1.2}),
    ("grayscale", {}),
    ("text_overlay", {"text": "soak"}),
)


# --- the server ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_model(models_dir: Path, model: str, scratch: Path) -> None:
    """Prepare the offline model in the cache when it is not there (works without a network)."""
    if (models_dir / model / "manifest.json").is_file():
        return
    print(f"preparing {model} in {models_dir}", flush=True)
    env = {
        **os.environ,
        "LOOKALIKE_DATA_DIR": str(scratch),
        "LOOKALIKE_MODEL_CACHE_DIR": str(models_dir),
    }
    subprocess.run(
        [sys.executable, "-m", "lookalike.cli", "model", "pull", model], env=env, check=True
    )


def start_server(
    data_dir: Path, models_dir: Path, model: str, port: int, log: io.BufferedWriter
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LOOKALIKE_DATA_DIR": str(data_dir),
        "LOOKALIKE_MODEL_CACHE_DIR": str(models_dir),
        "LOOKALIKE_MODEL": model,
        "LOOKALIKE_MODEL_DOWNLOAD": "false",
        "LOOKALIKE_AUTH": "off",
        "LOOKALIKE_LOG_FORMAT": "json",
        # All the load comes from one address and one tenant: measure the server, not the limiter.
        "LOOKALIKE_RATE_LIMIT_IP_PER_S": "0",
        "LOOKALIKE_RATE_LIMIT_TENANT_PER_S": "0",
    }
    # `python -m` rather than the `lookalike` script: the child is the server process itself,
    # so /proc/PID/status is its memory and not a wrapper's.
    command = [sys.executable, "-m", "lookalike.cli", "serve", "--host", "127.0.0.1"]
    return subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def wait_ready(base: str, server: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base, timeout=2, trust_env=False) as client:
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise SystemExit(f"the server exited with status {server.returncode} at start")
            if time.monotonic() > deadline:
                raise SystemExit(f"the server was not ready after {seconds:.0f} s")
            time.sleep(0.2)


def memory_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MB."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


# --- images -------------------------------------------------------------------


class ImageMaker:
    """Distinct JPEGs from the sample photos: a random crop, size, edit and noise each, so no
    two share bytes (the server would answer `duplicate`) yet they stay photo-like."""

    def __init__(self) -> None:
        self._originals = [
            (name, Image.open(io.BytesIO(data)).convert("RGB"))
            for name, data in sample_photos().items()
        ]
        self._count = 0
        self._lock = threading.Lock()

    def make(self, rng: random.Random, noise: np.random.Generator) -> tuple[str, bytes]:
        name, original = rng.choice(self._originals)
        w, h = original.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        image = transform(original, "crop", box=(x, y, x + cw, y + ch))
        width = rng.randint(256, 800)
        image = transform(image, "resize", size=(width, max(64, round(width * ch / cw))))
        edit = rng.choice(EDITS)
        if edit is not None:
            image = transform(image, edit[0], **edit[1])
        pixels = np.asarray(image, dtype=np.float32)
        pixels += noise.normal(0, rng.uniform(1.5, 5.0), pixels.shape).astype(np.float32)
        noisy = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        noisy.save(buf, "JPEG", quality=rng.randint(72, 92))
        with self._lock:
            self._count += 1
            n = self._count
        return f"{name}-{n}.jpg", buf.getvalue()


# --- what the clients know about the collection ---------------------------------


class Pool:
    """Records and images the clients created and have not deleted; each id is handed out for
    deletion once, so two clients never delete the same thing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, list[str]] = {}
        self._embedded: set[str] = set()
        self.failed: dict[str, str] = {}  # image id -> its error, for images that failed to embed

    def add(self, record_id: str, image_ids: list[str]) -> None:
        with self._lock:
            self._records.setdefault(record_id, []).extend(image_ids)

    def seen(self, images: list[dict[str, Any]]) -> None:
        """Image statuses from a response: embedded ones become targets of search by id."""
        with self._lock:
            for im in images:
                # Only images still in the pool: a list answered before a delete would
                # otherwise bring a deleted image back as a search target.
                if im["status"] == "embedded" and im["id"] in self._records.get(
                    im["record_id"], ()
                ):
                    self._embedded.add(im["id"])
                elif im["status"] == "failed":
                    self.failed[im["id"]] = str(im.get("error"))

    def image_count(self) -> int:
        with self._lock:
            return sum(len(ids) for ids in self._records.values())

    def embedded_image(self, rng: random.Random) -> str | None:
        with self._lock:
            return rng.choice(sorted(self._embedded)) if self._embedded else None

    def take_record(self, rng: random.Random) -> tuple[str, list[str]] | None:
        with self._lock:
            if not self._records:
                return None
            record_id = rng.choice(list(self._records))
            image_ids = self._records.pop(record_id)
            self._embedded.difference_update(image_ids)
            return record_id, image_ids

    def take_image(self, rng: random.Random) -> tuple[str, str] | None:
        """An image of a record that keeps at least one other."""
        with self._lock:
            several = [rid for rid, ids in self._records.items() if len(ids) >= 2]
            if not several:
                return None
            record_id = rng.choice(several)
            image_id = self._records[record_id].pop(rng.randrange(len(self._records[record_id])))
            self._embedded.discard(image_id)
            return record_id, image_id


# --- figures --------------------------------------------------------------------


@dataclass
class Window:
    """One minute of traffic."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    client_errors: int = 0
    server_errors: int = 0
    transport_errors: int = 0


@dataclass
class Problem:
    """A request that answered 5xx or failed in transport, as the report shows it."""

    kind: str
    request: str  # method, path and body shape
    outcome: str  # status and body, or the transport error
    request_id: str


class Tally:
    """Counts and latencies from every client thread: this minute's, and the run's problems."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.window = Window()
        self.requests = 0
        self.client_errors: Counter[tuple[str, str, int, str]] = Counter()
        self.server_errors: list[Problem] = []
        self.transport_errors: list[Problem] = []
        self.failed_jobs: list[str] = []
        self.ingest_results: Counter[str] = Counter()

    def response(
        self, kind: str, seconds: float, request: str, r: httpx.Response, request_id: str
    ) -> None:
        with self._lock:
            self.requests += 1
            self.window.latencies[kind].append(seconds)
            if 400 <= r.status_code < 500:
                self.window.client_errors += 1
                code = _error_code(r)
                self.client_errors[(kind, request.split(" [")[0], r.status_code, code)] += 1
            elif r.status_code >= 500:
                self.window.server_errors += 1
                outcome = f"HTTP {r.status_code} {r.text[:300]}"
                if "retry-after" in r.headers:
                    outcome += f" (Retry-After: {r.headers['retry-after']})"
                self.server_errors.append(Problem(kind, request, outcome, request_id))

    def transport(self, kind: str, request: str, exc: Exception, request_id: str) -> None:
        with self._lock:
            self.requests += 1
            self.window.transport_errors += 1
            problem = Problem(kind, request, f"{type(exc).__name__}: {exc}", request_id)
            self.transport_errors.append(problem)

    def ingested(self, status: str) -> None:
        with self._lock:
            self.ingest_results[status] += 1

    def take_window(self) -> Window:
        with self._lock:
            window, self.window = self.window, Window()
            return window


def _error_code(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.array(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def window_line(label: str, rss: float, peak: float, w: Window) -> str:
    parts = [
        f"{label:>5} {rss:7.0f} {peak:7.0f} {w.client_errors:4d} {w.server_errors:4d} "
        f"{w.transport_errors:4d} "
    ]
    for kind in KINDS:
        lat = w.latencies.get(kind)
        if lat:
            p50, p95 = _percentiles(lat)
            parts.append(f" {kind} {len(lat)} {p50:.0f}/{p95:.0f}")
    return "".join(parts)


# --- traffic ----------------------------------------------------------------------


class Soak:
    """The client side: requests of every kind, each timed and counted in the tally."""

    def __init__(self, args: argparse.Namespace, base: str) -> None:
        self.args = args
        self.base = base
        self.supports_text = False  # known once the collection exists
        self.tally = Tally()
        self.pool = Pool()
        self.images = ImageMaker()
        self.deadline = math.inf
        self.stop = threading.Event()
        self._ids = 0
        self._ids_lock = threading.Lock()

    def client(self) -> httpx.Client:
        # trust_env=False: no proxy from the environment; every request goes to 127.0.0.1.
        return httpx.Client(base_url=self.base, timeout=self.args.timeout, trust_env=False)

    def send(
        self, client: httpx.Client, kind: str, method: str, path: str, shape: str,
        **kwargs: Any,
    ) -> httpx.Response | None:  # fmt: skip
        """One timed request; None when it failed in transport (counted)."""
        with self._ids_lock:
            self._ids += 1
            request_id = f"soak-{self._ids}"
        request = f"{method} {path} [{shape}]"
        started = time.perf_counter()
        try:
            r = client.request(method, path, headers={"x-request-id": request_id}, **kwargs)
        except httpx.HTTPError as exc:
            self.tally.transport(kind, request, exc, request_id)
            return None
        self.tally.response(kind, time.perf_counter() - started, request, r, request_id)
        if r.status_code == 503 and "retry-after" in r.headers:
            # Back-pressure: honour it (bounded by the deadline) instead of hammering.
            self.stop.wait(min(float(r.headers["retry-after"]), 5.0))
        return r

    def _files(
        self, rng: random.Random, noise: np.random.Generator, n: int
    ) -> tuple[list[tuple[str, tuple[str, bytes, str]]], str]:
        made = [self.images.make(rng, noise) for _ in range(n)]
        files = [("images", (name, data, "image/jpeg")) for name, data in made]
        kb = sum(len(data) for _, data in made) // 1024
        return files, f"{n} JPEGs, {kb} KB"

    def _added(self, results: list[dict[str, Any]]) -> None:
        by_record: dict[str, list[str]] = defaultdict(list)
        for res in results:
            self.tally.ingested(res["status"])
            if res["status"] == "added" and res["record_id"] and res["image_id"]:
                by_record[res["record_id"]].append(res["image_id"])
        for record_id, image_ids in by_record.items():
            self.pool.add(record_id, image_ids)

    # Each request kind: what it sends, and what it learns from the answer.

    def search_file(self, c: httpx.Client, rng: random.Random, noise: np.random.Generator) -> None:
        name, data = self.images.make(rng, noise)
        data_fields = {"collection": COLLECTION, "limit": str(rng.choice((5, 10, 50)))}
        self.send(
            c, "search-file", "POST", "/api/search/similar",
            f"multipart collection, limit, file ({len(data) // 1024} KB JPEG)",
            data=data_fields, files={"file": (name, data, "image/jpeg")},
        )  # fmt: skip

    def search_id(self, c: httpx.Client, rng: random.Random, noise: np.random.Generator) -> None:
        image_id = self.pool.embedded_image(rng)
        if image_id is None:
            self.search_file(c, rng, noise)
            return
        body = {"collection": COLLECTION, "image_id": image_id, "limit": rng.choice((5, 10, 50))}
        self.send(
            c, "search-id", "POST", "/api/search/similar", "JSON collection, image_id, limit",
            json=body,
        )  # fmt: skip

    def search_text(self, c: httpx.Client, rng: random.Random, noise: np.random.Generator) -> None:
        if not self.supports_text:
            self.search_id(c, rng, noise)
            return
        body = {"collection": COLLECTION, "text_query": rng.choice(TEXTS), "limit": 10}
        self.send(
            c, "search-text", "POST", "/api/search/similar", "JSON collection, text_query, limit",
            json=body,
        )  # fmt: skip

    def batch(self, c: httpx.Client, rng: random.Random, noise: np.random.Generator) -> None:
        if self.pool.image_count() >= self.args.max_images:
            self.delete_record(c, rng, noise)
            return
        files, shape = self._files(rng, noise, rng.randint(2, 6))
        data = {"collection": COLLECTION, "tags": rng.choice(("soak", "soak,batch", ""))}
        if rng.random() < 0.5:
            data["record_name"] = f"batch {rng.randrange(10**6)}"  # one record for every file
        r = self.send(
            c, "batch", "POST", "/api/images/batch",
            f"multipart {', '.join(data)}, images[{shape}]", data=data, files=files,
        )  # fmt: skip
        if r is not None and r.status_code == 202:
            self._added(r.json())

    def record(self, c: httpx.Client, rng: random.Random, noise: np.random.Generator) -> None:
        if self.pool.image_count() >= self.args.max_images:
            self.delete_record(c, rng, noise)
            return
        files, shape = self._files(rng, noise, rng.randint(2, 4))
        wait = rng.random() < 0.5
        data = {
            "name": f"record {rng.randrange(10**6)}",
            "description": "made by bench/soak.py",
            "tags": rng.choice(("soak", "soak,record", "red,shoe")),
            "owner": rng.choice(("alice", "bob")),
        }
        path = f"/api/collections/{COLLECTION}/records" + ("?wait=true" if wait else "")
        r = self.send(
            c, "record", "POST", path, f"multipart {', '.join(data)}, images[{shape}]",
            data=data, files=files,
        )  # fmt: skip
        if r is not None and r.status_code == 201:
            body = r.json()
            self._added(body["results"])
            self.pool.seen(body["record"]["images"])

    def list_records(self, c: httpx.Client, rng: random.Random, noise: np.random.Generator) -> None:
        params: dict[str, str | int] = {"limit": rng.choice((20, 50, 100))}
        total = max(1, self.pool.image_count())
        params["offset"] = rng.randrange(total) if rng.random() < 0.5 else 0
        if rng.random() < 0.2:
            params["q"] = rng.choice(("record", "batch", "chelsea"))
        r = self.send(
            c, "list", "GET", f"/api/collections/{COLLECTION}/records",
            f"query {', '.join(params)}", params=params,
        )  # fmt: skip
        if r is not None and r.status_code == 200:
            self.pool.seen([im for item in r.json()["items"] for im in item["images"]])

    def delete_record(
        self, c: httpx.Client, rng: random.Random, noise: np.random.Generator
    ) -> None:
        taken = self.pool.take_record(rng)
        if taken is None:
            self.list_records(c, rng, noise)
            return
        record_id, image_ids = taken
        self.send(
            c, "del-record", "DELETE", f"/api/records/{record_id}",
            f"no body; record of {len(image_ids)} images",
        )  # fmt: skip

    def delete_image(self, c: httpx.Client, rng: random.Random, noise: np.random.Generator) -> None:
        taken = self.pool.take_image(rng)
        if taken is None:
            self.delete_record(c, rng, noise)
            return
        record_id, image_id = taken
        self.send(c, "del-image", "DELETE", f"/api/records/{record_id}/images/{image_id}", "none")

    def run_client(self, seed: int) -> None:
        rng = random.Random(seed)
        noise = np.random.default_rng(seed)
        ops: dict[str, Callable[[httpx.Client, random.Random, np.random.Generator], None]] = {
            "search-file": self.search_file,
            "search-id": self.search_id,
            "search-text": self.search_text,
            "batch": self.batch,
            "record": self.record,
            "list": self.list_records,
            "del-record": self.delete_record,
            "del-image": self.delete_image,
        }
        kinds, weights = list(MIX), list(MIX.values())
        with self.client() as c:
            while time.monotonic() < self.deadline and not self.stop.is_set():
                ops[rng.choices(kinds, weights)[0]](c, rng, noise)
                if self.args.pause:
                    self.stop.wait(self.args.pause)

    def run_sweeper(self) -> None:
        """A duplicate sweep every --dedup-every seconds: inline and as a job, in turn."""
        background = False
        with self.client() as c:
            while not self.stop.wait(self.args.dedup_every):
                if time.monotonic() >= self.deadline:
                    return
                body: dict[str, Any] = {"collection": COLLECTION}
                if not background:
                    self.send(
                        c, "sweep", "POST", "/api/search/cluster", "JSON collection", json=body
                    )
                else:
                    body["background"] = True
                    r = self.send(
                        c, "sweep-bg", "POST", "/api/search/cluster",
                        "JSON collection, background", json=body,
                    )  # fmt: skip
                    if r is not None and r.status_code == 202:
                        self.follow_job(c, r.json()["job_id"])
                background = not background

    def follow_job(self, c: httpx.Client, job_id: str) -> None:
        give_up = time.monotonic() + self.args.timeout
        while time.monotonic() < give_up:
            r = self.send(c, "job", "GET", f"/api/jobs/{job_id}", "none")
            if r is None or r.status_code != 200:
                return
            job = r.json()
            if job["status"] == "failed":
                error = " | ".join(str(job["error"]).splitlines()[:2])[:400]
                self.tally.failed_jobs.append(f"sweep job {job_id}: {error}")
                return
            if job["status"] == "done":
                return
            if self.stop.wait(0.5):
                return
        self.tally.failed_jobs.append(f"sweep job {job_id}: not done after {self.args.timeout} s")

    def setup(self, n: int) -> None:
        """The collection, and a few embedded records before the clock starts, so that search
        by id has targets."""
        rng, noise = random.Random(0), np.random.default_rng(0)
        with self.client() as c:
            r = c.post("/api/collections", json={"name": COLLECTION})
            r.raise_for_status()
            self.supports_text = bool(r.json()["supports_text"])
            for i in range(0, n, 4):
                files, _ = self._files(rng, noise, min(4, n - i))
                r = c.post(
                    f"/api/collections/{COLLECTION}/records?wait=true",
                    data={"name": f"seed {i}"}, files=files,
                )  # fmt: skip
                r.raise_for_status()
                self._added(r.json()["results"])
                self.pool.seen(r.json()["record"]["images"])


# --- the run ------------------------------------------------------------------------


def server_log_lines(log_path: Path, request_ids: set[str]) -> list[str]:
    """The server's warning and error lines for these requests (JSON log)."""
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("request_id") in request_ids and entry.get("level") in ("warning", "error"):
            text = f"{entry['request_id']}: {entry['level']} {entry.get('message', '')}"
            if entry.get("exc_info"):
                tail = [t[:300] for t in entry["exc_info"].splitlines()[-6:]]
                text += "\n      " + "\n      ".join(tail)
            out.append(text)
    return out


def server_errors_logged(log_path: Path) -> Counter[str]:
    """Error lines the server logged, request or not (an after-ingest step or a job that failed
    shows only here), grouped by message and the exception that ended the stack trace."""
    out: Counter[str] = Counter()
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if "Traceback" in line or "Error" in line:
                out[line[:300]] += 1
            continue
        if entry.get("level") not in ("error", "critical"):
            continue
        text = f"{entry.get('logger', '')}: {entry.get('message', '')}"
        trace = str(entry.get("exc_info") or "").splitlines()
        # The exception's own line: the last one that is not SQL, parameters or a hint.
        raised = [t for t in trace if t and not t.startswith((" ", "[", "(", "Traceback"))]
        if raised:
            text += f" <- {raised[-1]}"
        sql = [t for t in trace if t.startswith("[SQL: ")]
        if sql:
            text += f" {sql[-1]}"
        out[text[:400]] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="how long to drive traffic (fractions work)"
    )
    parser.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    parser.add_argument(
        "--max-growth", type=float, default=1.3,
        help="fail when RSS at the end exceeds this times RSS at the end of minute 2 (1.3)",
    )  # fmt: skip
    parser.add_argument(
        "--max-images", type=int, default=400,
        help="keep at most about this many images: deletes replace ingests above it (400)",
    )  # fmt: skip
    parser.add_argument(
        "--dedup-every", type=float, default=30.0, help="seconds between duplicate sweeps (30)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="per request, seconds (60)")
    parser.add_argument(
        "--pause", type=float, default=0.0, help="seconds each client waits between requests"
    )
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument(
        "--models-dir", type=Path, default=Path(__file__).resolve().parent.parent / ".cache/models",
        help="model cache (LOOKALIKE_MODEL_CACHE_DIR); default: .cache/models of this checkout",
    )  # fmt: skip
    parser.add_argument(
        "--ready-timeout", type=float, default=120.0, help="seconds to wait for /readyz (120)"
    )
    parser.add_argument("--seed-images", type=int, default=12, help="images ingested first (12)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the data directory and the server log"
    )
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error("--minutes must be positive")

    models_dir = args.models_dir.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="lookalike-soak-"))
    data_dir, log_path = tmp / "data", tmp / "server.log"
    ensure_model(models_dir, args.model, tmp / "pull")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        server = start_server(data_dir, models_dir, args.model, port, log)
        try:
            started = time.monotonic()
            wait_ready(base, server, args.ready_timeout)
            print(f"server pid {server.pid} on {base} ready in {time.monotonic() - started:.1f} s")
            status = soak(args, base, server, log_path)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    if args.keep:
        print(f"data directory and server log kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(status)


def soak(
    args: argparse.Namespace, base: str, server: subprocess.Popen[bytes], log_path: Path
) -> int:
    run = Soak(args, base)
    run.setup(args.seed_images)
    text_note = "" if run.supports_text else " (model has no text encoder: no text search)"
    print(
        f"{args.clients} clients, {args.minutes:g} min, at most ~{args.max_images} images, "
        f"sweep every {args.dedup_every:g} s{text_note}"
    )
    print(
        f"{'min':>5} {'RSS MB':>7} {'peak':>7} {'4xx':>4} {'5xx':>4} {'err':>4}  kind n p50/p95 ms"
    )
    total_s = args.minutes * 60
    start = time.monotonic()
    run.deadline = start + total_s
    threads = [
        threading.Thread(target=run.run_client, args=(i + 1,), daemon=True)
        for i in range(args.clients)
    ]
    threads.append(threading.Thread(target=run.run_sweeper, daemon=True))
    for t in threads:
        t.start()

    rss_by_minute: list[float] = []
    peak = 0.0
    worst: tuple[float, str, str] = (0.0, "-", "-")
    windows = math.ceil(args.minutes - 1e-9)
    for minute in range(1, windows + 1):
        end = start + min(minute * 60, total_s)
        while time.monotonic() < end and server.poll() is None:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        if server.poll() is not None:
            run.stop.set()
            print(f"the server exited with status {server.returncode}; the end of its log:")
            for line in log_path.read_text(errors="replace").splitlines()[-20:]:
                print(f"  {line[:300]}")
            return 1
        if minute == windows:
            # The last window also takes the requests in flight at the deadline.
            run.stop.set()
            join_by = time.monotonic() + args.timeout + 10
            for t in threads:
                t.join(timeout=max(0.0, join_by - time.monotonic()))
        window = run.tally.take_window()
        rss, peak = memory_mb(server.pid)
        rss_by_minute.append(rss)
        label = str(minute) if minute * 60 <= total_s else f"{args.minutes:g}"
        print(window_line(label, rss, peak, window), flush=True)
        for kind, lat in window.latencies.items():
            p95 = _percentiles(lat)[1]
            if p95 > worst[0]:
                worst = (p95, kind, label)

    return report(run, rss_by_minute, peak, worst, log_path)


def report(
    run: Soak, rss: list[float], peak: float, worst: tuple[float, str, str], log_path: Path
) -> int:
    tally, args = run.tally, run.args
    first, last = rss[0], rss[-1]
    baseline = rss[1] if len(rss) >= 2 else rss[0]
    growth = last / baseline
    print(
        f"\nsummary: {tally.requests} requests in {args.minutes:g} min; "
        f"4xx {sum(tally.client_errors.values())}, 5xx {len(tally.server_errors)}, "
        f"transport errors {len(tally.transport_errors)}, failed jobs {len(tally.failed_jobs)}, "
        f"images failed to embed {len(run.pool.failed)}"
    )
    settled = f"; last / minute 2 {growth:.2f}" if len(rss) >= 2 else ""
    print(
        f"RSS: minute 1 {first:.0f} MB, last {last:.0f} MB, last / minute 1 {last / first:.2f}"
        f"{settled} (limit {args.max_growth:g}); peak {peak:.0f} MB"
    )
    if len(rss) < 3:
        print("  (under 3 minutes: the growth check has no settled minute to compare with)")
    print(f"worst p95: {worst[0]:.0f} ms ({worst[1]}, minute {worst[2]})")
    print(f"ingest results: {dict(tally.ingest_results)}; images in the pool at the end: "
          f"{run.pool.image_count()}")  # fmt: skip
    if tally.client_errors:
        print("4xx:")
        for (kind, request, status_code, code), n in tally.client_errors.most_common():
            print(f"  {n:5d} x {status_code} {code:<22} {kind}: {request}")
    for title, problems in (
        ("5xx", tally.server_errors),
        ("transport errors", tally.transport_errors),
    ):
        if problems:
            print(f"{title} (first 10 of {len(problems)}):")
            for p in problems[:10]:
                print(f"  {p.request_id} {p.kind}: {p.request} -> {p.outcome}")
            for line in server_log_lines(log_path, {p.request_id for p in problems[:10]}):
                print(f"    server: {line}")
    for job in tally.failed_jobs[:10]:
        print(f"failed job: {job}")
    for image_id, error in list(run.pool.failed.items())[:10]:
        print(f"image {image_id} failed to embed: {error}")
    logged = server_errors_logged(log_path)
    if logged:
        print(f"server log: {logged.total()} error lines (reported, not counted as a failure):")
        for line, n in logged.most_common(10):
            print(f"  {n:5d} x {line}")

    failed = []
    if tally.server_errors:
        failed.append("5xx answers")
    if tally.transport_errors:
        failed.append("transport errors")
    if tally.failed_jobs:
        failed.append("failed jobs")
    if run.pool.failed:
        failed.append("images failed to embed")
    if growth > args.max_growth:
        failed.append(f"RSS grew {growth:.2f}x")
    print("FAIL: " + ", ".join(failed) if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    main()
