"""Lookalike: self-hosted image similarity search, visual quality control and image RAG."""

__version__ = "0.1.0"
