"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from lookalike.api.deps import Runtime

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(rt: Runtime) -> JSONResponse:
    """Catalog reachable, vector engine open, default model loaded."""
    checks: dict[str, str] = {}
    try:
        rt.catalog.ping()
        checks["catalog"] = "ok"
    except Exception as exc:
        checks["catalog"] = f"error: {exc}"
    try:
        rt.vectors.has_collection("__readyz__")
        checks["vectors"] = "ok"
    except Exception as exc:
        checks["vectors"] = f"error: {exc}"
    try:
        checks["model"] = rt.models.default().model_id
    except Exception as exc:
        checks["model"] = f"error: {exc}"
    ready = all(not v.startswith("error") for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )
