"""The search filters users give, and their translation into the engine-neutral vector filter."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lookalike.vectors.base import (
    Condition,
    DatetimeRange,
    Filter,
    IsEmpty,
    MatchAny,
    MatchValue,
    Range,
)

# Payload fields a filter may name, by kind. `collection_id` is not among them: a search is
# always confined to its collection.
KEYWORD_FIELDS = ("tags", "owner", "record_id", "source", "mime", "phash", "sha256", "model")
NUMBER_FIELDS = ("quality", "nsfw", "width", "height")
DATETIME_FIELDS = ("created_at",)
FilterField = Literal[
    "tags", "owner", "record_id", "source", "mime", "phash", "sha256", "model",
    "quality", "nsfw", "width", "height", "created_at",
]  # fmt: skip
MAX_DEPTH = 4
MAX_CONDITIONS = 64
# Engines keep integers in 64 bits.
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class RangeBounds(BaseModel):
    """Bounds of a range; numbers for numeric fields, ISO 8601 datetimes for `created_at`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    gt: float | datetime | None = None
    gte: float | datetime | None = None
    lt: float | datetime | None = None
    lte: float | datetime | None = None


# Payload fields filled in by an enrichment stage after an image is searchable, by stage.
SCORE_FIELDS = {"quality": "quality", "nsfw": "nsfw"}


class FieldCondition(BaseModel):
    """One condition on one payload field: exactly one of `match`, `any`, `range`, `is_empty`.

    On a list field (`tags`) `match` means "contains" and `any` means "shares one with".
    """

    model_config = ConfigDict(extra="forbid")

    key: FilterField
    match: str | Int64 | bool | None = None
    any: list[str | Int64] | None = Field(default=None, min_length=1, max_length=1024)
    range: RangeBounds | None = None
    is_empty: bool | None = None

    @model_validator(mode="after")
    def _exactly_one_test(self) -> FieldCondition:
        given = [n for n in ("match", "any", "range", "is_empty") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                f"condition on {self.key!r}: give exactly one of match, any, range, is_empty"
            )
        if self.range is not None:
            bounds = [getattr(self.range, b) for b in ("gt", "gte", "lt", "lte")]
            present = [b for b in bounds if b is not None]
            if not present:
                raise ValueError(f"range on {self.key!r} has no bound")
            want_dates = self.key in DATETIME_FIELDS
            if self.key not in NUMBER_FIELDS and not want_dates:
                raise ValueError(f"{self.key!r} is not a numeric or date field; use match or any")
            if any(isinstance(b, datetime) != want_dates for b in present):
                kind = "ISO 8601 datetimes" if want_dates else "numbers"
                raise ValueError(f"range bounds on {self.key!r} must be {kind}")
            for b in present:
                if isinstance(b, datetime) and b.tzinfo is None:
                    raise ValueError(f"range on {self.key!r} needs timezone-aware datetimes")
        return self

    def to_condition(self) -> Condition:
        if self.match is not None:
            return MatchValue(self.key, self.match)
        if self.any is not None:
            return MatchAny(self.key, tuple(self.any))
        if self.is_empty is not None:
            empty = IsEmpty(self.key)
            return empty if self.is_empty else Filter(must_not=(empty,))
        assert self.range is not None
        r = self.range
        if self.key in DATETIME_FIELDS:
            return DatetimeRange(self.key, gt=r.gt, gte=r.gte, lt=r.lt, lte=r.lte)  # type: ignore[arg-type]
        return Range(self.key, gt=r.gt, gte=r.gte, lt=r.lt, lte=r.lte)  # type: ignore[arg-type]


class BoolFilter(BaseModel):
    """All of `must`, at least one of `should` (when given), none of `must_not`; nestable."""

    model_config = ConfigDict(extra="forbid")

    must: list[FieldCondition | BoolFilter] = Field(default_factory=list)
    should: list[FieldCondition | BoolFilter] = Field(default_factory=list)
    must_not: list[FieldCondition | BoolFilter] = Field(default_factory=list)

    def to_filter(self) -> Filter:
        def convert(items: list[FieldCondition | BoolFilter]) -> tuple[Condition, ...]:
            return tuple(
                i.to_filter() if isinstance(i, BoolFilter) else i.to_condition() for i in items
            )

        return Filter(
            must=convert(self.must), should=convert(self.should), must_not=convert(self.must_not)
        )

    def size(self, depth: int = 1) -> int:
        """Conditions in the tree; raises `ValueError` past the depth or size limit."""
        if depth > MAX_DEPTH:
            raise ValueError(f"filters nest at most {MAX_DEPTH} levels deep")
        total = 0
        for item in (*self.must, *self.should, *self.must_not):
            total += item.size(depth + 1) if isinstance(item, BoolFilter) else 1
        if total > MAX_CONDITIONS:
            raise ValueError(f"a filter has at most {MAX_CONDITIONS} conditions")
        return total

    def keys(self) -> set[str]:
        """The payload fields the tree's conditions read (iteratively: the tree may be deep)."""
        found: set[str] = set()
        stack: list[FieldCondition | BoolFilter] = [self]
        while stack:
            node = stack.pop()
            if isinstance(node, BoolFilter):
                stack.extend((*node.must, *node.should, *node.must_not))
            else:
                found.add(node.key)
        return found


class SearchFilters(BaseModel):
    """Payload filters; every given field must hold (AND).

    The shorthand fields cover the common cases; `must`, `should` and `must_not` take the full
    boolean form over payload fields, e.g.
    `{"must": [{"key": "tags", "any": ["red"]}], "must_not": [{"key": "owner", "match": "bob"}]}`.
    """

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
    must: list[FieldCondition | BoolFilter] = Field(default_factory=list)
    should: list[FieldCondition | BoolFilter] = Field(default_factory=list)
    must_not: list[FieldCondition | BoolFilter] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _shallow_enough(cls, raw: Any) -> Any:
        """Refuse a tree nested past the limit before it is validated: every level of a
        union of models multiplies the errors a bad deep tree would produce."""
        stack = [(raw, 0)]
        while stack:
            node, depth = stack.pop()
            if not isinstance(node, dict):
                continue
            children = [
                item
                for key in ("must", "should", "must_not")
                if isinstance(node.get(key), list)
                for item in node[key]
            ]
            if children and depth >= MAX_DEPTH:
                raise ValueError(f"filters nest at most {MAX_DEPTH} levels deep")
            stack.extend((child, depth + 1) for child in children)
        return raw

    @model_validator(mode="after")
    def _within_limits(self) -> SearchFilters:
        BoolFilter(must=self.must, should=self.should, must_not=self.must_not).size()
        return self

    @model_validator(mode="after")
    def _dates_in_order(self) -> SearchFilters:
        # Timezones first: an aware and a naive datetime cannot even be compared.
        for name in ("created_after", "created_before"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a timezone, e.g. 2026-01-31T00:00:00Z")
        if self.created_after and self.created_before and self.created_after > self.created_before:
            raise ValueError("created_after is later than created_before")
        return self

    def score_fields(self) -> set[str]:
        """The computed scores (`quality`, `nsfw`) this filter reads. An image whose score is not
        computed yet (its enrichment stage is pending) or not at all has no such payload field,
        so any condition on it leaves the image out; the search says how many that is."""
        keys = BoolFilter(must=self.must, should=self.should, must_not=self.must_not).keys()
        if self.min_quality is not None:
            keys.add("quality")
        if self.max_nsfw is not None:
            keys.add("nsfw")
        return keys & set(SCORE_FIELDS)

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
        must_not: list[Condition] = (
            [MatchAny("tags", tuple(self.tags_none))] if self.tags_none else []
        )
        tree = BoolFilter(must=self.must, should=self.should, must_not=self.must_not).to_filter()
        must.extend(tree.must)
        must_not.extend(tree.must_not)
        if not must and not must_not and not tree.should:
            return None
        return Filter(must=tuple(must), should=tree.should, must_not=tuple(must_not))
