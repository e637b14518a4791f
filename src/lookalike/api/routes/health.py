"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials

from lookalike.api.deps import Runtime, get_principal
from lookalike.composition import Lookalike
from lookalike.core.errors import LookalikeError
from lookalike.health import check_stores

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request, rt: Runtime) -> JSONResponse:
    """Every store this deployment uses answers, and the default model is loaded. Where each
    store is and what went wrong are told to authenticated callers only (a probe needs the
    status; the hosts and paths are nobody else's business)."""
    stores = check_stores(rt.settings, rt.catalog, rt.vectors, rt.blobs)
    detailed = _authenticated(request, rt)
    checks = {s.role: s.detail if detailed or s.ok else "error" for s in stores}
    try:
        checks["model"] = rt.models.default().model_id
    except Exception as exc:
        checks["model"] = f"error: {exc}" if detailed else "error"
    ready = all(s.ok for s in stores if s.required) and not checks["model"].startswith("error")
    shown = [
        s.as_dict()
        if detailed
        else {"role": s.role, "engine": s.engine, "ok": s.ok, "required": s.required}
        for s in stores
    ]
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks, "stores": shown},
        status_code=200 if ready else 503,
    )


def _authenticated(request: Request, rt: Lookalike) -> bool:
    if rt.settings.auth == "off":
        return True
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    api_key = request.headers.get("x-api-key")
    try:
        get_principal(
            rt,
            HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)
            if credentials
            else None,
            api_key,
        )
    except LookalikeError:
        return False
    return True
