"""The users service against real PostgreSQL and Redis: sign-up, password policy, login (JSON and OAuth2 form),
throttling, hash upgrades, the caller's account, the JWK set, and tokens verified by another process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.common.db import connect
from services.fauxqs import free_port
from services.shop.common.auth import TokenSigner, TokenVerifier, write_signing_key_file
from services.shop.common.settings import ShopSettings
from services.shop.users.app import create_app, password_hasher
from services.shop.users.passwords import HashingBusyError, PasswordHashing, normalise_password, password_problem
from services.shop.users.settings import UsersSettings
from tests.services.helpers import wait_until
from tests.shop.conftest import settings_env

PASSWORD = "correct horse battery staple"
REPO_ROOT = Path(__file__).resolve().parents[2]


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture(scope="module")
def settings(make_service_settings: Any) -> UsersSettings:
    return make_service_settings("users", UsersSettings, LOGIN_MAX_FAILURES=3)


@pytest.fixture(scope="module")
def app(settings: UsersSettings) -> FastAPI:
    return create_app(settings)


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def register(client: TestClient, email: str, password: str = PASSWORD, name: str = "Ada Lovelace") -> Any:
    return client.post("/users", json={"email": email, "password": password, "name": name})


def login(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    return client.post("/auth/token", json={"email": email, "password": password})


def stored_hash(settings: UsersSettings, email: str) -> str:
    with connect(settings, options=f"-c search_path={settings.DB_SCHEMA}") as conn:
        row = conn.execute("SELECT password_hash FROM users WHERE email = %s", (email,)).fetchone()
    assert row is not None
    return row["password_hash"]


# --- Password policy ---


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "12 to 128 characters long, got 5"),
        ("x" * 129, "12 to 128 characters long, got 129"),
        ("aaaaaaaaaaaa", "at least 5 different characters"),
        ("121212121212", "at least 5 different characters"),
        ("Password2024!", "too common"),
        ("!!qwertyuiop123", "too common"),
        ("monkeymonkeymonkey", "too common"),
        ("Iloveyou123456", "too common"),
        ("ada.lovelace@example.com", "must not be the email address"),
        ("Ada.Lovelace", "must not be the email address"),
    ],
)
def test_password_policy_refuses_weak_passwords(password: str, problem: str) -> None:
    refusal = password_problem(password, "ada.lovelace@example.com")
    assert refusal is not None
    assert problem in refusal


@pytest.mark.parametrize(
    "password", [PASSWORD, "Tr0ub4dor&3-orange", "dragon-lives-in-the-mountains", "ünïcødé-pässwörd"]
)
def test_password_policy_accepts_long_uncommon_passwords(password: str) -> None:
    assert password_problem(password, "ada@example.com") is None


def test_passwords_are_nfkc_normalised_so_composed_and_decomposed_forms_match() -> None:
    assert normalise_password("cafe\u0301-au-lait-12") == normalise_password("caf\u00e9-au-lait-12")


# --- Hashing ---


def test_hashing_refuses_work_that_would_wait_longer_than_allowed() -> None:
    # One thread, no waiting allowed: while one hash runs, the next is refused at once.
    hashing = PasswordHashing(PasswordHasher(memory_cost=19 * 1024, time_cost=2, parallelism=1), 1, max_wait_seconds=0)

    async def scenario() -> None:
        running = asyncio.create_task(hashing.hash(PASSWORD))
        await asyncio.sleep(0)  # the task starts and takes the thread
        assert hashing.in_flight == 1
        assert hashing.expected_wait_seconds() > 0
        with pytest.raises(HashingBusyError) as busy:
            await hashing.verify(None, PASSWORD)
        assert busy.value.retry_after_seconds >= 1
        stored = await running
        assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert (hashing.in_flight, hashing.expected_wait_seconds()) == (0, 0)
        assert await hashing.verify(stored, PASSWORD)  # admitted again once the thread is free

    try:
        asyncio.run(scenario())
    finally:
        hashing.close()


class CountingHasher(PasswordHasher):
    """A real argon2 hasher that counts its verifications."""

    verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        CountingHasher.verifications += 1
        return super().verify(hash, password)


def test_an_unknown_user_costs_a_full_verification() -> None:
    hashing = PasswordHashing(CountingHasher(memory_cost=19 * 1024, time_cost=2, parallelism=1), 1, max_wait_seconds=1)
    try:
        before = CountingHasher.verifications
        assert asyncio.run(hashing.verify(None, PASSWORD)) is False
        assert CountingHasher.verifications == before + 1
    finally:
        hashing.close()


def test_argon2_settings_below_the_owasp_minimum_are_refused(make_service_settings: Any) -> None:
    with pytest.raises(ValueError, match="ARGON2_MEMORY_KIB"):
        make_service_settings("users", UsersSettings, ARGON2_MEMORY_KIB=8192)
    with pytest.raises(ValueError, match="ARGON2_TIME_COST"):
        make_service_settings("users", UsersSettings, ARGON2_TIME_COST=1)


# --- Sign-up ---


def test_sign_up_stores_a_normalised_email_and_an_argon2id_hash(client: TestClient, settings: UsersSettings) -> None:
    email = new_email()
    response = register(client, email.upper(), name="  Ada  ")
    assert response.status_code == 201, response.text
    user = response.json()
    assert set(user) == {"id", "email", "name", "created_at"}
    assert (user["email"], user["name"]) == (email, "Ada")
    assert stored_hash(settings, email).startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_a_taken_email_is_409_whatever_its_case(client: TestClient) -> None:
    email = new_email()
    assert register(client, email).status_code == 201
    taken = register(client, email.upper(), password="another fine passphrase")
    assert taken.status_code == 409
    assert taken.json()["error"] == "email_taken"


def test_a_weak_password_is_422_without_echoing_it(client: TestClient) -> None:
    response = register(client, new_email(), password="Password2024!")
    assert response.status_code == 422
    assert response.json()["error"] == "weak_password"
    assert "Password2024!" not in response.text


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD, "name": "Ada"},
        {"email": "ada@example.com", "password": "too short", "name": "Ada"},
        {"email": "ada@example.com", "password": PASSWORD, "name": "   "},
        {"email": "ada@example.com", "password": PASSWORD, "name": "Ada\u0000"},
        {"email": "ada@example.com", "password": PASSWORD, "name": "Ada", "admin": True},
    ],
)
def test_invalid_sign_ups_are_422(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/users", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"


def test_a_lone_surrogate_in_a_password_is_422_not_a_crash(client: TestClient) -> None:
    body = '{"email": "ada@example.com", "password": "correct horse \\ud800 battery", "name": "Ada"}'
    response = client.post("/users", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    [issue] = response.json()["detail"]
    assert (issue["loc"], issue["type"]) == (["body", "password"], "string_unicode")


# --- Login ---


def test_login_issues_a_15_minute_bearer_token_for_me(client: TestClient) -> None:
    email = new_email()
    user = register(client, email).json()
    token = login(client, email.upper())
    assert token.status_code == 200, token.text
    assert token.headers["Cache-Control"] == "no-store"
    body = token.json()
    assert (body["token_type"], body["expires_in"]) == ("bearer", 900)
    me = client.get("/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json() == user


def test_oauth2_password_form_login(client: TestClient) -> None:
    email = new_email()
    register(client, email)
    form = {"grant_type": "password", "username": email, "password": PASSWORD}
    response = client.post("/auth/token", data=form)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"
    missing = client.post("/auth/token", data={"password": PASSWORD})
    assert missing.status_code == 422
    assert [issue["loc"] for issue in missing.json()["detail"]] == [["body", "username"]]
    wrong_grant = client.post("/auth/token", data=form | {"grant_type": "client_credentials"})
    assert (wrong_grant.status_code, wrong_grant.json()["error"]) == (400, "unsupported_grant_type")


def test_invalid_json_credentials_are_422_naming_the_field(client: TestClient) -> None:
    response = client.post("/auth/token", json={"email": "not an email", "password": PASSWORD})
    assert response.status_code == 422
    assert [issue["loc"] for issue in response.json()["detail"]] == [["body", "email"]]
    assert (
        client.post("/auth/token", content=b"{not json", headers={"Content-Type": "application/json"}).status_code
        == 422
    )


def test_login_refuses_other_media_types(client: TestClient) -> None:
    response = client.post("/auth/token", content=b"email=x", headers={"Content-Type": "text/plain"})
    assert (response.status_code, response.json()["error"]) == (415, "unsupported_media_type")


def test_wrong_password_and_unknown_email_get_the_same_401(client: TestClient) -> None:
    email = new_email()
    register(client, email)
    wrong = login(client, email, "not the right passphrase")
    unknown = login(client, new_email())
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "invalid_credentials", "detail": "wrong email or password"}
    assert wrong.headers["WWW-Authenticate"] == "Bearer"


def test_failed_logins_are_throttled_per_email(client: TestClient, settings: UsersSettings) -> None:
    email, bystander = new_email(), new_email()
    register(client, email)
    register(client, bystander)
    for _ in range(settings.LOGIN_MAX_FAILURES):
        assert login(client, email, "not the right passphrase").status_code == 401
    throttled = login(client, email)  # even the right password, until the window ends
    assert throttled.status_code == 429
    assert throttled.json()["error"] == "too_many_failed_logins"
    assert 1 <= int(throttled.headers["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW_SECONDS
    assert login(client, bystander).status_code == 200


def test_concurrent_guesses_cannot_slip_past_the_failure_limit(client: TestClient, settings: UsersSettings) -> None:
    """The count is taken before the ~30 ms hash: a burst must not all read a count under the limit."""
    email = new_email()
    register(client, email)
    guesses = 3 * settings.LOGIN_MAX_FAILURES
    with ThreadPoolExecutor(max_workers=guesses) as pool:
        statuses = list(
            pool.map(lambda _: login(client, email, "not the right passphrase").status_code, range(guesses))
        )
    assert statuses.count(401) <= settings.LOGIN_MAX_FAILURES, sorted(statuses)
    assert set(statuses) <= {401, 429, 503}, sorted(statuses)


def test_unknown_emails_are_throttled_too(client: TestClient, settings: UsersSettings) -> None:
    email = new_email()
    statuses = [login(client, email).status_code for _ in range(settings.LOGIN_MAX_FAILURES + 1)]
    assert statuses == [401] * settings.LOGIN_MAX_FAILURES + [429]


def test_a_successful_login_clears_the_failure_count(client: TestClient, settings: UsersSettings) -> None:
    email = new_email()
    register(client, email)
    for _ in range(settings.LOGIN_MAX_FAILURES - 1):
        login(client, email, "not the right passphrase")
    assert login(client, email).status_code == 200
    statuses = [login(client, email, "nope, wrong again").status_code for _ in range(settings.LOGIN_MAX_FAILURES)]
    assert statuses == [401] * settings.LOGIN_MAX_FAILURES


def test_logins_go_on_unthrottled_when_redis_is_down(make_service_settings: Any) -> None:
    settings = make_service_settings("users", UsersSettings, REDIS_PORT=free_port(), LOGIN_MAX_FAILURES=1)
    with TestClient(create_app(settings)) as client:
        email = new_email()
        register(client, email)
        assert [login(client, email, "wrong passphrase!").status_code for _ in range(3)] == [401] * 3
        assert login(client, email).status_code == 200


def test_login_upgrades_a_hash_made_with_weaker_parameters(client: TestClient, settings: UsersSettings) -> None:
    email = new_email()
    register(client, email)
    weak = PasswordHasher(memory_cost=8 * 1024, time_cost=1, parallelism=1).hash(PASSWORD)
    with connect(settings, options=f"-c search_path={settings.DB_SCHEMA}") as conn:
        conn.execute("UPDATE users SET password_hash = %s WHERE email = %s", (weak, email))
    assert login(client, email).status_code == 200
    upgraded = stored_hash(settings, email)
    assert upgraded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert not password_hasher(settings).check_needs_rehash(upgraded)
    assert login(client, email).status_code == 200


# --- Tokens and keys ---


def test_me_needs_a_valid_token(client: TestClient) -> None:
    missing = client.get("/users/me")
    assert (missing.status_code, missing.json()["error"]) == (401, "unauthenticated")
    forged = client.get("/users/me", headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."})
    assert (forged.status_code, forged.json()["error"]) == (401, "invalid_token")


def test_jwks_publishes_the_public_key_and_is_cacheable(client: TestClient) -> None:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    [key] = response.json()["keys"]
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert "d" not in key  # never the private part


def test_after_a_rotation_users_publishes_both_keys_and_accepts_the_previous_ones_tokens(
    settings: UsersSettings, tmp_path: Path
) -> None:
    previous_key = write_signing_key_file(tmp_path / "previous.key")
    rotated = settings.model_copy(update={"JWT_SIGNING_KEY_PREVIOUS_FILE": previous_key})
    before_rotation = TokenSigner.from_settings(ShopSettings(SERVICE_NAME="users", JWT_SIGNING_KEY_FILE=previous_key))
    with TestClient(create_app(rotated)) as client:
        user = register(client, new_email()).json()
        kids = [key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]]
        old_token = before_rotation.issue(user["id"]).token
        me = client.get("/users/me", headers={"Authorization": f"Bearer {old_token}"})
    assert len(kids) == 2 and kids[1] == before_rotation.kid != kids[0]
    assert (me.status_code, me.json()["id"]) == (200, user["id"])


@pytest.fixture(scope="module")
def users_process(settings: UsersSettings) -> Iterator[str]:
    """The users service as its own process (`python -m services.shop.users`); yields its URL."""
    port = free_port()
    env = {**os.environ, **settings_env(settings), "PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.shop.users"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(lambda: ready() or process.poll() is not None, timeout=30, what="the users process")
        assert process.poll() is None, "the users process exited at start-up"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_another_service_verifies_tokens_with_the_users_jwk_set(users_process: str) -> None:
    email = new_email()
    with httpx.Client(base_url=users_process, timeout=10) as http:
        user = http.post("/users", json={"email": email, "password": PASSWORD, "name": "Ada"}).json()
        token = http.post("/auth/token", json={"email": email, "password": PASSWORD}).json()["access_token"]
    orders_settings = ShopSettings(SERVICE_NAME="orders", USERS_URL=users_process)  # pyright: ignore[reportCallIssue]

    async def verify() -> str:
        verifier = TokenVerifier.from_settings(orders_settings)
        try:
            return (await verifier.verify(token)).user_id
        finally:
            await verifier.aclose()

    assert asyncio.run(verify()) == user["id"]
