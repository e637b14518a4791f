"""Models that turn images (and, for CLIP, texts) into vectors.

Most callers need two functions: `resolve_default_embedder(settings)` at start-up (the configured
model, or the offline model with a warning) and `load_embedder(settings, name)` for a collection
built with a specific model. `lookalike.embedding.testing` builds a tiny CLIP model for tests.
"""

from lookalike.embedding.base import Embedder, Vectors
from lookalike.embedding.clip import ClipEmbedder
from lookalike.embedding.export import export_open_clip
from lookalike.embedding.image_model import ImageEmbedder, text_search_hint, vector_name_for
from lookalike.embedding.model_dir import (
    Manifest,
    ModelDir,
    PreprocessConfig,
    TextConfig,
    read_manifest,
    write_manifest,
)
from lookalike.embedding.offline import OFFLINE_MODEL_NAME, ensure_offline_model
from lookalike.embedding.preprocess import ImagePreprocessor
from lookalike.embedding.registry import (
    KNOWN_MODELS,
    DownloadProgress,
    LoggedDownloadProgress,
    ModelInfo,
    ModelSpec,
    RemoteFile,
    clear_cache,
    ensure_model_dir,
    hub_clip_files,
    list_models,
    load_embedder,
    model_path,
    open_embedder,
    pull_model,
    resolve_default_embedder,
)
from lookalike.embedding.sessions import OrtSession, ort_session

__all__ = [
    "KNOWN_MODELS",
    "OFFLINE_MODEL_NAME",
    "ClipEmbedder",
    "DownloadProgress",
    "Embedder",
    "ImageEmbedder",
    "ImagePreprocessor",
    "LoggedDownloadProgress",
    "Manifest",
    "ModelDir",
    "ModelInfo",
    "ModelSpec",
    "OrtSession",
    "PreprocessConfig",
    "RemoteFile",
    "TextConfig",
    "Vectors",
    "clear_cache",
    "ensure_model_dir",
    "ensure_offline_model",
    "export_open_clip",
    "hub_clip_files",
    "list_models",
    "load_embedder",
    "model_path",
    "open_embedder",
    "ort_session",
    "pull_model",
    "read_manifest",
    "resolve_default_embedder",
    "text_search_hint",
    "vector_name_for",
    "write_manifest",
]
