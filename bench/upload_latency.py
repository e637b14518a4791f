"""How soon one upload is searchable on an idle server: `POST .../records?wait=true` answers once
the image is embedded and in the vector index, so its latency is the time to searchable.

    python bench/upload_latency.py [--n 40] [--model vit-b-32-random] [--size 640x480]

Starts a real server (`lookalike serve`, fresh data directory, auth off), makes a collection, then
uploads `--n` distinct JPEGs one at a time, each only once the server is idle again (the previous
image's enrichment done), and checks that a search by each new image's id answers (it needs
the image's vector). Prints p50, p95
and the slowest. Target: p95 <= 300 ms with a ViT-B/32 model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from ingest import generate_images
from soak import ensure_model, free_port, start_server, wait_ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--models-dir", type=Path, default=Path(".cache/models"))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    images = generate_images(args.n + 1, (width, height), seed=23)

    with tempfile.TemporaryDirectory() as tmp:
        ensure_model(args.models_dir.resolve(), args.model, Path(tmp) / "scratch")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with (Path(tmp) / "server.log").open("wb") as log:
            server = start_server(
                Path(tmp) / "data", args.models_dir.resolve(), args.model, port, log
            )
            try:
                wait_ready(base, server, 120)
                with httpx.Client(base_url=base, timeout=60, trust_env=False) as client:
                    seconds = run(client, images)
            finally:
                server.terminate()
                server.wait(30)
    seconds.sort()
    p95 = seconds[max(0, round(0.95 * len(seconds)) - 1)]
    print(f"{len(seconds)} uploads of one {width}x{height} JPEG, model {args.model}, idle server")
    print(
        f"time to searchable: p50 {1000 * statistics.median(seconds):.0f} ms, "
        f"p95 {1000 * p95:.0f} ms, max {1000 * seconds[-1]:.0f} ms (target p95 <= 300 ms)"
    )


def run(client: httpx.Client, images: list[bytes]) -> list[float]:
    created = client.post("/api/collections", json={"name": "latency"})
    created.raise_for_status()
    collection = created.json()["id"]

    def upload(i: int, data: bytes) -> tuple[float, str]:
        started = time.perf_counter()
        r = client.post(
            f"/api/collections/{collection}/records?wait=true",
            data={"name": f"img{i}"},
            files=[("images", (f"img{i}.jpg", data, "image/jpeg"))],
        )
        elapsed = time.perf_counter() - started
        r.raise_for_status()
        return elapsed, r.json()["results"][0]["image_id"]

    def idle() -> None:
        while client.get(f"/api/collections/{collection}").json()["counts"]["images_enriching"]:
            time.sleep(0.05)

    upload(0, images[0])  # the first request loads the model: not part of the figure
    idle()
    seconds = []
    for i, data in enumerate(images[1:], 1):
        elapsed, image_id = upload(i, data)
        found = client.post(
            "/api/search/similar",
            json={"collection": collection, "image_id": image_id, "limit": 1},
        )
        found.raise_for_status()
        seconds.append(elapsed)
        idle()
    return seconds


if __name__ == "__main__":
    main()
