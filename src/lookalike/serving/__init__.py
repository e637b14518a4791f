"""What the two HTTP faces share: the API (`lookalike.api`) and the embedding service
(`lookalike.embed_server`).

One mistake gets one answer from both because both call the same functions: `errors` maps
domain errors and validation errors to the `{"error": {"code", "message"}}` shape, `bodies`
reads and parses request bodies (content types, JSON, depth and size limits, uploaded files).
Neither face imports the other; this package imports only `lookalike.core` (the import-linter
contracts in pyproject.toml).
"""
