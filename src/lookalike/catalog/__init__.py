"""The catalog, the source of truth: collections, records, images (and their text), jobs, feedback,
API keys."""

from lookalike.catalog.db import Catalog
from lookalike.catalog.models import (
    ApiKey,
    Collection,
    Feedback,
    Image,
    ImageStage,
    ImageText,
    Job,
    Record,
    new_id,
    utcnow,
)

__all__ = [
    "ApiKey",
    "Catalog",
    "Collection",
    "Feedback",
    "Image",
    "ImageStage",
    "ImageText",
    "Job",
    "Record",
    "new_id",
    "utcnow",
]
