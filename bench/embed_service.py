"""Throughput of the embedding service against the in-process model.

    python bench/embed_service.py [--model efficientnet-lite0] [--images 128] [--batch 16]

Starts `lookalike embed-server` in a child process on a free port, then embeds the same
preprocessed sample photos three ways: in this process, through `RemoteEmbedder` (uint8 pixels
over `/embed/preprocessed`), and as JPEG uploads to `/embed/image/batch` (the service decodes).
Each way runs a warm-up pass, then `--rounds` timed passes; the best is reported.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from lookalike.core.config import Settings
from lookalike.demo.samples import sample_photos
from lookalike.embedding import load_embedder
from lookalike.imaging import decode_image


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _best(rounds: int, run: Callable[[], object]) -> float:
    run()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args()

    models_dir = args.models_dir or Path(
        os.environ.get("LOOKALIKE_MODEL_CACHE_DIR", Settings().models_dir)
    )
    env = {
        **os.environ,
        "LOOKALIKE_MODEL_CACHE_DIR": str(models_dir),
        "LOOKALIKE_MODEL": args.model,
        "LOOKALIKE_MODEL_DOWNLOAD": "false",
        "LOOKALIKE_EMBED_BATCH_SIZE": str(args.batch),
        # Loopback only, so the service may run without its shared key.
        "LOOKALIKE_EMBED_OPEN": "true",
    }
    env.pop("LOOKALIKE_EMBED_URL", None)
    local_settings = Settings(
        model_cache_dir=models_dir, model=args.model, embed_batch_size=args.batch, _env_file=None
    )
    local = load_embedder(local_settings)

    photos = list(sample_photos().values())
    datas = [photos[i % len(photos)] for i in range(args.images)]
    images = [
        decode_image(d, max_bytes=10**8, max_pixels=10**9, reduce_for=local.input_size).image
        for d in datas
    ]
    tensors = np.stack([local.preprocess(im) for im in images])
    jpegs = []
    for im in images:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        jpegs.append(buf.getvalue())

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "embed-server", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the embedding service did not become ready")
            time.sleep(0.1)
        remote = load_embedder(local_settings.model_copy(update={"embed_url": url}))
        assert remote.model_id == local.model_id

        def batches(fn: Callable[[np.ndarray], object]) -> Callable[[], None]:
            def run() -> None:
                for start in range(0, len(tensors), args.batch):
                    fn(tensors[start : start + args.batch])

            return run

        client = httpx.Client(base_url=url, timeout=120, trust_env=False)

        def upload() -> None:
            for start in range(0, len(jpegs), args.batch):
                files = [
                    ("files", (f"{i}.jpg", j, "image/jpeg"))
                    for i, j in enumerate(jpegs[start : start + args.batch])
                ]
                client.post("/embed/image/batch", files=files).raise_for_status()

        np.testing.assert_allclose(
            remote.embed_preprocessed(tensors[:4]), local.embed_preprocessed(tensors[:4]), atol=1e-5
        )
        n = len(tensors)
        results = {
            "in-process embed_preprocessed": _best(args.rounds, batches(local.embed_preprocessed)),
            "RemoteEmbedder (/embed/preprocessed, uint8)": _best(
                args.rounds, batches(remote.embed_preprocessed)
            ),
            "JPEG upload (/embed/image/batch)": _best(args.rounds, upload),
        }
        print(f"model {local.model_id}, {n} images, batch {args.batch}, {os.cpu_count()} cores")
        for name, seconds in results.items():
            print(f"  {name:45s} {n / seconds:7.1f} images/s  ({seconds * 1000 / n:.1f} ms/image)")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
