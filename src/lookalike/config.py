"""One settings object for the whole service, from `LOOKALIKE_*` environment variables or `.env`."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "lookalike"


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

    # Image limits
    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=64_000_000, ge=1, description="Decompression-bomb guard.")
    thumbnail_size: int = Field(default=256, ge=32, le=1024)

    # Ingest
    queue_size: int = Field(default=256, ge=1, description="Bounded ingest queue (images).")
    ingest_workers: int = Field(
        default=4, ge=1, le=32, description="Prepare threads (decode, hash, thumbnail, writes)."
    )

    # Vector engine
    vector_backend: Literal["qdrant-edge"] = "qdrant-edge"
    hnsw_m: int = Field(default=16, ge=4, le=128)
    hnsw_ef_construct: int = Field(default=100, ge=8, le=1024)
    hnsw_ef: int = Field(default=64, ge=1, le=4096, description="Search-time ef.")
    # int8 with rescoring: same recall@10 at 100k, ~7x faster HNSW build (bench/search.py).
    quantization: Literal["none", "int8"] = "int8"
    indexing_threshold: int = Field(
        default=20_000, ge=0, description="Points before an HNSW index is built (exact scan below)."
    )

    # Server
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    auth: Literal["on", "off"] = "on"
    public_url: str | None = Field(default=None, description="Base URL used in preview links.")
    secret_key: str | None = Field(
        default=None, description="Signs tokens and URLs; generated into data_dir when unset."
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
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def vectors_dir(self) -> Path:
        return self.data_dir / "vectors"
