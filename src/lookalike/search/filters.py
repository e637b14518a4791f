"""The search filters users give, and their translation into the engine-neutral vector filter."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lookalike.vectors.base import Condition, DatetimeRange, Filter, MatchAny, MatchValue, Range


class SearchFilters(BaseModel):
    """Payload filters; every given field must hold (AND)."""

    model_config = ConfigDict(extra="forbid")

    tags_any: list[str] = Field(default_factory=list, description="At least one of these tags.")
    tags_all: list[str] = Field(default_factory=list, description="Every one of these tags.")
    tags_none: list[str] = Field(default_factory=list, description="None of these tags.")
    owner: str | None = Field(default=None, description="Records of this owner only.")
    record_ids: list[str] = Field(default_factory=list, description="Images of these records.")
    created_after: datetime | None = None
    created_before: datetime | None = None
    min_quality: float | None = Field(default=None, ge=0.0, le=1.0)
    max_nsfw: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _dates_in_order(self) -> SearchFilters:
        if self.created_after and self.created_before and self.created_after > self.created_before:
            raise ValueError("created_after is later than created_before")
        for name in ("created_after", "created_before"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a timezone, e.g. 2026-01-31T00:00:00Z")
        return self

    def to_vector_filter(self) -> Filter | None:
        must: list[Condition] = []
        if self.tags_any:
            must.append(MatchAny("tags", tuple(self.tags_any)))
        must.extend(MatchValue("tags", tag) for tag in self.tags_all)
        if self.owner is not None:
            must.append(MatchValue("owner", self.owner))
        if self.record_ids:
            must.append(MatchAny("record_id", tuple(self.record_ids)))
        if self.created_after or self.created_before:
            must.append(DatetimeRange("created_at", gte=self.created_after, lt=self.created_before))
        if self.min_quality is not None:
            must.append(Range("quality", gte=self.min_quality))
        if self.max_nsfw is not None:
            must.append(Range("nsfw", lte=self.max_nsfw))
        must_not = (MatchAny("tags", tuple(self.tags_none)),) if self.tags_none else ()
        if not must and not must_not:
            return None
        return Filter(must=tuple(must), must_not=must_not)
