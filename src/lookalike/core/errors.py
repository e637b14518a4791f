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


class ExtremeAspectRatio(InvalidImage):
    """One side of the image is many times the other (a strip, not a photo)."""

    code = "extreme_aspect_ratio"
    status = 422


class NoImageAdded(InvalidInput):
    """A record was to be made with images, and none of them could be added: no record is made."""

    code = "no_image_added"
    status = 422


class ImageTooLarge(InvalidInput):
    """Over the byte limit, or over the pixel limit (decompression bomb)."""

    code = "image_too_large"
    status = 413


class DimensionMismatch(InvalidInput):
    code = "dimension_mismatch"
    status = 422


class UnknownModel(InvalidInput):
    """A model name that is neither in the registry nor in the model cache."""

    code = "unknown_model"


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


class Infected(InvalidInput):
    """The virus scanner (clamd) found malware in the file; it was quarantined, not stored."""

    code = "infected"
    status = 422

    def __init__(self, message: str, signature: str) -> None:
        super().__init__(message)
        self.signature = signature


class RequestTooLarge(InvalidInput):
    """The request body is over `LOOKALIKE_MAX_REQUEST_BYTES`."""

    code = "request_too_large"
    status = 413


class RateLimited(LookalikeError):
    """Too many requests from one client IP or one tenant: slow down."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# --- the service itself (5xx) ---------------------------------------------


class ModelUnavailable(LookalikeError):
    code = "model_unavailable"
    status = 503


class EmbedServiceUnavailable(ModelUnavailable):
    """The embedding service (`LOOKALIKE_EMBED_URL`) cannot be reached or keeps failing."""

    code = "embed_service_unavailable"


class ModelMismatch(ModelUnavailable):
    """The embedding service runs other weights than the ones asked for; vectors would mix."""

    code = "model_mismatch"
    status = 409


class VirusScannerUnavailable(LookalikeError):
    """The virus scanner (`LOOKALIKE_CLAMD_URL`) cannot be reached or failed to scan: uploads
    are refused until it is back, never let through unscanned."""

    code = "virus_scanner_unavailable"
    status = 503


class UrlNotAllowed(Forbidden):
    """An image URL outside the embedding service's allow-list (`LOOKALIKE_EMBED_ALLOWED_URLS`)."""

    code = "url_not_allowed"


class UrlFetchFailed(LookalikeError):
    """Fetching an image URL failed (unreachable, timed out, or an error status)."""

    code = "url_fetch_failed"
    status = 502


class DataDirLocked(LookalikeError):
    """Another process (usually `lookalike serve`) holds the data directory."""

    code = "data_dir_locked"
    status = 409


class StorageError(LookalikeError):
    code = "storage_error"
    status = 500


class StoreUnavailable(StorageError):
    """A store on another server is down (an outage, not a fault of the request): what waits
    on it is retried later instead of being counted as failed."""

    code = "store_unavailable"
    status = 503


class BlobStoreUnavailable(StoreUnavailable):
    """The blob store (an S3 server) cannot be reached: try again when it is back."""

    code = "blob_store_unavailable"
    status = 503


class Misconfigured(LookalikeError):
    """A setting cannot be used as given (an unreadable key file, a malformed PEM)."""

    code = "misconfigured"
    status = 500


class VectorStoreUnavailable(StoreUnavailable):
    """The vector engine's server (Milvus, Qdrant, PostgreSQL with pgvector) cannot be reached:
    searches fail until it is back; writes wait in the job table and are retried."""

    code = "vector_store_unavailable"
    status = 503


# --- documents (appended with lookalike.ingest.pdf) -------------------------


class InvalidDocument(InvalidInput):
    """A PDF that cannot be ingested: protected by a password, damaged, without pages, or with
    more pages than `LOOKALIKE_PDF_MAX_PAGES`. Nothing of it is stored."""

    code = "invalid_document"
    status = 422


class DocumentTooLarge(InvalidDocument):
    """A PDF over `LOOKALIKE_PDF_MAX_BYTES`."""

    code = "document_too_large"
    status = 413


# --- answers (lookalike.rag) -------------------------------------------------


class ChatModelUnavailable(LookalikeError):
    """The chat model (`LOOKALIKE_LLM_URL`) cannot be reached, timed out or keeps failing: the
    retrieval still stands, the answer has to wait until it is back."""

    code = "llm_unavailable"
    status = 503


class ChatModelRefused(LookalikeError):
    """The chat endpoint refused the request for a reason another try cannot fix: a wrong key,
    an unknown model, a malformed answer."""

    code = "llm_error"
    status = 502


# --- remote embedding providers (lookalike.embedding.providers) ----------------


class EmbeddingProviderUnavailable(ModelUnavailable):
    """A hosted embedding model (Doubao, an OpenAI-compatible endpoint) cannot be reached,
    timed out, or kept answering 5xx or 429 through every retry."""

    code = "embedding_provider_unavailable"


class EmbeddingProviderError(ModelUnavailable):
    """A hosted embedding model answered something unusable: malformed JSON, a vector of the
    wrong size, a request it refused."""

    code = "embedding_provider_error"
    status = 502


class EmbeddingProviderMisconfigured(Misconfigured, ModelUnavailable):
    """A hosted embedding model refused this process's key (401/403): a setting to fix, never
    retried."""

    code = "embedding_provider_misconfigured"
    status = 500


class ImageEmbeddingUnsupported(Unsupported):
    """The configured embedding endpoint embeds texts only."""

    code = "image_embedding_unsupported"
