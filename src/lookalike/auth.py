"""Bearer tokens: HS256 JWTs naming a user and the tenant whose data they may touch."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from lookalike.config import Settings
from lookalike.errors import Unauthorized

ALGORITHM = "HS256"
DEFAULT_TENANT = "default"
ISSUER = "lookalike"


@dataclass(frozen=True)
class Principal:
    user: str
    tenant: str


# Who the caller is when auth is switched off for a local demo.
ANONYMOUS = Principal(user="local", tenant=DEFAULT_TENANT)


def secret_key(settings: Settings) -> str:
    """The signing secret: from settings, else generated once into the data directory."""
    if settings.secret_key:
        return settings.secret_key
    path: Path = settings.data_dir / "secret.key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def create_token(settings: Settings, *, user: str, tenant: str, ttl_s: int = 30 * 24 * 3600) -> str:
    now = int(time.time())
    claims = {"sub": user, "tenant": tenant, "iss": ISSUER, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret_key(settings), algorithm=ALGORITHM)


def verify_token(settings: Settings, token: str) -> Principal:
    """The token's principal; any forged, expired or malformed token is `Unauthorized`."""
    try:
        claims = jwt.decode(
            token,
            secret_key(settings),
            algorithms=[ALGORITHM],  # pinning the algorithm is what rejects `alg: none`
            issuer=ISSUER,
            options={"require": ["sub", "tenant", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired; create a new one") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    return Principal(user=str(claims["sub"]), tenant=str(claims["tenant"]))
