"""Peak memory of preparing any accepted image stays under the documented bound.

Each case runs in a fresh interpreter, which resets its peak resident set size after imports
(Linux: /proc/self/clear_refs) and reports how far the peak rose while it prepared the image as
ingest does: decode at the model's working size, the model input, the thumbnail, the pHash, the
quality score and the NSFW detector's input. The bound
(docs/architecture.md): 4 bytes per decoded pixel of the image, plus 64 MB.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from lookalike.core.errors import ExtremeAspectRatio, ImageTooLarge
from lookalike.imaging.decode import PixelBudget

from .builders import streamed_png

MB = 1 << 20
SLACK = 64 * MB

_PREPARE = """
import json, sys
from pathlib import Path
from lookalike.embedding.model_dir import PreprocessConfig
from lookalike.embedding.preprocess import ImagePreprocessor
from lookalike.core.errors import LookalikeError
from lookalike.imaging import decode_image, make_thumbnail, phash_hex
from lookalike.quality.nsfw import detector_input
from lookalike.quality.scores import quality_score

data = Path(sys.argv[1]).read_bytes()
preprocess = ImagePreprocessor(PreprocessConfig(size=224, mean=(0.5,) * 3, std=(0.25,) * 3))
def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
Path("/proc/self/clear_refs").write_text("5")  # the peak so far (imports) is forgotten
before = status("VmRSS")
try:
    decoded = decode_image(data, max_bytes=1 << 30, max_pixels=64_000_000, reduce_for=224)
    preprocess(decoded.image)
    make_thumbnail(decoded.image, size=256)
    phash_hex(decoded.image)
    quality_score(decoded.image, (decoded.width, decoded.height))
    detector_input(decoded.image)
    error = None
except LookalikeError as exc:
    error = type(exc).__name__
print(json.dumps({"rise": status("VmHWM") - before, "error": error}))
"""


def _prepare_in_fresh_process(data: bytes, tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "image.png"
    path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", _PREPARE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    bytes_per_pixel: int  # as Pillow holds the decoded image
    error: type[Exception] | None = None  # when the image must be refused


CASES = [
    Case("1x60000 grey strip", lambda: streamed_png(1, 60_000), 1, ExtremeAspectRatio),
    Case("60000x1 grey strip", lambda: streamed_png(60_000, 1), 1, ExtremeAspectRatio),
    Case("8000x8000 RGBA", lambda: streamed_png(8000, 8000, color_type=6), 4),
    Case("8000x8000 16-bit grey", lambda: streamed_png(8000, 8000, bit_depth=16), 2),
    Case(
        "8000x8000 palette, transparent",
        lambda: streamed_png(8000, 8000, color_type=3, palette=200),
        1,
    ),
    Case("56000x1140 grey, aspect 49", lambda: streamed_png(56_000, 1140), 1),
    Case("11000x5800 RGB", lambda: streamed_png(11_000, 5800, color_type=2), 3),
    Case(
        "9000x9000 RGBA, over the pixel limit",
        lambda: streamed_png(9000, 9000, color_type=6),
        4,
        ImageTooLarge,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_peak_memory_stays_under_the_bound(case: Case, tmp_path: Path) -> None:
    data = case.build()
    with Image.open(io.BytesIO(data)) as header:
        pixels = header.width * header.height
    result = _prepare_in_fresh_process(data, tmp_path)
    assert result["error"] == (case.error.__name__ if case.error else None), result
    bound = 4 * pixels + SLACK if case.error is None else SLACK
    rise = int(result["rise"])  # type: ignore[call-overload]
    assert rise <= bound, f"{case.name}: peak rose {rise / MB:.0f} MB, bound {bound / MB:.0f} MB"
    # Not a measurement of nothing: decoding a large image costs its pixels.
    if case.error is None and pixels > 10_000_000:
        assert rise >= case.bytes_per_pixel * pixels * 0.5, f"{rise / MB:.0f} MB only"


def test_the_decode_budget_makes_concurrent_decodes_wait() -> None:
    budget = PixelBudget(100)
    first_in, second_in, release = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with budget.hold(80):
            first_in.set()
            release.wait(10)

    def second() -> None:
        with budget.hold(50):
            second_in.set()

    a = threading.Thread(target=first)
    a.start()
    assert first_in.wait(10)
    b = threading.Thread(target=second)
    b.start()
    assert not second_in.wait(0.2)  # 80 + 50 > 100: it waits
    assert budget.in_use == 80
    release.set()
    assert second_in.wait(10)
    a.join()
    b.join()
    assert budget.in_use == 0
    with budget.hold(1000):  # larger than the whole budget: runs alone
        assert budget.in_use == 100
