"""Password policy and argon2id hashing off the event loop, with a bounded queue.

Policy (NIST SP 800-63B style: length and a blocklist, no composition rules): 12 to 128 characters after
Unicode NFKC normalisation; not the email address or its local part; at least 5 distinct characters; and not one
of the 1,000 most common passwords (common_passwords.txt), compared case-insensitively after stripping the digits
and symbols people add around a common word ("Password2024!" -> "password"), or repeated ("monkeymonkey").
No zxcvbn-style estimator is installed in this project, so that check is not done.

Hashing: argon2id with OWASP's minimum profile (m=19 MiB, t=2, p=1; measured here at about 25-30 ms per hash on
one idle core). That cost is the point, and it makes login and sign-up CPU-bound: on 2 idle cores about 80 hashes
a second. Hashes run in a thread pool (argon2-cffi releases the GIL) of one thread per core, at a lower scheduling
priority (HASH_THREAD_NICENESS), so the event loop keeps serving other requests; a hash that would wait longer
than HASH_MAX_WAIT_MS for a thread is refused at once with `HashingBusyError` (503 + Retry-After) instead of
letting every login's latency grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
MIN_DISTINCT_CHARACTERS = 5
# Weight of the newest hash time in the moving average (about the last ten hashes count).
MEAN_WEIGHT = 0.1
COMMON_PASSWORDS_FILE = Path(__file__).parent / "common_passwords.txt"
# The ends people pad a common word with: "Summer2024!", "!!password123".
_PADDING = re.compile(r"^[\W\d_]+|[\W\d_]+$")

T = TypeVar("T")


def normalise_password(password: str) -> str:
    """NFKC, so the same password typed on different keyboards (composed or decomposed) hashes the same."""
    return unicodedata.normalize("NFKC", password)


@cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def _is_repetition_of_common(core: str, common: frozenset[str]) -> bool:
    for size in range(1, len(core) // 2 + 1):
        unit = core[:size]
        if len(core) % size == 0 and unit * (len(core) // size) == core and unit in common:
            return True
    return False


def password_problem(password: str, email: str) -> str | None:
    """Why `password` (already normalised) is refused for an account with `email` (normalised), or None."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        return f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long, got {len(password)}"
    lowered = password.lower()
    local_part = email.partition("@")[0]
    if lowered in {email, local_part}:
        return "password must not be the email address or its part before the @"
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        return f"password must contain at least {MIN_DISTINCT_CHARACTERS} different characters"
    common = common_passwords()
    core = _PADDING.sub("", lowered)
    if lowered in common or core in common or _is_repetition_of_common(core, common):
        return (
            "password is too common (a well-known password, perhaps with digits or symbols around it); choose another"
        )
    return None


class HashingBusyError(Exception):
    """Every hashing thread is busy and the queue is full: answer 503 with Retry-After."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"password hashing is at capacity; retry in {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


def default_hashing_threads() -> int:
    """The cores this process may run on (an ECS task's cgroup CPU share is not visible here)."""
    return max(1, len(os.sched_getaffinity(0)))


def _lower_thread_priority(niceness: int) -> None:
    """Raise this thread's nice value (Linux schedules threads individually), so that when hashes fill every core
    the event loop thread, and other processes on the host, get a larger share of the CPU than the hashing."""
    if niceness:
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: no setpriority on this platform
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


class PasswordHashing:
    """argon2id hash/verify in a bounded thread pool, with admission control on the expected queueing time.

    A hash is refused (HashingBusyError) when the hashes ahead of it would keep it waiting longer than
    `max_wait_seconds`, judged by a moving average of recent hash times: so the bound holds in real time whether
    the host is idle (~25 ms a hash) or busy with other work (several times that). The counters and the average
    are touched only from the event loop thread, so they need no lock."""

    def __init__(self, hasher: PasswordHasher, threads: int, max_wait_seconds: float, *, niceness: int = 0) -> None:
        if threads < 1 or max_wait_seconds < 0:
            raise ValueError(f"threads must be >= 1 and max_wait_seconds >= 0, got {threads} and {max_wait_seconds}")
        self._hasher = hasher
        self._threads = threads
        self._max_wait_seconds = max_wait_seconds
        self._admitted = 0
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="argon2", initializer=_lower_thread_priority, initargs=(niceness,)
        )
        # Verified against when the email is unknown, so "no such user" costs what "wrong password" costs; making
        # it also gives the first estimate of a hash's duration.
        self._dummy_hash, self._mean_seconds = _timed(hasher.hash, secrets.token_urlsafe(16))

    @property
    def in_flight(self) -> int:
        """Hashes running or queued."""
        return self._admitted

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches `stored_hash`; with no hash (unknown user), a full-cost False."""
        return await self._run(self._verify_sync, stored_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """The stored hash was made with other parameters than the current ones (cheap: parses the PHC string)."""
        return self._hasher.check_needs_rehash(stored_hash)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _verify_sync(self, stored_hash: str | None, password: str) -> bool:
        if stored_hash is None:
            with contextlib.suppress(VerifyMismatchError):
                self._hasher.verify(self._dummy_hash, password)
            return False
        try:
            return self._hasher.verify(stored_hash, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError):
            log.error("stored password hash is not a valid argon2 hash; refusing the login")
            return False

    def expected_wait_seconds(self) -> float:
        """How long a hash admitted now would wait for a thread."""
        ahead = self._admitted - self._threads + 1
        return math.ceil(ahead / self._threads) * self._mean_seconds if ahead > 0 else 0.0

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        wait = self.expected_wait_seconds()
        if wait > self._max_wait_seconds:
            raise HashingBusyError(max(1, math.ceil(wait)))
        self._admitted += 1
        try:
            result, seconds = await asyncio.get_running_loop().run_in_executor(self._executor, _timed, function, *args)
        finally:
            self._admitted -= 1
        self._mean_seconds += (seconds - self._mean_seconds) * MEAN_WEIGHT
        return result


def _timed(function: Callable[..., T], *args: object) -> tuple[T, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started
