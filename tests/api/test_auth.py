"""Who may call the API: HS256 and RS256 bearer JWTs, API keys, and every way to be refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from lookalike.api.app import create_app
from lookalike.auth.apikeys import (
    create_api_key,
    list_api_keys,
    revoke_api_key,
    verify_api_key,
)
from lookalike.auth.tokens import (
    Principal,
    create_token,
    issue_search_token,
    secret_key,
    verify_token,
)
from lookalike.catalog import ApiKey
from lookalike.cli import app as cli
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.core.errors import Misconfigured, Unauthorized
from support import make_settings


def _pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[str, str]:
    return _pem_pair()


@pytest.fixture(scope="module")
def other_rsa_pair() -> tuple[str, str]:
    return _pem_pair()


@pytest.fixture
def client(secured_client: TestClient) -> TestClient:
    return secured_client


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _hs256_by_hand(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 token signed with any bytes (pyjwt refuses a PEM as an HMAC key)."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "alice",
        "tenant": "acme",
        "iss": "lookalike",
        "exp": int(time.time()) + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _assert_401(response: Any) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "unauthorized"
    assert body["error"]["message"]


def _get(client: TestClient, **headers: str) -> Any:
    return client.get("/api/collections", headers=headers)


# --- HS256 (the default) -------------------------------------------------------


def test_hs256_token_is_accepted(client: TestClient, secured: Settings) -> None:
    token = create_token(secured, user="alice", tenant="acme")
    assert _get(client, Authorization=f"Bearer {token}").status_code == 200
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda s: None, id="missing"),
        pytest.param(lambda s: "garbage", id="garbage"),
        pytest.param(
            lambda s: jwt.encode(_claims(), "another-secret-of-enough-length-0123456789", "HS256"),
            id="forged",
        ),
        pytest.param(
            lambda s: jwt.encode(_claims(exp=int(time.time()) - 5), secret_key(s), "HS256"),
            id="expired",
        ),
        pytest.param(
            lambda s: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.", id="alg-none"
        ),
        pytest.param(
            lambda s: jwt.encode(_claims(tenant=None), secret_key(s), "HS256"), id="no-tenant"
        ),
        pytest.param(lambda s: jwt.encode(_claims(tenant=""), secret_key(s), "HS256"), id="empty"),
        pytest.param(lambda s: jwt.encode(_claims(tenant=7), secret_key(s), "HS256"), id="int"),
        pytest.param(lambda s: jwt.encode(_claims(sub=None), secret_key(s), "HS256"), id="no-sub"),
        pytest.param(lambda s: jwt.encode(_claims(exp=None), secret_key(s), "HS256"), id="no-exp"),
        pytest.param(
            lambda s: jwt.encode(_claims(iss="someone-else"), secret_key(s), "HS256"), id="issuer"
        ),
        pytest.param(lambda s: jwt.encode(_claims(), secret_key(s), "HS512"), id="wrong-alg-hs512"),
        pytest.param(
            lambda s: jwt.encode(_claims(), _pem_pair()[0], "RS256"), id="wrong-alg-rs256"
        ),
        pytest.param(
            lambda s: issue_search_token(
                s, search_id="01JDZZZZZZZZZZZZZZZZZZZZZZ", principal=Principal("alice", "acme")
            ),
            id="search-token",
        ),
        pytest.param(
            lambda s: create_token(s, user="alice", tenant="acme")[:-4] + "AAAA", id="tampered"
        ),
    ],
)
def test_bad_bearer_tokens_get_401(client: TestClient, secured: Settings, make: Any) -> None:
    token = make(secured)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    _assert_401(_get(client, **headers))


def test_other_schemes_and_empty_headers_get_401(client: TestClient, secured: Settings) -> None:
    token = create_token(secured, user="alice", tenant="acme")
    _assert_401(_get(client, Authorization=f"Basic {token}"))
    _assert_401(_get(client, Authorization="Bearer "))
    _assert_401(_get(client, Authorization=token))
    _assert_401(_get(client, **{"X-API-Key": "lk_nope"}))


def test_auth_off_needs_the_explicit_setting(tmp_path: Path, models_dir: Path) -> None:
    assert Settings(_env_file=None).auth == "on"  # type: ignore[call-arg]
    settings = make_settings(tmp_path / "open", models_dir, auth="off")
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        assert _get(client).status_code == 200


# --- RS256 ---------------------------------------------------------------------


def _rs256_settings(tmp_path: Path, models_dir: Path, **overrides: Any) -> Settings:
    return make_settings(tmp_path / "rs", models_dir, auth="on", **overrides)


def test_rs256_tokens(
    tmp_path: Path,
    models_dir: Path,
    rsa_pair: tuple[str, str],
    other_rsa_pair: tuple[str, str],
) -> None:
    private, public = rsa_pair
    # The public key as a file, the private one inline with escaped newlines (as env vars carry).
    (tmp_path / "jwt.pub").write_text(public)
    settings = _rs256_settings(
        tmp_path,
        models_dir,
        jwt_public_key=str(tmp_path / "jwt.pub"),
        jwt_private_key=private.replace("\n", "\\n"),
    )
    token = create_token(settings, user="alice", tenant="acme")
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert verify_token(settings, token) == Principal("alice", "acme")
    # An identity provider holding the private key makes tokens the server takes.
    external = jwt.encode(_claims(sub="bob", tenant="globex"), private, "RS256")
    assert verify_token(settings, external) == Principal("bob", "globex")

    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        assert _get(client, Authorization=f"Bearer {token}").status_code == 200
        refused = [
            # HS256 with the server secret: the wrong algorithm once a public key is set.
            jwt.encode(_claims(), secret_key(settings), "HS256"),
            # Algorithm confusion: the public key used as an HMAC secret.
            _hs256_by_hand(_claims(), public.encode()),
            jwt.encode(_claims(), other_rsa_pair[0], "RS256"),
            jwt.encode(_claims(exp=int(time.time()) - 5), private, "RS256"),
            jwt.encode(_claims(tenant=None), private, "RS256"),
            f"{_b64({'alg': 'none'})}.{_b64(_claims())}.",
            jwt.encode(_claims(), private, "RS512"),
        ]
        for bad in refused:
            _assert_401(_get(client, Authorization=f"Bearer {bad}"))


def test_rs256_key_problems_are_reported(
    tmp_path: Path, models_dir: Path, rsa_pair: tuple[str, str], other_rsa_pair: tuple[str, str]
) -> None:
    private, public = rsa_pair
    no_private = _rs256_settings(tmp_path, models_dir, jwt_public_key=public)
    with pytest.raises(Misconfigured, match="LOOKALIKE_JWT_PRIVATE_KEY"):
        create_token(no_private, user="a", tenant="t")
    mismatched = _rs256_settings(
        tmp_path, models_dir, jwt_public_key=public, jwt_private_key=other_rsa_pair[0]
    )
    with pytest.raises(Misconfigured, match="does not belong"):
        create_token(mismatched, user="a", tenant="t")

    missing_file = _rs256_settings(tmp_path, models_dir, jwt_public_key=str(tmp_path / "nope.pem"))
    with (
        Lookalike(missing_file) as rt,
        TestClient(create_app(runtime=rt), raise_server_exceptions=False) as client,
    ):
        r = _get(client, Authorization=f"Bearer {jwt.encode(_claims(), private, 'RS256')}")
        assert r.status_code == 500
        assert r.json()["error"]["code"] == "misconfigured"
        assert "LOOKALIKE_JWT_PUBLIC_KEY" in r.json()["error"]["message"]


# --- API keys --------------------------------------------------------------------


def test_api_key_create_use_revoke(client: TestClient) -> None:
    rt: Lookalike = client.app.state.runtime  # type: ignore[attr-defined]
    row, key = create_api_key(rt.catalog, tenant="acme", user="ci", name="nightly")
    assert key.startswith(f"lk_{row.prefix}_")
    with rt.catalog.session() as s:
        stored = s.scalars(select(ApiKey).where(ApiKey.id == row.id)).one()
        assert key not in (stored.secret_hash, stored.prefix)
        assert stored.secret_hash == hashlib.sha256(key.encode()).hexdigest()
        assert stored.last_used_at is None

    created = client.post(
        "/api/collections", json={"name": "by-key"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert created.status_code == 201, created.text
    assert [c["name"] for c in _get(client, **{"X-API-Key": key}).json()] == ["by-key"]
    # The key's tenant is what scopes the data.
    other = create_token(rt.settings, user="x", tenant="globex")
    assert _get(client, Authorization=f"Bearer {other}").json() == []
    with rt.catalog.session() as s:
        assert s.get(ApiKey, row.id).last_used_at is not None  # type: ignore[union-attr]

    wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    _assert_401(_get(client, **{"X-API-Key": wrong_secret}))
    _assert_401(_get(client, Authorization=f"Bearer lk_{'0' * 12}_{key.split('_', 2)[2]}"))
    _assert_401(_get(client, Authorization="Bearer lk_short"))

    revoke_api_key(rt.catalog, row.prefix)
    revoke_api_key(rt.catalog, row.id)  # idempotent
    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        r = _get(client, **headers)
        _assert_401(r)
        assert "revoked" in r.json()["error"]["message"]
    assert list_api_keys(rt.catalog, tenant="acme") == []
    assert [k.id for k in list_api_keys(rt.catalog, include_revoked=True)] == [row.id]


def test_api_key_verification(secured: Settings) -> None:
    with Lookalike(secured) as rt:
        _, key = create_api_key(rt.catalog, tenant="acme", user="ci")
        assert verify_api_key(rt.catalog, key) == Principal("ci", "acme")
        with pytest.raises(Unauthorized):
            verify_api_key(rt.catalog, key + "x")
        with pytest.raises(Unauthorized):
            verify_api_key(rt.catalog, key.upper())


def test_cli_token_and_apikey_commands(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch, rsa_pair: tuple[str, str]
) -> None:
    data = tmp_path / "cli"
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(data))
    monkeypatch.setenv("LOOKALIKE_MODEL_CACHE_DIR", str(models_dir))
    runner = CliRunner()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    r = runner.invoke(cli, ["token", "create", "--user", "alice", "--tenant", "acme"])
    assert r.exit_code == 0, r.output
    assert verify_token(settings, r.stdout.strip()) == Principal("alice", "acme")

    r = runner.invoke(cli, ["apikey", "create", "--user", "ci", "--tenant", "acme", "--name", "n"])
    assert r.exit_code == 0, r.output
    key = r.stdout.strip()
    assert key.startswith("lk_")
    r = runner.invoke(cli, ["apikey", "list", "--json"])
    assert r.exit_code == 0, r.output
    (listed,) = json.loads(r.stdout)["keys"]
    assert (listed["user"], listed["tenant"], listed["name"]) == ("ci", "acme", "n")
    assert key not in r.stdout and listed["revoked_at"] is None

    with Lookalike(make_settings(data, models_dir, auth="on")) as rt:
        assert verify_api_key(rt.catalog, key) == Principal("ci", "acme")
    r = runner.invoke(cli, ["apikey", "revoke", listed["prefix"]])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["apikey", "list", "--json", "--revoked"])
    assert json.loads(r.stdout)["keys"][0]["revoked_at"] is not None
    r = runner.invoke(cli, ["apikey", "revoke", "nope"])
    assert r.exit_code == 2 and "no API key" in r.output

    # RS256 with only the public key: no token can be made here, and the CLI says why.
    monkeypatch.setenv("LOOKALIKE_JWT_PUBLIC_KEY", rsa_pair[1])
    r = runner.invoke(cli, ["token", "create", "--user", "alice"])
    assert r.exit_code == 2 and "LOOKALIKE_JWT_PRIVATE_KEY" in r.output
    monkeypatch.setenv("LOOKALIKE_JWT_PRIVATE_KEY", rsa_pair[0])
    r = runner.invoke(cli, ["token", "create", "--user", "alice", "--tenant", "acme"])
    assert r.exit_code == 0, r.output
    assert jwt.get_unverified_header(r.stdout.strip())["alg"] == "RS256"
