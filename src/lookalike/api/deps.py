"""Request dependencies: the open runtime and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lookalike.auth import ANONYMOUS, Principal, verify_token
from lookalike.errors import Unauthorized
from lookalike.runtime import Lookalike

_bearer = HTTPBearer(auto_error=False, description="A token from `lookalike token create`.")


def get_runtime(request: Request) -> Lookalike:
    runtime: Lookalike = request.app.state.runtime
    return runtime


def get_principal(
    runtime: Annotated[Lookalike, Depends(get_runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if runtime.settings.auth == "off":
        return ANONYMOUS
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token; create one with `lookalike token create`")
    return verify_token(runtime.settings, credentials.credentials)


Runtime = Annotated[Lookalike, Depends(get_runtime)]
Caller = Annotated[Principal, Depends(get_principal)]
