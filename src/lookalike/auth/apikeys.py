"""API keys: long-lived credentials for scripts, sent as `Bearer lk_...` or `X-API-Key`.

A key reads `lk_<prefix>_<secret>`. The prefix is public (it finds the row and names the key in
listings); the catalog keeps only a SHA-256 of the whole key, so a leaked catalog leaks no key.
The secret has 256 random bits, which is why a fast hash is enough (no password stretching).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import or_, select

from lookalike.auth.tokens import Principal, check_principal
from lookalike.catalog import ApiKey, Catalog, utcnow
from lookalike.core.errors import InvalidInput, NotFound, Unauthorized

KEY_PREFIX = "lk_"
_KEY = re.compile(r"^lk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
# Compared against when no key has the prefix, so a miss costs the same as a wrong secret.
_NO_HASH = "0" * 64
# Writing `last_used_at` on every request would turn reads into writes; a minute is precise enough.
_TOUCH_EVERY = timedelta(minutes=1)


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


def is_api_key(token: str) -> bool:
    """Whether a bearer credential is an API key rather than a JWT."""
    return token.startswith(KEY_PREFIX)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    catalog: Catalog, *, tenant: str, user: str, name: str = ""
) -> tuple[ApiKey, str]:
    """A new key for `user` in `tenant`: the row and the key itself, which is shown only once."""
    check_principal(user, tenant)
    if len(name) > 128:
        raise InvalidInput("an API key name is at most 128 characters")
    with catalog.session() as session:
        prefix = secrets.token_hex(6)
        while session.scalars(select(ApiKey.id).where(ApiKey.prefix == prefix)).first():
            prefix = secrets.token_hex(6)
        key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        row = ApiKey(tenant=tenant, user=user, name=name, prefix=prefix, secret_hash=_hash(key))
        session.add(row)
    return row, key


def list_api_keys(
    catalog: Catalog, *, tenant: str | None = None, include_revoked: bool = False
) -> Sequence[ApiKey]:
    """Keys, oldest first; of one tenant when `tenant` is given."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if tenant is not None:
        query = query.where(ApiKey.tenant == tenant)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    with catalog.session() as session:
        return session.scalars(query).all()


def revoke_api_key(catalog: Catalog, ref: str, *, tenant: str | None = None) -> ApiKey:
    """Revoke a key named by id or prefix (idempotent); it is refused from then on."""
    query = select(ApiKey).where(or_(ApiKey.id == ref, ApiKey.prefix == ref))
    if tenant is not None:
        query = query.where(ApiKey.tenant == tenant)
    with catalog.session() as session:
        row = session.scalars(query).first()
        if row is None:
            raise ApiKeyNotFound(f"no API key {ref!r}; list them with `lookalike apikey list`")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
    return row


def verify_api_key(catalog: Catalog, key: str) -> Principal:
    """The key's principal; a malformed, unknown or revoked key is `Unauthorized`."""
    match = _KEY.match(key)
    if match is None:
        raise Unauthorized("malformed API key; keys look like lk_<12 hex>_<43 characters>")
    with catalog.session() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.prefix == match.group(1))).first()
        expected = row.secret_hash if row is not None else _NO_HASH
        if not hmac.compare_digest(expected, _hash(key)) or row is None:
            raise Unauthorized("invalid API key")
        if row.revoked_at is not None:
            raise Unauthorized("this API key was revoked; create a new one")
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
            row.last_used_at = now
        return Principal(user=row.user, tenant=row.tenant)
