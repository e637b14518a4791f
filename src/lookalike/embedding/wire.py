"""What travels between the API process and the embedding service on `POST /embed/preprocessed`.

The API keeps decoding and resizing images itself (it needs the pixels for hashes and thumbnails
anyway) and ships only model inputs. Request:

    POST /embed/preprocessed
    Content-Type: application/octet-stream
    X-Lookalike-Dtype: uint8 | float32
    X-Lookalike-Shape: N,S,S,3 (uint8) | N,3,S,S (float32)
    X-Lookalike-Model: <model name>            optional; default: the service's model
    X-Lookalike-Model-Version: <model id>      optional; 409 model_mismatch when it differs
    body: the array's bytes, C order

`uint8` is the resized RGB pixels (the model's resize and crop applied, not normalised), N
images of S x S x 3; the service normalises them with the model's mean/std exactly as in-process
preprocessing does, so the vectors are bit-identical, for a quarter of the bytes of float32.
`float32` (little-endian) is a normalised model input batch, for inputs that did not come from
8-bit pixels. S is the model's input size (`GET /embed/info`).

Response: `application/octet-stream`, N x dim little-endian float32 unit vectors, row-major, with
`X-Lookalike-Shape: N,dim`, `X-Lookalike-Dim`, `X-Lookalike-Model-Name` and
`X-Lookalike-Model-Version`. Errors are the usual JSON `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

from lookalike.core.errors import InvalidInput

HEADER_DTYPE = "X-Lookalike-Dtype"
HEADER_SHAPE = "X-Lookalike-Shape"
HEADER_MODEL = "X-Lookalike-Model"
HEADER_MODEL_NAME = "X-Lookalike-Model-Name"
HEADER_MODEL_VERSION = "X-Lookalike-Model-Version"
HEADER_DIM = "X-Lookalike-Dim"

OCTET_STREAM = "application/octet-stream"
VECTOR_DTYPE = "<f4"
WIRE_DTYPES = {"uint8": "u1", "float32": "<f4"}


def format_shape(shape: tuple[int, ...]) -> str:
    return ",".join(str(d) for d in shape)


def parse_shape(value: str | None, ndim: int) -> tuple[int, ...]:
    """`"4,224,224,3"` -> (4, 224, 224, 3); InvalidInput unless `ndim` non-negative integers."""
    if not value:
        raise InvalidInput(f"the {HEADER_SHAPE} header is missing")
    try:
        shape = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise InvalidInput(
            f"{HEADER_SHAPE} must be comma-separated integers, got {value!r}"
        ) from None
    if len(shape) != ndim or any(d < 0 for d in shape):
        raise InvalidInput(f"{HEADER_SHAPE} must name {ndim} sizes, got {value!r}")
    return shape
