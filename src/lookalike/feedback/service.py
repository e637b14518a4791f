"""Feedback: people's verdicts on images (relevant, irrelevant, duplicate, anomaly) and their
1-10 scores for whole searches. Stored in the catalog, scoped to a tenant like everything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from lookalike.auth.tokens import Principal, SearchGrant
from lookalike.catalog import Catalog, Feedback
from lookalike.catalog.models import FEEDBACK_ACTIONS
from lookalike.catalog.repository import get_image
from lookalike.core.errors import InvalidInput

MAX_NOTE = 4000
MAX_QUERY_TEXT = 1000


@dataclass(frozen=True)
class QueryRef:
    """What the person was looking for when they judged: a search, a query image or a text."""

    search_id: str | None = None
    image_id: str | None = None
    text: str | None = None


def _check_score(score: int | None) -> None:
    if score is not None and not 1 <= score <= 10:
        raise InvalidInput("score must be an integer from 1 to 10")


def add_feedback(
    catalog: Catalog,
    caller: Principal,
    *,
    image_id: str,
    action: str,
    query: QueryRef | None = None,
    note: str | None = None,
    score: int | None = None,
) -> Feedback:
    """Record `caller`'s verdict on an image of their tenant (another tenant's is not found)."""
    if action not in FEEDBACK_ACTIONS:
        raise InvalidInput(f"action must be one of: {', '.join(FEEDBACK_ACTIONS)}")
    _check_score(score)
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidInput(f"note is at most {MAX_NOTE} characters")
    query = query or QueryRef()
    if query.text is not None and len(query.text) > MAX_QUERY_TEXT:
        raise InvalidInput(f"query.text is at most {MAX_QUERY_TEXT} characters")
    with catalog.session() as session:
        image = get_image(session, caller.tenant, image_id)
        if query.image_id is not None:
            get_image(session, caller.tenant, query.image_id)
        row = Feedback(
            tenant=caller.tenant,
            image_id=image.id,
            user=caller.user,
            action=action,
            search_id=query.search_id,
            query_image_id=query.image_id,
            query_text=query.text,
            note=note,
            score=score,
        )
        session.add(row)
    return row


def image_feedback(
    catalog: Catalog, tenant: str, image_id: str, *, limit: int = 100, offset: int = 0
) -> tuple[Sequence[Feedback], int]:
    """A page of the feedback on an image of `tenant`, newest first, and the total count."""
    where = (Feedback.image_id == image_id, Feedback.tenant == tenant)
    with catalog.session() as session:
        get_image(session, tenant, image_id)
        total = session.scalar(select(func.count()).select_from(Feedback).where(*where)) or 0
        rows = session.scalars(
            select(Feedback)
            .where(*where)
            .order_by(Feedback.created_at.desc(), Feedback.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
    return rows, int(total)


def rate_search(catalog: Catalog, grant: SearchGrant, score: int) -> tuple[Feedback, bool]:
    """Record the score for the search a token names; rating it again replaces the score.

    Returns the row and whether it is new.
    """
    _check_score(score)
    with catalog.session() as session:
        row = session.scalars(
            select(Feedback).where(
                Feedback.tenant == grant.tenant,
                Feedback.search_id == grant.search_id,
                Feedback.image_id.is_(None),
                Feedback.action.is_(None),
            )
        ).first()
        created = row is None
        if row is None:
            row = Feedback(
                tenant=grant.tenant,
                user=grant.user,
                search_id=grant.search_id,
                query_text=grant.text,
                score=score,
            )
            session.add(row)
        else:
            row.score = score
    return row, created
