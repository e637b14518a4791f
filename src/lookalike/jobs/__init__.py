"""Durable background jobs in the catalog, run by worker threads."""
