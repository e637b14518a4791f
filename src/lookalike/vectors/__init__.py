"""Vector engines behind one interface, `VectorIndex` (see `base`); one module per engine.

`open_vector_index` picks the engine from `LOOKALIKE_VECTORS`, the one place that maps the
setting's names to modules:

    edge                          Qdrant Edge, embedded in this process (default)
    milvus://HOST:PORT            a Milvus server (`vectors.milvus`)
    qdrant://HOST:PORT            a Qdrant server or cluster (`vectors.qdrant_server`);
    http(s)://HOST:PORT           the same, with LOOKALIKE_QDRANT_API_KEY
    postgresql://USER@HOST/DB     PostgreSQL with pgvector (`vectors.pgvector`)

Server engines are optional extras; each is imported only when chosen.
"""

from __future__ import annotations

from lookalike.core.config import Settings
from lookalike.core.errors import Misconfigured
from lookalike.vectors.base import VectorIndex

__all__ = ["VectorIndex", "engine_name", "open_vector_index"]

_EXTRAS = {"milvus": "milvus", "qdrant": "qdrant", "pgvector": "pgvector"}


def engine_name(url: str) -> str:
    """`edge`, `milvus`, `qdrant` or `pgvector` for a `LOOKALIKE_VECTORS` value."""
    if url == "edge":
        return "edge"
    scheme = url.split("://", 1)[0]
    return {"milvus": "milvus", "postgresql": "pgvector", "postgres": "pgvector"}.get(
        scheme, "qdrant"
    )


def open_vector_index(settings: Settings) -> VectorIndex:
    """The engine `settings.vectors` names, connected (a server engine checks it can reach the
    server, raising `VectorStoreUnavailable` naming it if not)."""
    engine = engine_name(settings.vectors)
    try:
        if engine == "edge":
            from lookalike.vectors.qdrant_edge import QdrantEdgeIndex

            return QdrantEdgeIndex(settings.vectors_dir)
        if engine == "milvus":
            from lookalike.vectors.milvus import MilvusIndex

            return MilvusIndex(
                "http://" + settings.vectors.removeprefix("milvus://"),
                namespace=settings.vectors_namespace,
            )
        if engine == "pgvector":
            from lookalike.vectors.pgvector import PgvectorIndex

            return PgvectorIndex(settings.vectors, namespace=settings.vectors_namespace)
        from lookalike.vectors.qdrant_server import QdrantServerIndex

        url = settings.vectors
        if url.startswith("qdrant://"):
            url = "http://" + url.removeprefix("qdrant://")
        return QdrantServerIndex(
            url, api_key=settings.qdrant_api_key, namespace=settings.vectors_namespace
        )
    except ImportError as exc:
        raise Misconfigured(
            f"LOOKALIKE_VECTORS={settings.vectors} needs the {engine} client: "
            f"pip install 'lookalike[{_EXTRAS[engine]}]' ({exc})"
        ) from exc
