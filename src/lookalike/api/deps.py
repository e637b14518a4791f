"""Request dependencies: the open runtime and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from lookalike.api.limits import check_tenant_rate
from lookalike.auth.apikeys import is_api_key, verify_api_key
from lookalike.auth.tokens import ANONYMOUS, Principal, verify_token
from lookalike.composition import Lookalike
from lookalike.core.errors import Unauthorized
from lookalike.core.logs import set_tenant

_bearer = HTTPBearer(
    auto_error=False,
    description="A JWT from `lookalike token create`, or an API key (`lk_...`) from "
    "`lookalike apikey create`.",
)
_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key from `lookalike apikey create`."
)


def get_runtime(request: Request) -> Lookalike:
    runtime: Lookalike = request.app.state.runtime
    return runtime


def get_principal(
    runtime: Annotated[Lookalike, Depends(get_runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    if runtime.settings.auth == "off":
        return ANONYMOUS
    if api_key:
        return verify_api_key(runtime.catalog, api_key)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized(
            "missing credentials: send 'Authorization: Bearer <token>' (`lookalike token "
            "create`) or 'X-API-Key: <key>' (`lookalike apikey create`)"
        )
    if is_api_key(credentials.credentials):
        return verify_api_key(runtime.catalog, credentials.credentials)
    return verify_token(runtime.settings, credentials.credentials)


async def get_caller(
    request: Request, principal: Annotated[Principal, Depends(get_principal)]
) -> Principal:
    """The verified caller, named in the request's log lines and counted against its tenant's
    rate limit."""
    set_tenant(principal.tenant)
    await check_tenant_rate(request, principal.tenant)
    return principal


Runtime = Annotated[Lookalike, Depends(get_runtime)]
Caller = Annotated[Principal, Depends(get_caller)]
