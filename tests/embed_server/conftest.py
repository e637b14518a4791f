"""The embedding service's tests share the model tests' registry reset."""

from embedding.conftest import _fresh_registry

__all__ = ["_fresh_registry"]
