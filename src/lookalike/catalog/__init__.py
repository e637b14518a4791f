"""The catalog: collections, records, images and jobs in a SQL database (the source of truth)."""

from lookalike.catalog.db import Catalog
from lookalike.catalog.models import Collection, Image, Job, Record, new_id, utcnow

__all__ = ["Catalog", "Collection", "Image", "Job", "Record", "new_id", "utcnow"]
