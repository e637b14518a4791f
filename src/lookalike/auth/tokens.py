"""Bearer tokens: JWTs naming a user and the tenant whose data they may touch.

Bearer JWTs are HS256, signed with the server's secret, unless `jwt_public_key` is set: then
they are RS256 and only that key's private half (held by `lookalike token create` or by an
identity provider) can make them. Exactly one algorithm is accepted at a time, which is what
refuses `alg: none` and algorithm-confusion forgeries.

Search tokens, handed out by `/api/v1/search-image` so its caller can rate that search later,
are always HS256 with the server's secret and carry an audience no bearer token has: neither
kind is accepted in place of the other.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from lookalike.core.config import Settings
from lookalike.core.errors import InvalidInput, Misconfigured, Unauthorized

ALGORITHM = "HS256"
RS256 = "RS256"
DEFAULT_TENANT = "default"
ISSUER = "lookalike"
SEARCH_AUDIENCE = "lookalike:search-feedback"
_MAX_TENANT = 64
_MAX_USER = 128


@dataclass(frozen=True)
class Principal:
    user: str
    tenant: str


# Who the caller is when auth is switched off for a local demo.
ANONYMOUS = Principal(user="local", tenant=DEFAULT_TENANT)


@dataclass(frozen=True)
class SearchGrant:
    """What a valid search token names: one search, by one user of one tenant."""

    search_id: str
    tenant: str
    user: str
    collection_id: str | None
    text: str | None
    expires_at: datetime


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


def bearer_algorithm(settings: Settings) -> str:
    """The one algorithm bearer JWTs must use with these settings."""
    return RS256 if settings.jwt_public_key else ALGORITHM


def _pem(value: str, setting: str) -> bytes:
    """PEM text given inline (env vars may carry `\\n` escapes), or the file it names."""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n").encode()
    try:
        return Path(value).expanduser().read_bytes()
    except OSError as exc:
        raise Misconfigured(
            f"{setting}: neither PEM text nor a readable file ({exc.strerror or exc})"
        ) from None


@lru_cache(maxsize=8)
def _public_key(value: str) -> RSAPublicKey:
    try:
        key = load_pem_public_key(_pem(value, "LOOKALIKE_JWT_PUBLIC_KEY"))
    except ValueError as exc:
        raise Misconfigured(f"LOOKALIKE_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from None
    if not isinstance(key, RSAPublicKey):
        raise Misconfigured("LOOKALIKE_JWT_PUBLIC_KEY must be an RSA key (tokens are RS256)")
    return key


@lru_cache(maxsize=8)
def _private_key(value: str) -> RSAPrivateKey:
    try:
        key = load_pem_private_key(_pem(value, "LOOKALIKE_JWT_PRIVATE_KEY"), password=None)
    except (ValueError, TypeError) as exc:
        raise Misconfigured(
            f"LOOKALIKE_JWT_PRIVATE_KEY is not an unencrypted PEM private key: {exc}"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise Misconfigured("LOOKALIKE_JWT_PRIVATE_KEY must be an RSA key (tokens are RS256)")
    return key


def _signing_key(settings: Settings) -> Any:
    if not settings.jwt_public_key:
        return secret_key(settings)
    if not settings.jwt_private_key:
        raise Misconfigured(
            "tokens are RS256 (LOOKALIKE_JWT_PUBLIC_KEY is set): set LOOKALIKE_JWT_PRIVATE_KEY "
            "to create them here, or have the identity provider that holds the key issue them"
        )
    private = _private_key(settings.jwt_private_key)
    if (
        private.public_key().public_numbers()
        != _public_key(settings.jwt_public_key).public_numbers()
    ):
        raise Misconfigured(
            "LOOKALIKE_JWT_PRIVATE_KEY does not belong to LOOKALIKE_JWT_PUBLIC_KEY: "
            "the server would refuse every token made with it"
        )
    return private


def _verify_key(settings: Settings) -> Any:
    if settings.jwt_public_key:
        return _public_key(settings.jwt_public_key)
    return secret_key(settings)


def create_token(settings: Settings, *, user: str, tenant: str, ttl_s: int = 30 * 24 * 3600) -> str:
    """A bearer JWT for `user` in `tenant`, valid for `ttl_s` seconds."""
    check_principal(user, tenant)
    now = int(time.time())
    claims = {
        "sub": user,
        "tenant": tenant,
        "iss": settings.jwt_issuer,
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(claims, _signing_key(settings), algorithm=bearer_algorithm(settings))


def verify_token(settings: Settings, token: str) -> Principal:
    """The token's principal; any forged, expired or malformed token is `Unauthorized`."""
    algorithm = bearer_algorithm(settings)
    try:
        claims = jwt.decode(
            token,
            _verify_key(settings),
            algorithms=[algorithm],  # pinning the algorithm is what rejects `alg: none`
            issuer=settings.jwt_issuer,
            # A token with an audience (a search token) is refused here: no audience is expected.
            options={"require": ["sub", "tenant", "exp", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired; create a new one") from None
    except jwt.InvalidAlgorithmError:
        raise Unauthorized(f"invalid token: this server accepts {algorithm} tokens only") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    return Principal(user=_claim(claims, "sub", _MAX_USER), tenant=_claim(claims, "tenant"))


def issue_search_token(
    settings: Settings,
    *,
    search_id: str,
    principal: Principal,
    collection_id: str | None = None,
    text: str | None = None,
) -> str:
    """A short-lived token naming one search, for rating it with `/api/v1/create-feedback`."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sid": search_id,
        "sub": principal.user,
        "tenant": principal.tenant,
        "iss": ISSUER,
        "aud": SEARCH_AUDIENCE,
        "iat": now,
        "exp": now + settings.search_token_ttl_s,
    }
    if collection_id:
        claims["col"] = collection_id
    if text:
        claims["q"] = text[:1000]
    return jwt.encode(claims, secret_key(settings), algorithm=ALGORITHM)


def verify_search_token(settings: Settings, token: str) -> SearchGrant:
    """The search a token from `issue_search_token` names; anything else is `Unauthorized`."""
    try:
        claims = jwt.decode(
            token,
            secret_key(settings),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            audience=SEARCH_AUDIENCE,
            options={"require": ["sid", "sub", "tenant", "exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the search token has expired; search again for a new one") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(
            f"invalid search token ({exc}); use the jwt that /api/v1/search-image returned"
        ) from None
    col, text = claims.get("col"), claims.get("q")
    return SearchGrant(
        search_id=_claim(claims, "sid", 26),
        tenant=_claim(claims, "tenant"),
        user=_claim(claims, "sub", _MAX_USER),
        collection_id=col if isinstance(col, str) else None,
        text=text if isinstance(text, str) else None,
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )


def _claim(claims: dict[str, Any], name: str, max_len: int = _MAX_TENANT) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise Unauthorized(f"invalid token: claim {name!r} must be a non-empty string")
    return value


def check_principal(user: str, tenant: str) -> None:
    """Refuse a user or tenant name the catalog cannot hold."""
    if not user.strip() or len(user) > _MAX_USER:
        raise InvalidInput(f"a user name is 1-{_MAX_USER} characters")
    if not tenant.strip() or len(tenant) > _MAX_TENANT:
        raise InvalidInput(f"a tenant name is 1-{_MAX_TENANT} characters")
