"""Who the current credentials belong to: what the web app shows after signing in."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from lookalike.api.deps import Caller, Runtime

router = APIRouter(tags=["session"])


class SessionOut(BaseModel):
    user: str
    tenant: str
    auth: Literal["on", "off"]


@router.get("/api/me")
def me(rt: Runtime, caller: Caller) -> SessionOut:
    """The caller's user and tenant, and whether the server checks credentials at all."""
    return SessionOut(user=caller.user, tenant=caller.tenant, auth=rt.settings.auth)
