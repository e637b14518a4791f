"""Would an int8 NudeNet detector be worth it? Speed and agreement with the float model.

    python bench/nsfw_int8.py [--n 40] [--batch 8]

Quantizes the detector of the `nudenet` package with ONNX Runtime's dynamic int8 quantization
(weights int8, activations quantized on the fly) into a temporary file, then runs both models on
the sample photos plus `--n` generated JPEGs and prints ms per image (one ORT thread each) and how
closely the int8 NSFW scores follow the float ones (correlation, largest difference, and how often
the two sides of the 0.3 moderation bound agree). The product keeps the float model unless int8
is both faster and in close agreement.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from onnxruntime.quantization import QuantType, quantize_dynamic
from PIL import Image

from ingest import generate_images
from lookalike.demo.samples import sample_photos
from lookalike.quality.nsfw import _BOX_ROWS, _EXPLICIT_ROWS, detector_input, nudenet_model_path

BOUND = 0.3


def scores(
    session: ort.InferenceSession, inputs: NDArray[np.float32], batch: int
) -> tuple[NDArray[np.float32], float]:
    out = []
    started = time.perf_counter()
    for i in range(0, len(inputs), batch):
        raw = session.run(None, {session.get_inputs()[0].name: inputs[i : i + batch]})[0]
        out.append(np.clip(raw[:, _BOX_ROWS:][:, _EXPLICIT_ROWS].max(axis=(1, 2)), 0.0, 1.0))
    return np.concatenate(out), 1000 * (time.perf_counter() - started) / len(inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    source = nudenet_model_path()
    if source is None:
        raise SystemExit("the nudenet package is not installed")
    photos = [*sample_photos().values(), *generate_images(args.n, (640, 480))]
    inputs = np.concatenate(
        [detector_input(Image.open(io.BytesIO(data)).convert("RGB")) for data in photos]
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        int8_path = Path(tmp) / "nudenet-int8.onnx"
        quantize_dynamic(str(source), str(int8_path), weight_type=QuantType.QUInt8)
        float_scores, float_ms = scores(
            ort.InferenceSession(str(source), options), inputs, args.batch
        )
        int8_scores, int8_ms = scores(
            ort.InferenceSession(str(int8_path), options), inputs, args.batch
        )
    same_side = np.mean((float_scores > BOUND) == (int8_scores > BOUND))
    print(f"{len(photos)} images, batch {args.batch}, 1 ORT thread")
    print(f"float32 {float_ms:6.1f} ms/image")
    print(f"int8    {int8_ms:6.1f} ms/image  ({float_ms / int8_ms:.2f}x)")
    print(f"correlation {np.corrcoef(float_scores, int8_scores)[0, 1]:.3f}")
    print(f"largest difference {np.abs(float_scores - int8_scores).max():.3f}")
    print(f"same side of {BOUND}: {same_side:.1%}")


if __name__ == "__main__":
    main()
