"""Enrichment: the work done on an image after it is searchable (thumbnail, quality, NSFW score,
duplicate verdict, anomaly scores), as durable per-image stages run in batches in the
background. `queue` keeps their state in the catalog, `runner` claims and runs them."""
