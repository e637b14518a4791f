"""One settings object for the whole service, from `LOOKALIKE_*` environment variables or `.env`."""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "lookalike"
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# No "_": engines join namespace and collection with one, and "a_b"+"c" must differ from "a"+"b_c".
_NAMESPACE = re.compile(r"[a-z][a-z0-9]{0,31}")
# The web app's bundle: inside the package when a wheel ships one, else `make web`'s output in a
# source checkout.
_WEB_BUNDLES = (
    Path(__file__).resolve().parent / "web",
    Path(__file__).resolve().parents[2] / "web" / "dist",
)


def _default_web_dir() -> Path | None:
    return next((p for p in _WEB_BUNDLES if (p / "index.html").is_file()), None)


class Settings(BaseSettings):
    """Everything configurable. Field `x` is set by the env var `LOOKALIKE_X`."""

    model_config = SettingsConfigDict(
        env_prefix="LOOKALIKE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR, description="Where catalog, blobs and vectors live."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the catalog; default: SQLite file in data_dir."
    )
    model_cache_dir: Path | None = Field(
        default=None, description="Model directories; default: data_dir/models."
    )
    blobs: str | None = Field(
        default=None,
        description="Where originals and thumbnails live: a local directory, or "
        "`s3://BUCKET/PREFIX` (an existing bucket); default: data_dir/blobs.",
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="S3 endpoint URL for `s3://` blobs (MinIO, SeaweedFS, ...); default: AWS. "
        "Credentials and region come from the standard AWS variables.",
    )
    vectors: str = Field(
        default="edge",
        description="The vector engine: `edge` (embedded Qdrant Edge in data_dir), "
        "`milvus://HOST:PORT`, `qdrant://HOST:PORT` (or an `http(s)://` Qdrant URL) or "
        "`postgresql://USER@HOST:PORT/DB` (pgvector).",
    )
    vectors_namespace: str = Field(
        default="lookalike",
        description="Prefix of this deployment's collections (tables) on a shared vector server.",
    )
    qdrant_api_key: str | None = Field(
        default=None, description="API key of a Qdrant server (`LOOKALIKE_VECTORS=https://...`)."
    )
    cache_url: str | None = Field(
        default=None,
        description="`redis://HOST:PORT/DB` caches frequent searches; default: no cache.",
    )
    cache_ttl_s: int = Field(
        default=300, ge=1, le=86_400, description="How long a cached search result is kept."
    )
    cache_max_entry_bytes: int = Field(
        default=512 * 1024, ge=1024, description="Larger search results are not cached."
    )

    # Models
    model: str = Field(default="clip-vit-b-32-laion2b", description="Model new collections use.")
    offline_model: str = Field(
        default="efficientnet-lite0", description="Used when `model` cannot be had (no network)."
    )
    model_download: bool = Field(default=True, description="Fetch missing models on first use.")
    model_base_url: str = Field(
        default="https://huggingface.co",
        description="Model hub to download from (a mirror with the same URL layout works).",
    )
    embed_batch_size: int = Field(default=16, ge=1, le=256)
    embed_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime intra-op threads; 0 = all cores."
    )

    # Embedding service (`lookalike embed-server`); see lookalike.embed_server.app
    embed_url: str | None = Field(
        default=None,
        description="Base URL of an embedding service; when set, models run there instead of "
        "in this process (images are still decoded and resized here).",
    )
    embed_timeout_s: float = Field(
        default=30.0, gt=0, description="Read timeout of one request to the embedding service."
    )
    embed_connect_timeout_s: float = Field(default=3.0, gt=0)
    embed_retries: int = Field(
        default=3, ge=0, le=10, description="Retries on connection errors and 5xx answers."
    )
    embed_retry_backoff_s: float = Field(
        default=0.2, ge=0, description="First retry delay; doubles each retry, with jitter."
    )
    embed_max_in_flight: int = Field(
        default=4, ge=1, le=256, description="Requests to the embedding service at one time."
    )
    embed_max_batch: int = Field(
        default=64, ge=1, le=1024, description="Most images or texts the service takes per request."
    )
    embed_allowed_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="URL prefixes `/embed/image` may fetch from (comma-separated or a JSON "
        "list); empty: fetching by URL is off.",
    )
    embed_fetch_timeout_s: float = Field(default=10.0, gt=0)
    embed_api_key: str | None = Field(
        default=None,
        description="Shared key of the embedding service: `lookalike embed-server` requires it "
        "as `Authorization: Bearer KEY` (or `X-API-Key`), and a client with `embed_url` sends it.",
    )
    embed_open: bool = Field(
        default=False,
        description="Run the embedding service without a key; refused unless it listens on a "
        "loopback address only.",
    )

    # Remote embedding providers (lookalike.embedding.providers): hosted models, used by the
    # names `doubao` and `openai-embed` wherever a model name is accepted, and in fallback
    # chains such as `doubao>clip>offline` (lookalike.embedding.fallback; docs/models.md).
    doubao_url: str = Field(
        default="https://ark.cn-beijing.volces.com/api/v3",
        description="Base URL of Doubao Ark; images and texts go to `{url}/embeddings/multimodal`.",
    )
    doubao_api_key: SecretStr | None = Field(
        default=None, description="Ark API key, sent as `Authorization: Bearer KEY`."
    )
    doubao_model: str = Field(
        default="doubao-embedding-vision-250615",
        description="Ark model (or endpoint id) that model name `doubao` calls.",
    )
    doubao_dimensions: int | None = Field(
        default=None,
        ge=1,
        le=65536,
        description="Vector size asked of Doubao (`dimensions`; 2048 or 1024 for 250615); "
        "unset: the model's own (2048 for the known models, else asked once).",
    )
    openai_embed_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible API; model name `openai-embed` posts to "
        "`{url}/embeddings`.",
    )
    openai_embed_api_key: SecretStr | None = Field(
        default=None, description="Sent as `Authorization: Bearer KEY`."
    )
    openai_embed_model: str | None = Field(
        default=None, description="The model name the endpoint serves."
    )
    openai_embed_dimensions: int | None = Field(
        default=None,
        ge=1,
        le=65536,
        description="Sent as `dimensions`; unset: the endpoint's own size, asked once.",
    )
    openai_embed_images: bool = Field(
        default=False,
        description="The endpoint embeds images given as data URLs in `input`; off: `openai-"
        "embed` embeds texts only and refuses images with a clear error.",
    )
    provider_rate_limit_per_s: float = Field(
        default=10.0,
        ge=0,
        description="Requests per second to one provider URL from this process (a token bucket "
        "shared by every model there); 0: no limit.",
    )
    provider_rate_burst: int = Field(default=5, ge=1, description="Requests allowed at once.")
    provider_timeout_s: float = Field(default=30.0, gt=0, description="Read timeout of a request.")
    provider_connect_timeout_s: float = Field(default=5.0, gt=0)
    provider_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Retries on connection errors, timeouts, 5xx and 429 (a 401/403 is never "
        "retried: it is a setting to fix).",
    )
    provider_retry_backoff_s: float = Field(
        default=0.5, ge=0, description="First retry delay; doubles each retry, with jitter."
    )
    provider_max_retry_after_s: float = Field(
        default=60.0, ge=0, description="Longest 429 `Retry-After` waited for; longer fails."
    )
    provider_max_in_flight: int = Field(
        default=4, ge=1, le=64, description="Requests one provider model has open at a time."
    )
    provider_image_size: int = Field(
        default=512,
        ge=32,
        le=4096,
        description="Images are downscaled to fit this square (padded) and sent as JPEG.",
    )
    provider_jpeg_quality: int = Field(default=90, ge=30, le=100)
    provider_down_s: float = Field(
        default=5.0,
        gt=0,
        description="After a provider failed, ingest of a collection with a fallback chain "
        "skips it for this long (doubling while it keeps failing, up to 5 minutes).",
    )
    reembed_poll_s: float = Field(
        default=15.0,
        gt=0,
        description="How often images embedded by a fallback model are offered to their "
        "collection's first model again.",
    )
    reembed_batch: int = Field(default=32, ge=1, le=1024, description="Images per re-embed step.")
    reembed_backoff_max_s: float = Field(
        default=600.0, gt=0, description="Longest wait between re-embed tries of one image."
    )

    @field_validator(
        "embed_allowed_urls",
        "cors_origins",
        "dedup_keeper_policy",
        "dedup_preferred_formats",
        mode="before",
    )
    @classmethod
    def _split_lists(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part for part in re.split(r"[,\s]+", text) if part]
        return value

    # Image limits
    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=64_000_000, ge=1, description="Decompression-bomb guard.")
    max_aspect_ratio: float = Field(
        default=50.0,
        ge=1.0,
        description="Longer side over shorter side; images beyond it are refused (a 1x60000 "
        "strip is no photo, and resizing it to the model's size would take gigabytes).",
    )
    clamd_url: str | None = Field(
        default=None,
        description="ClamAV daemon to scan every upload with before it is stored: "
        "unix:///path/to/clamd.ctl or tcp://host:3310; unset: no virus scan.",
    )
    thumbnail_size: int = Field(default=256, ge=32, le=1024)

    # Ingest
    queue_size: int = Field(default=256, ge=1, description="Bounded ingest queue (images).")
    ingest_workers: int = Field(
        default=4, ge=1, le=32, description="Prepare threads (decode, hash, model input, writes)."
    )

    ingest_processes: int = Field(
        default=-1,
        ge=-1,
        le=64,
        description="Worker processes that decode and prepare images beside the prepare "
        "threads (the interpreter lock keeps threads on one core): -1 = the cores to spare on "
        "a machine with more than 4 (cores - 2), 0 = none. With processes and "
        "LOOKALIKE_EMBED_THREADS=0 the model gets the other cores.",
    )

    # Enrichment (lookalike.enrichment): the stages that run after an image is searchable.
    enrichment: bool = Field(
        default=True,
        description="Run the enrichment stages in this process (thumbnail, quality, NSFW, "
        "duplicate verdict, anomaly scores). Off: another process runs them, or nobody.",
    )
    enrichment_batch: int = Field(default=32, ge=1, le=1024, description="Images per claim.")
    enrichment_lease_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a claim is held; a stage claimed by a worker that died is "
        "claimable again once its lease has run out.",
    )
    enrichment_max_attempts: int = Field(
        default=3, ge=1, le=100, description="Tries of one stage on one image before it fails."
    )
    enrichment_defer_s: float = Field(
        default=10.0,
        ge=0,
        description="While ingest is busy, enrichment waits up to this long between batches.",
    )
    enrichment_poll_s: float = Field(
        default=2.0, gt=0, description="How often an idle runner looks for work from elsewhere."
    )

    # Moderation (lookalike.quality.nsfw)
    nsfw: bool = Field(
        default=True,
        description="Give every ingested image an NSFW score (payload field `nsfw`, filter "
        "`max_nsfw`), as an enrichment stage: from the CLIP embedding already computed "
        "(zero-shot prompts, no extra model) or, for an image-only model, with the NudeNet "
        "detector of the `nudenet` package (about 30 ms of one core per image).",
    )
    nsfw_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="ONNX Runtime threads of the NudeNet detector (image-only models); it runs "
        "in the enrichment stage, after the image is searchable.",
    )

    # Vector engine
    hnsw_m: int = Field(default=16, ge=4, le=128)
    hnsw_ef_construct: int = Field(default=100, ge=8, le=1024)
    hnsw_ef: int = Field(default=64, ge=1, le=4096, description="Search-time ef.")
    # int8 with rescoring: same recall@10 at 100k, ~7x faster HNSW build (bench/search.py).
    quantization: Literal["none", "int8"] = "int8"
    indexing_threshold: int = Field(
        default=20_000, ge=0, description="Points before an HNSW index is built (exact scan below)."
    )

    # Documents and image RAG (lookalike.ingest.pdf, lookalike.rag)
    pdf_dpi: int = Field(
        default=150, ge=36, le=600, description="Resolution PDF pages are rendered at."
    )
    pdf_max_pages: int = Field(default=500, ge=1, description="Longer PDFs are refused.")
    # No more than LOOKALIKE_MAX_REQUEST_BYTES, which bounds a PDF uploaded to the API.
    pdf_max_bytes: int = Field(default=100_000_000, ge=1, description="Larger PDFs are refused.")
    ocr: Literal["off", "pages", "all"] = Field(
        default="pages",
        description="OCR of new collections: `pages` reads document pages without a text "
        "layer, `all` every image too, `off` nothing (a collection may choose its own).",
    )
    ocr_threads: int = Field(default=1, ge=1, le=64, description="ONNX Runtime threads of OCR.")
    # Hybrid retrieval: reciprocal rank fusion of the keyword and vector rankings.
    hybrid_rrf_k: int = Field(default=60, ge=1, le=1000)
    hybrid_keyword_weight: float = Field(default=1.0, ge=0, le=100)
    hybrid_vector_weight: float = Field(default=1.0, ge=0, le=100)
    # Answers (lookalike.rag.ask): any OpenAI-compatible chat completions endpoint.
    llm_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible chat API, e.g. http://127.0.0.1:11434/v1 "
        "(Ollama), http://127.0.0.1:8080/v1 (llama.cpp server), "
        "https://ark.cn-beijing.volces.com/api/v3 (Doubao Ark). Unset: `ask` answers with the "
        "retrieved pages only.",
    )
    llm_model: str | None = Field(default=None, description="The model name the endpoint serves.")
    llm_api_key: str | None = Field(default=None, description="Sent as a bearer token.")
    llm_vision: bool = Field(
        default=False,
        description="The model reads images: retrieved pages are sent as images beside their "
        "text. Off: as their text (text layer or OCR) only.",
    )
    llm_temperature: float = Field(
        default=0.2, ge=0, le=2, description="Low: answers keep to the sources' wording."
    )
    llm_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    llm_retries: int = Field(default=2, ge=0, le=10)
    llm_max_answer_tokens: int = Field(default=512, ge=16, le=32_768)
    ask_context_tokens: int = Field(
        default=3_000,
        ge=100,
        le=1_000_000,
        description="Budget for the retrieved text in a prompt (estimated at 4 characters a "
        "token): the best pages first, the last one cut, the rest left out.",
    )

    # Dedup (thresholds are per model and per collection: see quality/dedup.py)
    dedup_neighbours: int = Field(
        default=10, ge=1, le=100, description="Nearest neighbours a sweep looks at per image."
    )
    dedup_keeper_policy: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["resolution", "quality", "oldest", "format"],
        description="How a duplicate cluster's keeper is chosen, first rule first: resolution "
        "(most pixels), quality (best quality score), oldest, newest, format (earliest in "
        "dedup_preferred_formats), bytes (largest file).",
    )
    dedup_preferred_formats: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "image/png",
            "image/webp",
            "image/avif",
            "image/heic",
            "image/jpeg",
        ]
    )

    @field_validator("blobs")
    @classmethod
    def _blobs_location(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("s3://"):
            bucket = value.removeprefix("s3://").split("/", 1)[0]
            if not _S3_BUCKET.fullmatch(bucket):
                raise ValueError(
                    f"{value!r}: expected s3://BUCKET/PREFIX with a valid bucket name "
                    "(3-63 lowercase letters, digits, dots and hyphens)"
                )
        return value or None

    @field_validator("vectors")
    @classmethod
    def _vectors_location(cls, value: str) -> str:
        value = value.strip() or "edge"
        schemes = ("milvus://", "qdrant://", "http://", "https://", "postgresql://", "postgres://")
        if value != "edge" and not value.startswith(schemes):
            raise ValueError(
                f"{value!r}: expected edge, milvus://HOST:PORT, qdrant://HOST:PORT, "
                "http(s)://HOST:PORT (Qdrant) or postgresql://USER@HOST:PORT/DB (pgvector)"
            )
        return value

    @field_validator("vectors_namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _NAMESPACE.fullmatch(value):
            raise ValueError(f"{value!r}: use 1-32 lowercase letters and digits, from a letter")
        return value

    @field_validator("cache_url")
    @classmethod
    def _cache_location(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value!r}: expected redis://HOST:PORT/DB")
        return value or None

    @field_validator("dedup_keeper_policy")
    @classmethod
    def _known_rules(cls, value: list[str]) -> list[str]:
        known = {"resolution", "quality", "oldest", "newest", "format", "bytes"}
        unknown = [rule for rule in value if rule not in known]
        if unknown:
            raise ValueError(f"unknown keeper rule(s) {unknown}; known: {sorted(known)}")
        return value

    # Anomaly scores (lookalike.anomalies.queue)
    anomaly_k: int = Field(
        default=10, ge=1, le=100, description="Neighbours the anomaly scores compare each image to."
    )
    anomaly_recompute_interval_s: float = Field(
        default=6 * 3600,
        ge=0,
        description="Recompute every collection's anomaly scores in full this often (ingest "
        "updates them in between, approximately); 0: never on a schedule.",
    )

    # Server
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    auth: Literal["on", "off"] = "on"
    public_url: str | None = Field(default=None, description="Base URL used in preview links.")
    secret_key: str | None = Field(
        default=None,
        min_length=32,
        description="Signs tokens and URLs (at least 32 characters, e.g. `openssl rand -hex 32`); "
        "generated into data_dir when unset.",
    )
    web_dir: Path | None = Field(
        default_factory=_default_web_dir,
        description="The built web app served at `/` (index.html and assets); default: the "
        "checkout's web/dist once `make web` has built it.",
    )

    # Auth
    jwt_public_key: str | None = Field(
        default=None,
        description="RS256 public key (PEM text or a file path). When set, bearer JWTs must be "
        "RS256 tokens signed with its private key; HS256 tokens are refused.",
    )
    jwt_private_key: str | None = Field(
        default=None,
        description="RS256 private key (PEM text or a file path), only for `lookalike token "
        "create`; an identity provider that holds the key can issue the tokens instead.",
    )
    jwt_issuer: str = Field(default="lookalike", description="`iss` claim bearer JWTs must carry.")
    search_token_ttl_s: int = Field(
        default=3600,
        ge=60,
        le=30 * 24 * 3600,
        description="Lifetime of the token `/api/v1/search-image` hands out for its feedback.",
    )
    default_collection: str | None = Field(
        default=None,
        description="Collection (id or name) `/api/v1/search-image` searches when the request "
        "names none; default: the tenant's first collection.",
    )

    # Observability (lookalike.core.logs, lookalike.api.observability)
    log_format: Literal["json", "text"] | None = Field(
        default=None,
        description="Log lines as JSON objects or plain text; default: json for `serve`, text "
        "for the other commands.",
    )
    metrics_enabled: bool = Field(
        default=True, description="Serve Prometheus metrics at GET /metrics (no auth)."
    )

    # HTTP limits (lookalike.api.limits); a rate of 0 switches that limit off
    rate_limit_ip_per_s: float = Field(
        default=100.0, ge=0, description="Requests per second one client IP may send."
    )
    rate_limit_ip_burst: int = Field(default=200, ge=1, description="Short bursts above the rate.")
    rate_limit_tenant_per_s: float = Field(
        default=200.0, ge=0, description="Authenticated requests per second of one tenant."
    )
    rate_limit_tenant_burst: int = Field(default=400, ge=1)
    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db; when set, rate limits are shared by all replicas "
        "through it (in this process's memory otherwise).",
    )
    redis_key_prefix: str = Field(default="lookalike:", description="Prefix of our Redis keys.")
    max_request_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=1,
        description="Largest request body; bigger ones get 413 before they are read.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins browsers may call the API from (comma-separated or a JSON list; "
        "`*` for any); empty: no CORS headers.",
    )
    gzip_min_bytes: int = Field(
        default=1024, ge=0, description="Compress responses at least this large; 0: never."
    )

    @cached_property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @cached_property
    def catalog_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'catalog.sqlite3'}"

    @property
    def blobs_s3(self) -> tuple[str, str] | None:
        """(bucket, key prefix) when `blobs` is an `s3://` URL; None for a local directory."""
        if self.blobs is None or not self.blobs.startswith("s3://"):
            return None
        bucket, _, prefix = self.blobs.removeprefix("s3://").partition("/")
        return bucket, prefix.strip("/")

    @property
    def blobs_dir(self) -> Path:
        """The local blob directory (unused when `blobs` is an `s3://` URL)."""
        if self.blobs is not None and self.blobs_s3 is None:
            return Path(self.blobs).expanduser()
        return self.data_dir / "blobs"

    @property
    def vectors_dir(self) -> Path:
        return self.data_dir / "vectors"
