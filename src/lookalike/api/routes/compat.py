"""Routes other tools already call: the image-search-worker contract.

`POST /api/v1/search-image` answers `{text, model_name, matches: [{image_name, score}], jwt}`;
the `jwt` names that one search, and `POST /api/v1/create-feedback` takes it back with a 1-10
score. The feedback route needs no other credential: the search token is the proof.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from lookalike.api.deps import Caller, Runtime
from lookalike.api.schemas import (
    CreateFeedbackRequest,
    CreateFeedbackResponse,
    SearchImageRequest,
    SearchImageResponse,
)
from lookalike.auth.tokens import verify_search_token
from lookalike.feedback.service import rate_search
from lookalike.search.compat import search_text_rateable

router = APIRouter(prefix="/api/v1", tags=["compatibility"])


@router.post("/search-image")
def search_image(body: SearchImageRequest, rt: Runtime, caller: Caller) -> SearchImageResponse:
    """Images matching a text, by original file name, and a token to rate the search with."""
    found = search_text_rateable(
        rt, caller, body.text, collection=body.collection, limit=body.limit
    )
    return SearchImageResponse.model_validate(found)


@router.post("/create-feedback", status_code=status.HTTP_201_CREATED)
def create_feedback(
    body: CreateFeedbackRequest, rt: Runtime, response: Response
) -> CreateFeedbackResponse:
    """Score (1-10) the search a `/api/v1/search-image` token names; again replaces the score."""
    grant = verify_search_token(rt.settings, body.jwt)
    row, created = rate_search(rt.catalog, grant, body.user_feedback)
    if not created:
        response.status_code = status.HTTP_200_OK
    return CreateFeedbackResponse(
        id=row.id, search_id=grant.search_id, user_feedback=body.user_feedback
    )
