"""Signing-key rotation (docs/shop.md, "Rotating the signing key"): users publishes the key before the last rotation
next to the current one, so tokens it signed keep verifying until they expire; a key older than that fails."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr, ValidationError

from services.shop.common.auth import (
    JWKS_PATH,
    Principal,
    RemoteKeys,
    TokenSigner,
    TokenVerifier,
    private_key_from_file,
    public_jwk,
    write_signing_key_file,
)
from services.shop.common.settings import ShopSettings
from services.shop.local import LocalResources, rotate_secret_file, service_environment
from services.shop.routes import load_stack_config

ISSUER, AUDIENCE = "shop-users", "shop"


def signer_from_files(key_file: Path) -> TokenSigner:
    """users as the local runner starts it: the key file, and the previous one once there is one."""
    previous = key_file.with_name(key_file.name + ".previous")
    settings = ShopSettings(
        SERVICE_NAME="users",
        JWT_SIGNING_KEY_FILE=key_file,
        JWT_SIGNING_KEY_PREVIOUS_FILE=previous if previous.exists() else None,
    )
    return TokenSigner.from_settings(settings)


def verify(verifier: TokenVerifier, token: str) -> Principal:
    return asyncio.run(verifier.verify(token))


def static_verifier(signer: TokenSigner) -> TokenVerifier:
    return TokenVerifier.from_jwks(signer.jwks(), issuer=ISSUER, audience=AUDIENCE)


def test_after_a_rotation_both_keys_are_published_and_only_a_retired_key_fails(tmp_path: Path) -> None:
    key_file = write_signing_key_file(tmp_path / "jwt.key")
    first = signer_from_files(key_file)
    assert [k["kid"] for k in first.jwks()["keys"]] == [first.kid]  # nothing to publish before a rotation
    old_token = first.issue("u1")

    rotate_secret_file(key_file, 32)
    second = signer_from_files(key_file)
    kids = [k["kid"] for k in second.jwks()["keys"]]
    assert kids == [second.kid, first.kid] and second.kid != first.kid  # signing key first, distinct kids
    assert all(set(k) == {"kty", "crv", "x", "kid", "use", "alg"} for k in second.jwks()["keys"])  # no private part
    assert jwt.get_unverified_header(second.issue("u2").token)["kid"] == second.kid  # signs with the new key only
    verifier = static_verifier(second)
    assert verify(verifier, old_token.token) == Principal("u1", old_token.token_id)
    new_token = second.issue("u2")
    assert verify(verifier, new_token.token) == Principal("u2", new_token.token_id)
    stranger = TokenSigner(Ed25519PrivateKey.generate(), issuer=ISSUER, audience=AUDIENCE).issue("u3")
    with pytest.raises(jwt.InvalidTokenError, match="no signing key with kid"):
        verify(verifier, stranger.token)

    rotate_secret_file(key_file, 32)
    third = signer_from_files(key_file)
    assert [k["kid"] for k in third.jwks()["keys"]] == [third.kid, second.kid]
    with pytest.raises(jwt.InvalidTokenError, match="no signing key with kid"):
        verify(static_verifier(third), old_token.token)  # the first key is retired: in no set any more
    assert verify(static_verifier(third), new_token.token).user_id == "u2"


def test_the_previous_version_from_secrets_manager_is_published_once(tmp_path: Path) -> None:
    seed = write_signing_key_file(tmp_path / "jwt.key").read_text().strip()
    previous_seed = write_signing_key_file(tmp_path / "previous.key").read_text().strip()
    # In AWS both arrive as variables: the AWSCURRENT and AWSPREVIOUS versions of one secret.
    cloud = {"APP_ENV": "dev", "DB_AUTH": "iam", "DB_SSLMODE": "verify-full"}
    signer = TokenSigner.from_settings(
        ShopSettings.model_validate(
            {"SERVICE_NAME": "users", **cloud, "JWT_SIGNING_KEY": seed, "JWT_SIGNING_KEY_PREVIOUS": previous_seed}
        )
    )
    expected = public_jwk(private_key_from_file(tmp_path / "previous.key").public_key())
    assert signer.jwks()["keys"][1] == expected
    # Before the first rotation the previous version can be the current key: it is published once.
    same = TokenSigner.from_settings(
        ShopSettings(SERVICE_NAME="users", JWT_SIGNING_KEY=SecretStr(seed), JWT_SIGNING_KEY_PREVIOUS=SecretStr(seed))
    )
    assert len(same.jwks()["keys"]) == 1


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"JWT_SIGNING_KEY_PREVIOUS": "a", "JWT_SIGNING_KEY_PREVIOUS_FILE": "/k"},
            "JWT_SIGNING_KEY_PREVIOUS and JWT_SIGNING_KEY_PREVIOUS_FILE are both set",
        ),
        (
            {"APP_ENV": "dev", "DB_AUTH": "iam", "DB_SSLMODE": "verify-full", "JWT_SIGNING_KEY_PREVIOUS_FILE": "/k"},
            "JWT_SIGNING_KEY_PREVIOUS_FILE is for local runs",
        ),
    ],
)
def test_previous_key_settings_are_checked(variables: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ShopSettings.model_validate({"SERVICE_NAME": "users", **variables})


def test_the_local_runner_passes_the_previous_key_only_after_a_rotation(tmp_path: Path) -> None:
    key_file = write_signing_key_file(tmp_path / "jwt.key")
    local = LocalResources(
        database="shop_local",
        redis_prefix="shop-test",
        sqs_endpoint_url="http://127.0.0.1:1",
        queue_urls={"notifications": "http://127.0.0.1:1/q"},
        secret_files={("users", "JWT_SIGNING_KEY"): key_file},
        mail_dir=tmp_path,
    )
    ports = {"users": 1, "products": 2, "orders": 3, "payments": 4}
    assert "JWT_SIGNING_KEY_PREVIOUS_FILE" not in service_environment(load_stack_config(), "users", ports, local)
    before = key_file.read_text()
    rotate_secret_file(key_file, 32)
    config = load_stack_config()
    env = service_environment(config, "users", ports, local)
    assert Path(env["JWT_SIGNING_KEY_PREVIOUS_FILE"]).read_text() == before != key_file.read_text()
    # As in AWS, only a secret with keepPrevious gets its previous version.
    users = config.services["users"]
    secret = users.generatedSecrets["JWT_SIGNING_KEY"].model_copy(update={"keepPrevious": False})
    users = users.model_copy(update={"generatedSecrets": {"JWT_SIGNING_KEY": secret}})
    without = config.model_copy(update={"services": {**config.services, "users": users}})
    assert "JWT_SIGNING_KEY_PREVIOUS_FILE" not in service_environment(without, "users", ports, local)


def test_verifiers_pick_up_a_rotation_by_kid_and_drop_a_retired_key() -> None:
    keys = [Ed25519PrivateKey.generate() for _ in range(3)]
    signers = [TokenSigner(key, issuer=ISSUER, audience=AUDIENCE) for key in keys]
    rotated = [  # users after the first and the second rotation
        TokenSigner(new, issuer=ISSUER, audience=AUDIENCE, previous_key=old.public_key())
        for old, new in itertools.pairwise(keys)
    ]
    published = {"set": signers[0].jwks()}
    fetches: list[str] = []

    def users(request: httpx.Request) -> httpx.Response:
        fetches.append(request.url.path)
        return httpx.Response(200, json=published["set"])

    client = httpx.AsyncClient(transport=httpx.MockTransport(users))
    keys = RemoteKeys(f"http://users{JWKS_PATH}", client, refresh_seconds=0.05)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)
    tokens = [s.issue(f"u{i}").token for i, s in enumerate(signers)]

    async def scenario() -> None:
        assert (await verifier.verify(tokens[0])).user_id == "u0"
        await asyncio.sleep(0.06)  # past the refresh interval (30 s in services): an unknown kid may fetch again
        published["set"] = rotated[0].jwks()  # users rotated: signs with key 1, still publishes key 0
        assert (await verifier.verify(tokens[1])).user_id == "u1"  # unknown kid: one fetch
        assert (await verifier.verify(tokens[0])).user_id == "u0"  # the previous key still verifies
        assert len(fetches) == 2
        await asyncio.sleep(0.06)
        published["set"] = rotated[1].jwks()  # the second rotation retires key 0
        assert (await verifier.verify(tokens[2])).user_id == "u2"
        assert (await verifier.verify(tokens[1])).user_id == "u1"
        with pytest.raises(jwt.InvalidTokenError, match="no signing key with kid"):
            await verifier.verify(tokens[0])
        assert len(fetches) == 3  # the retired kid was unknown within the interval: no extra fetch
        await verifier.aclose()

    asyncio.run(scenario())
