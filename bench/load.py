"""HTTP load: search by image id, by text and by uploaded image against a running server.

    python bench/load.py [--n 10000] [--model vitb32-random] [--concurrency 8] [--seconds 15]

Prepares a data directory with a collection of N images (a few real sample photos ingested
through the pipeline, the rest catalog rows with vectors written directly, so that setting up
10k images does not take the model's time), starts `lookalike serve` on 127.0.0.1 in a separate
process, and drives it with a fixed number of concurrent connections: with `wrk` (Debian
package `wrk`) when it is installed, else with Python clients in this process (which then
compete with the server for the same two cores).
Prints QPS and p50/p95/p99 latency per kind of search.

Targets on a 2-core machine: by id >= 200 QPS with p95 < 50 ms; by id and by text >= 50 QPS
with p95 < 200 ms. Search by uploaded image is bounded by the model.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from sqlalchemy import insert

from lookalike.catalog import Image as ImageRow
from lookalike.catalog import Job, Record, new_id, utcnow
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.demo.samples import sample_photos
from lookalike.ingest.payload import image_payload
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.records.service import create_collection
from lookalike.vectors.base import Point

TEXTS = [
    "a cat sleeping on a sofa",
    "a red sports car",
    "an astronaut in a white suit",
    "a cup of coffee on a table",
    "a rocket launching into the sky",
    "a motorcycle parked on the street",
    "coins on a dark background",
    "a portrait of a woman in uniform",
]


def prepare(data_dir: Path, n: int, model: str, models_dir: Path) -> tuple[list[str], bytes]:
    """A collection `load` with n images; returns some image ids and a query JPEG."""
    settings = Settings(
        data_dir=data_dir, model=model, model_cache_dir=models_dir, model_download=False
    )
    photos = sample_photos()
    with Lookalike(settings) as rt:
        coll = create_collection(rt, "default", "load")
        real = rt.ingest.add_many(
            coll,
            [(NewRecord(name=k, owner="bench"), IngestFile(v, k)) for k, v in photos.items()],
            wait=True,
        )
        ids = [r.image_id for r in real if r.image_id]
        seed_vectors = np.stack(
            [
                p.vectors[coll.vector_name]
                for p in rt.vectors.retrieve(coll.id, ids, with_vectors=True)
            ]
        )
        rng = np.random.default_rng(0)
        batch = 1000
        for start in range(len(ids), n, batch):
            count = min(batch, n - start)
            now = utcnow()
            records = [
                {"id": new_id(), "collection_id": coll.id, "name": f"synthetic {start + i}",
                 "description": "", "tags": [["a"], ["b"], ["a", "b"]][i % 3], "extra": {},
                 "owner": f"owner{i % 10}", "created_at": now, "updated_at": now}
                for i in range(count)
            ]  # fmt: skip
            images = [
                {"id": new_id(), "record_id": rec["id"], "collection_id": coll.id,
                 "sha256": os.urandom(32).hex(), "phash": os.urandom(8).hex(), "width": 640,
                 "height": 480, "mime": "image/jpeg", "bytes": 50_000, "source": "batch",
                 "status": "embedded", "model_id": coll.model_id, "anomaly_scores": {},
                 "created_at": now, "embedded_at": now}
                for rec in records
            ]  # fmt: skip
            with rt.catalog.engine.begin() as conn:
                conn.execute(insert(Record), records)
                conn.execute(insert(ImageRow), images)
                conn.execute(
                    insert(Job),
                    [{"id": new_id(), "kind": "embed", "collection_id": coll.id,
                      "image_id": im["id"], "status": "done", "attempts": 1, "params": {}}
                     for im in images],
                )  # fmt: skip
            # Perturbed copies of real embeddings: clustered like real data, not uniform noise.
            base = seed_vectors[rng.integers(0, len(seed_vectors), count)]
            vecs = base + rng.normal(0, 0.35 / np.sqrt(coll.dim), base.shape).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            rt.vectors.upsert(
                coll.id,
                [
                    Point(
                        id=im["id"],
                        vectors={coll.vector_name: v.astype(np.float32)},
                        payload=image_payload(coll, Record(**rec), ImageRow(**im)),
                    )
                    for rec, im, v in zip(records, images, vecs, strict=True)
                ],
            )
            ids.extend(im["id"] for im in images[:50])
        rt.vectors.build_index(coll.id, wait=True)
    query = Image.open(io.BytesIO(photos["chelsea"])).convert("RGB").resize((400, 300))
    buf = io.BytesIO()
    query.save(buf, "JPEG", quality=85)
    return ids, buf.getvalue()


async def drive(
    client: httpx.AsyncClient, kind: str, ids: list[str], query_jpeg: bytes,
    concurrency: int, seconds: float,
) -> list[float]:  # fmt: skip
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    rng = random.Random(kind)

    async def one_client() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            if kind == "by id":
                body = {"collection": "load", "image_id": rng.choice(ids), "limit": 10}
                r = await client.post("/api/search/similar", json=body)
            elif kind == "by text":
                text = f"{rng.choice(TEXTS)} {rng.randint(0, 10_000)}"
                r = await client.post(
                    "/api/search/similar", json={"collection": "load", "text_query": text}
                )
            else:
                r = await client.post(
                    "/api/search/similar",
                    data={"collection": "load", "limit": "10"},
                    files={"file": ("q.jpg", query_jpeg, "image/jpeg")},
                )
            if r.status_code != 200:
                errors += 1
                if errors == 1:
                    print(f"  {kind}: HTTP {r.status_code} {r.text[:200]}", file=sys.stderr)
                continue
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    if errors:
        print(f"  {kind}: {errors} failed requests", file=sys.stderr)
    return latencies


_WRK_SCRIPT = """
local bodies = {}
for line in io.lines(os.getenv("LOAD_BODIES")) do bodies[#bodies + 1] = line end
local content_type = os.getenv("LOAD_CONTENT_TYPE")
local counter = 0
request = function()
  counter = counter + 1
  local body = bodies[(counter % #bodies) + 1]
  body = body:gsub("\\r\\n", "\\r\\n")
  return wrk.format("POST", "/api/search/similar", {["Content-Type"] = content_type}, body)
end
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %d %d %.6f %.3f %.3f %.3f\\n", summary.requests, errors,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000))
end
"""


def wrk_run(
    base: str, kind: str, ids: list[str], query_jpeg: bytes, concurrency: int, seconds: float,
    tmp: Path,
) -> tuple[float, float, float, float, int] | None:  # fmt: skip
    """QPS, p50, p95, p99 (ms) and errors from wrk, a load generator far lighter than Python."""
    rng = random.Random(kind)
    if kind == "by id":
        lines = [
            json.dumps({"collection": "load", "image_id": rng.choice(ids), "limit": 10})
            for _ in range(5000)
        ]
        content_type = "application/json"
    elif kind == "by text":
        lines = [
            json.dumps({"collection": "load", "text_query": f"{rng.choice(TEXTS)} {i}"})
            for i in range(5000)
        ]
        content_type = "application/json"
    else:
        boundary = "lookalikeloadboundary"
        parts = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="collection"\r\n\r\nload\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="q.jpg"'
                "\r\nContent-Type: image/jpeg\r\n\r\n"
            ).encode()
            + query_jpeg
            + f"\r\n--{boundary}--\r\n".encode()
        )
        body_file = tmp / "upload.bin"
        body_file.write_bytes(parts)
        content_type = f"multipart/form-data; boundary={boundary}"
        script = tmp / "upload.lua"
        script.write_text(
            _WRK_SCRIPT.replace(
                'for line in io.lines(os.getenv("LOAD_BODIES")) do bodies[#bodies + 1] = line end',
                'local f = io.open(os.getenv("LOAD_BODIES"), "rb"); bodies[1] = f:read("*all")',
            ).replace('  body = body:gsub("\\r\\n", "\\r\\n")\n', "")
        )
        return _wrk(base, script, body_file, content_type, concurrency, seconds)
    bodies = tmp / f"{kind.replace(' ', '_')}.txt"
    bodies.write_text("\n".join(lines) + "\n")
    script = tmp / "json.lua"
    script.write_text(_WRK_SCRIPT.replace('  body = body:gsub("\\r\\n", "\\r\\n")\n', ""))
    return _wrk(base, script, bodies, content_type, concurrency, seconds)


def _wrk(
    base: str, script: Path, bodies: Path, content_type: str, concurrency: int, seconds: float
) -> tuple[float, float, float, float, int] | None:
    env = {**os.environ, "LOAD_BODIES": str(bodies), "LOAD_CONTENT_TYPE": content_type}
    out = subprocess.run(
        ["wrk", "-t2", f"-c{concurrency}", f"-d{int(seconds)}s", "-s", str(script), base],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        if line.startswith("RESULT "):
            requests, errors, duration, p50, p95, p99 = line.split()[1:]
            ok = int(requests) - int(errors)
            return ok / float(duration), float(p50), float(p95), float(p99), int(errors)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--models-dir", type=Path, default=Path(".cache/models"))
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--kinds", default="by id,by text,by upload")
    parser.add_argument(
        "--python-client", action="store_true", help="use httpx even when wrk is installed"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        started = time.perf_counter()
        ids, query = prepare(data_dir, args.n, args.model, args.models_dir.resolve())
        print(
            f"prepared {args.n} images with {args.model} in {time.perf_counter() - started:.0f} s"
        )
        port = free_port()
        env = {
            **os.environ,
            "LOOKALIKE_DATA_DIR": str(data_dir),
            "LOOKALIKE_MODEL_CACHE_DIR": str(args.models_dir.resolve()),
            "LOOKALIKE_MODEL": args.model,
            "LOOKALIKE_MODEL_DOWNLOAD": "false",
            "LOOKALIKE_AUTH": "off",
            # The load comes from one address and one tenant: measure the server, not the limiter.
            "LOOKALIKE_RATE_LIMIT_IP_PER_S": "0",
            "LOOKALIKE_RATE_LIMIT_TENANT_PER_S": "0",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "lookalike.cli", "serve", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not become ready")
                time.sleep(0.2)

            async def run_all() -> None:
                limits = httpx.Limits(max_connections=args.concurrency)
                async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
                    print(f"concurrency {args.concurrency}, {args.seconds:.0f} s per kind")
                    print(f"{'kind':10} {'QPS':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
                    for kind in [k.strip() for k in args.kinds.split(",")]:
                        await drive(client, kind, ids, query, args.concurrency, 2.0)  # warm up
                        lat = await drive(client, kind, ids, query, args.concurrency, args.seconds)
                        if not lat:
                            print(f"{kind:10} no successful requests")
                            continue
                        ms = np.array(lat) * 1000
                        print(
                            f"{kind:10} {len(lat) / args.seconds:7.1f} {np.percentile(ms, 50):8.1f}"
                            f" {np.percentile(ms, 95):8.1f} {np.percentile(ms, 99):8.1f}"
                        )

            if shutil.which("wrk") and not args.python_client:
                print(f"wrk, {args.concurrency} connections, {args.seconds:.0f} s per kind")
                print(f"{'kind':10} {'QPS':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
                for kind in [k.strip() for k in args.kinds.split(",")]:
                    wrk_run(base, kind, ids, query, args.concurrency, 2, data_dir)  # warm up
                    res = wrk_run(base, kind, ids, query, args.concurrency, args.seconds, data_dir)
                    if res is None:
                        print(f"{kind:10} wrk printed no result")
                        continue
                    qps, p50, p95, p99, errors = res
                    note = f"  ({errors} errors)" if errors else ""
                    print(f"{kind:10} {qps:7.1f} {p50:8.1f} {p95:8.1f} {p99:8.1f}{note}")
            else:
                asyncio.run(run_all())
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
