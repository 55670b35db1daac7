"""Settings of the users service (ShopSettings plus password hashing and login throttling)."""

from __future__ import annotations

from pydantic import Field

from services.shop.common.settings import ShopSettings


class UsersSettings(ShopSettings):
    PORT: int = Field(default=8081, ge=1, le=65535)

    # argon2id cost. The floors are OWASP's minimum profile (m=19 MiB, t=2, p=1): a setting below it is refused.
    # Raising any of them upgrades existing hashes at their owners' next login.
    ARGON2_MEMORY_KIB: int = Field(default=19 * 1024, ge=19 * 1024, le=1024 * 1024)
    ARGON2_TIME_COST: int = Field(default=2, ge=2, le=10)
    ARGON2_PARALLELISM: int = Field(default=1, ge=1, le=16)
    # Threads hashing at once; unset: the process's cores. More than the cores only adds queueing inside the OS.
    HASH_THREADS: int | None = Field(default=None, ge=1, le=64)
    # The longest a login or sign-up may wait for a hashing thread; past that it gets 503 + Retry-After at once
    # (the 1,000-user target is p99 < 250 ms, and a hash itself takes ~30 ms).
    HASH_MAX_WAIT_MS: float = Field(default=150.0, ge=0, le=10_000)
    # Nice value of the hashing threads. When the CPU is saturated, 5 gives a hashing thread about a third of the
    # share of a request-handling thread: browsing stays fast while logins slow down (and, past HASH_MAX_WAIT_MS,
    # get 503). 0: equal shares; 19: hash only on otherwise idle CPU.
    HASH_THREAD_NICENESS: int = Field(default=5, ge=0, le=19)

    # Per-email login throttling (Redis).
    LOGIN_MAX_FAILURES: int = Field(default=10, ge=1, le=1000)
    LOGIN_FAILURE_WINDOW_SECONDS: int = Field(default=15 * 60, ge=1, le=24 * 3600)
