"""The users service application: `create_app(settings)`; run with `python -m services.shop.users`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from argon2 import PasswordHasher
from argon2.low_level import Type
from fastapi import FastAPI

from services.common.redis_client import CircuitBreaker
from services.shop.common.app import LifespanHook, ServiceRuntime, create_service_app
from services.shop.common.auth import TokenSigner, TokenVerifier, install_token_verifier
from services.shop.users import routes
from services.shop.users.passwords import PasswordHashing, default_hashing_threads
from services.shop.users.settings import UsersSettings
from services.shop.users.throttle import LoginThrottle, redis_client

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def password_hasher(settings: UsersSettings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.ARGON2_TIME_COST,
        memory_cost=settings.ARGON2_MEMORY_KIB,
        parallelism=settings.ARGON2_PARALLELISM,
        type=Type.ID,
    )


def _users_resources(settings: UsersSettings) -> LifespanHook:
    @asynccontextmanager
    async def hook(runtime: ServiceRuntime) -> AsyncIterator[None]:
        signer = TokenSigner.from_settings(settings)
        # /users/me verifies with this process's own public key: no call to itself for the JWK set.
        install_token_verifier(
            runtime.app,
            TokenVerifier.from_jwks(
                signer.jwks(),
                issuer=settings.JWT_ISSUER,
                audience=settings.JWT_AUDIENCE,
                leeway_seconds=settings.JWT_LEEWAY_SECONDS,
            ),
        )
        redis = redis_client(settings)
        throttle = LoginThrottle(
            redis,
            settings,
            max_failures=settings.LOGIN_MAX_FAILURES,
            window_seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS,
            breaker=CircuitBreaker(),
        )
        hashing = PasswordHashing(
            password_hasher(settings),
            threads=settings.HASH_THREADS or default_hashing_threads(),
            max_wait_seconds=settings.HASH_MAX_WAIT_MS / 1000,
            niceness=settings.HASH_THREAD_NICENESS,
        )
        runtime.app.state.users = routes.UsersState(hashing=hashing, throttle=throttle, signer=signer)
        try:
            yield
        finally:
            hashing.close()
            await redis.aclose()

    return hook


def create_app(settings: UsersSettings) -> FastAPI:
    return create_service_app(
        settings,
        title="users",
        description="Accounts, password login and short-lived EdDSA access tokens for the shop.",
        routers=[routes.router],
        migrations_dir=MIGRATIONS_DIR,
        lifespan_hooks=[_users_resources(settings)],
    )
