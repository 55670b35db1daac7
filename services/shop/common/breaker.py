"""A circuit breaker per callee: after enough failures, calls to a dependency fail at once for a cooldown
instead of each waiting for a timeout, then a few trial calls decide whether it is back.

    closed --(N failures in the window, or a failure ratio over a minimum of calls)--> open
    open --(cooldown elapsed)--> half_open --(a trial call succeeds)--> closed
                                 half_open --(a trial call fails)--> open (a new cooldown)

Written here rather than taken from a library: pybreaker's asyncio support is Tornado-only, aiobreaker is
unmaintained since 2021, and purgatory counts consecutive failures only (no rolling window or failure ratio, no
injectable clock); what is needed is small and every transition is tested with an injected clock.

Every transition is logged (JSON, with the callee) and `snapshot()` gives the state for /ready and metrics.
Results of calls that started before the last transition are ignored: a slow call that fails after the breaker
opened must not extend the cooldown, nor one that succeeds close it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class DependencyUnavailable(Exception):
    """A dependency could not serve the call (circuit open, timeouts, 5xx after retries). Callers turn this
    into degraded behaviour or a 503."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service} unavailable: {reason}")
        self.service = service
        self.reason = reason


@dataclass(frozen=True)
class BreakerPolicy:
    """When the breaker opens and how it recovers.

    It opens when, within the last `window_seconds`, either `failure_threshold` calls failed (if set: useful for
    low-traffic callees) or at least `minimum_calls` calls were made and `failure_ratio` of them failed. It stays
    open for `cooldown_seconds`, then lets `half_open_calls` trial calls through at a time."""

    window_seconds: float = 10.0
    failure_ratio: float = 0.5
    minimum_calls: int = 10
    failure_threshold: int | None = None
    cooldown_seconds: float = 5.0
    half_open_calls: int = 1

    def __post_init__(self) -> None:
        _require(self.window_seconds > 0, f"window_seconds must be > 0, got {self.window_seconds}")
        _require(0 < self.failure_ratio <= 1, f"failure_ratio must be in (0, 1], got {self.failure_ratio}")
        _require(self.minimum_calls >= 1, f"minimum_calls must be >= 1, got {self.minimum_calls}")
        _require(
            self.failure_threshold is None or self.failure_threshold >= 1,
            f"failure_threshold must be >= 1 or None, got {self.failure_threshold}",
        )
        _require(self.cooldown_seconds > 0, f"cooldown_seconds must be > 0, got {self.cooldown_seconds}")
        _require(self.half_open_calls >= 1, f"half_open_calls must be >= 1, got {self.half_open_calls}")


@dataclass(frozen=True)
class Permit:
    """Leave to make one call; hand it back with `record` (an outcome) or `release` (none, e.g. cancelled)."""

    generation: int
    trial: bool


class CircuitBreaker:
    """The breaker for one callee. Not thread-safe: use it from one event loop (asyncio needs no lock here,
    since no method awaits)."""

    def __init__(self, name: str, policy: BreakerPolicy | None = None, *, clock: Clock = time.monotonic) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._generation = 0  # bumped on every transition; permits from older generations are ignored
        self._opened_at = 0.0
        self._window: deque[tuple[float, bool]] = deque()  # (time, failed) of recent calls
        self._failures = 0
        self._trials_in_flight = 0

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._opened_at + self.policy.cooldown_seconds:
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    def acquire(self) -> Permit:
        """A permit for one call, or `DependencyUnavailable` at once when the circuit is open (or half-open
        with all trial calls in flight)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Permit(self._generation, trial=False)
        if state is BreakerState.HALF_OPEN and self._trials_in_flight < self.policy.half_open_calls:
            self._trials_in_flight += 1
            return Permit(self._generation, trial=True)
        retry_in = max(0.0, self._opened_at + self.policy.cooldown_seconds - self._clock())
        reason = "circuit open" if state is BreakerState.OPEN else "circuit half-open, trial call in progress"
        raise DependencyUnavailable(self.name, f"{reason} (retry in {retry_in:.1f}s)")

    def record(self, permit: Permit, *, success: bool) -> None:
        """The outcome of the call made with `permit`."""
        self.release(permit)
        if permit.generation != self._generation:
            return
        if permit.trial:
            self._transition(BreakerState.CLOSED if success else BreakerState.OPEN)
            return
        self._add_to_window(failed=not success)
        if not success and self._should_open():
            self._transition(BreakerState.OPEN)

    def release(self, permit: Permit) -> None:
        """Give back a permit without an outcome (the call was cancelled or never made)."""
        if permit.trial and permit.generation == self._generation:
            self._trials_in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        """State and counters for /ready and metrics logs."""
        state = self.state
        self._prune()
        snapshot: dict[str, Any] = {
            "callee": self.name,
            "state": state.value,
            "calls_in_window": len(self._window),
            "failures_in_window": self._failures,
        }
        if state is BreakerState.OPEN:
            snapshot["retry_in_seconds"] = round(self._opened_at + self.policy.cooldown_seconds - self._clock(), 3)
        return snapshot

    def _add_to_window(self, *, failed: bool) -> None:
        self._window.append((self._clock(), failed))
        self._failures += failed
        self._prune()

    def _prune(self) -> None:
        horizon = self._clock() - self.policy.window_seconds
        while self._window and self._window[0][0] <= horizon:
            _, failed = self._window.popleft()
            self._failures -= failed

    def _should_open(self) -> bool:
        policy = self.policy
        if policy.failure_threshold is not None and self._failures >= policy.failure_threshold:
            return True
        calls = len(self._window)
        return calls >= policy.minimum_calls and self._failures >= policy.failure_ratio * calls

    def _transition(self, new_state: BreakerState) -> None:
        old_state = self._state
        log.log(
            logging.WARNING if new_state is BreakerState.OPEN else logging.INFO,
            "circuit breaker %s -> %s",
            old_state.value,
            new_state.value,
            extra={
                "callee": self.name,
                "from_state": old_state.value,
                "to_state": new_state.value,
                "calls_in_window": len(self._window),
                "failures_in_window": self._failures,
            },
        )
        self._state = new_state
        self._generation += 1
        self._trials_in_flight = 0
        self._window.clear()
        self._failures = 0
        if new_state is BreakerState.OPEN:
            self._opened_at = self._clock()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"BreakerPolicy: {message}")
