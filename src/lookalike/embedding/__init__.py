"""Models that turn images (and, for CLIP, texts) into vectors.

A process makes one `Models(settings)`, the owner of its loaded models: `models.default()` is the
configured model (or the offline model, with a warning), `models.for_collection(c)` the model a
collection was built with. `known` lists the models Lookalike can get, `model_cache` gets them
(`pull_model`), and `lookalike.embedding.testing` builds a tiny CLIP model for tests.
"""

from lookalike.embedding.base import Embedder, Vectors
from lookalike.embedding.clip import ClipEmbedder
from lookalike.embedding.export import export_open_clip
from lookalike.embedding.image_model import ImageEmbedder, text_search_hint, vector_name_for
from lookalike.embedding.known import (
    KNOWN_MODELS,
    ModelInfo,
    ModelSpec,
    RemoteFile,
    hub_clip_files,
    list_models,
    model_path,
)
from lookalike.embedding.model_cache import (
    DownloadProgress,
    LoggedDownloadProgress,
    ensure_model_dir,
    pull_model,
)
from lookalike.embedding.model_dir import (
    Manifest,
    ModelDir,
    PreprocessConfig,
    TextConfig,
    read_manifest,
    write_manifest,
)
from lookalike.embedding.models import Models, load_embedder, open_embedder
from lookalike.embedding.offline import OFFLINE_MODEL_NAME, ensure_offline_model
from lookalike.embedding.preprocess import ImagePreprocessor
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
    "Models",
    "OrtSession",
    "PreprocessConfig",
    "RemoteFile",
    "TextConfig",
    "Vectors",
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
    "text_search_hint",
    "vector_name_for",
    "write_manifest",
]
