"""The HTTP API: thin routes over the service functions."""

# The operational endpoints outside /api: probes and scrapes. They are never rate limited (they
# come from infrastructure, often all from one address), their access lines are debug, and the
# web app never answers for them (a switched-off /metrics stays a 404).
OPERATIONAL_PATHS = frozenset({"/healthz", "/readyz", "/health", "/metrics"})
