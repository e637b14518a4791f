"""Similarity search over a collection."""

from lookalike.search.filters import SearchFilters
from lookalike.search.service import SearchHit, search_similar

__all__ = ["SearchFilters", "SearchHit", "search_similar"]
