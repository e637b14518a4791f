"""Domain errors. Each carries a stable `code` and the HTTP status it maps to, once, here.

Raise the most specific class; the API turns any `LookalikeError` into
`{"error": {"code": ..., "message": ...}}` with `status`, and the CLI prints the message.
"""

from __future__ import annotations


class LookalikeError(Exception):
    """Base of every error the service reports to a user."""

    code: str = "error"
    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- bad input (4xx) -------------------------------------------------------


class InvalidInput(LookalikeError):
    code = "invalid_input"
    status = 422


class InvalidImage(InvalidInput):
    """The bytes are not an image we can read (wrong type, truncated, empty)."""

    code = "invalid_image"
    status = 415


class UnsupportedImageType(InvalidImage):
    code = "unsupported_image_type"
    status = 415


class ImageTooLarge(InvalidInput):
    """Over the byte limit, or over the pixel limit (decompression bomb)."""

    code = "image_too_large"
    status = 413


class DimensionMismatch(InvalidInput):
    code = "dimension_mismatch"
    status = 422


class NotFound(LookalikeError):
    code = "not_found"
    status = 404


class CollectionNotFound(NotFound):
    code = "collection_not_found"


class RecordNotFound(NotFound):
    code = "record_not_found"


class ImageNotFound(NotFound):
    code = "image_not_found"


class Conflict(LookalikeError):
    code = "conflict"
    status = 409


class Unsupported(LookalikeError):
    """The request is well formed but this collection or model cannot do it."""

    code = "unsupported"
    status = 422


class TextSearchUnavailable(Unsupported):
    code = "text_search_unavailable"


class Unauthorized(LookalikeError):
    code = "unauthorized"
    status = 401


class Forbidden(LookalikeError):
    code = "forbidden"
    status = 403


class Busy(LookalikeError):
    """A bounded queue is full: try again later."""

    code = "busy"
    status = 503

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# --- the service itself (5xx) ---------------------------------------------


class ModelUnavailable(LookalikeError):
    code = "model_unavailable"
    status = 503


class DataDirLocked(LookalikeError):
    """Another process (usually `lookalike serve`) holds the data directory."""

    code = "data_dir_locked"
    status = 409


class StorageError(LookalikeError):
    code = "storage_error"
    status = 500
