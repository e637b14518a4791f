"""Duplicates: tiers and thresholds, the verdict at ingest, sweeps and clustering, review
actions on clusters, pair decisions."""
