"""The payment provider behind an interface, and a simulated one that behaves like a real provider.

`PaymentProvider` is what the payments service needs from any provider (Stripe, Adyen, ...): a charge and a full
refund, each idempotent on a caller-chosen key, with transient failures (timeouts, 5xx: retry with the same key)
told apart from permanent refusals.

`SimulatedProvider` keeps its ledger in the payments database (`provider_charges`, `provider_refunds`), standing
in for the provider's own, so "charged twice" is a row count. It has Stripe's Idempotency-Key semantics: a replay
with the same key and request returns the first result, the same key with a different request is refused.

It fails like a real provider: `PROVIDER_FAILURE_RATE` of the calls fail transiently, half of them before the
charge is recorded (the request never arrived) and half after (the charge happened but the response was lost: the
case that double-charges a client that retries with a new key). Amounts ending in 13 cents are always declined
(`card_declined`) so tests and demos can ask for a decline; `PROVIDER_DECLINE_RATE` declines others at random.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from dataclasses import dataclass
from typing import Literal, Protocol

from services.shop.common.database import ServicePool, unflushed_transaction

ChargeStatus = Literal["captured", "declined"]
DETERMINISTIC_DECLINE_CENTS = 13
DETERMINISTIC_DECLINE_CODE = "card_declined"
RANDOM_DECLINE_CODE = "do_not_honor"


@dataclass(frozen=True, slots=True)
class ProviderResult:
    charge_id: str
    status: ChargeStatus
    decline_code: str | None


@dataclass(frozen=True, slots=True)
class RefundResult:
    refund_id: str
    charge_id: str


class ProviderUnavailableError(Exception):
    """A transient failure (timeout, 5xx): the outcome is unknown; retrying with the same key is safe."""


class ProviderRejectedError(Exception):
    """A permanent refusal (e.g. the key was used for a different request): retrying will not help."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PaymentProvider(Protocol):
    async def charge(self, idempotency_key: str, amount_cents: int, currency: str, reference: str) -> ProviderResult:
        """Charge once per key; raises ProviderUnavailableError (retryable) or ProviderRejectedError."""
        ...

    async def refund(self, charge_id: str, idempotency_key: str) -> RefundResult:
        """Refund a captured charge in full, once per key; same errors as `charge`."""
        ...


@dataclass(frozen=True, slots=True)
class Simulation:
    """How the simulated provider behaves (PROVIDER_* settings)."""

    latency_ms: float = 50.0
    failure_rate: float = 0.0
    decline_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms}")
        for name in ("failure_rate", "decline_rate"):
            rate = getattr(self, name)
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")


_INSERT_CHARGE = """
INSERT INTO provider_charges
    (id, idempotency_key, request_fingerprint, reference, amount_cents, currency, status, decline_code)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, status, decline_code
"""
_CHARGE_BY_KEY = "SELECT id, status, decline_code, request_fingerprint FROM provider_charges WHERE idempotency_key = %s"
# ON CONFLICT with no target covers both unique keys: the idempotency key and "one refund per charge".
_INSERT_REFUND = """
INSERT INTO provider_refunds (id, idempotency_key, charge_id, amount_cents)
SELECT %s, %s, id, amount_cents FROM provider_charges WHERE id = %s AND status = 'captured'
ON CONFLICT DO NOTHING
RETURNING id
"""
_REFUND_BY_KEY = "SELECT id, charge_id FROM provider_refunds WHERE idempotency_key = %s"
_CHARGE_STATE = """
SELECT c.status, r.id AS refund_id FROM provider_charges c LEFT JOIN provider_refunds r ON r.charge_id = c.id
WHERE c.id = %s
"""


class SimulatedProvider:
    """A provider with realistic latency, transient failures and declines, idempotent on its keys."""

    def __init__(self, pool: ServicePool, simulation: Simulation, rng: random.Random | None = None) -> None:
        self.simulation = simulation  # replaceable at run time (tests turn failures on and off)
        self._pool = pool
        self._rng = rng or random.Random()  # noqa: S311 - simulated behaviour, not security

    async def charge(self, idempotency_key: str, amount_cents: int, currency: str, reference: str) -> ProviderResult:
        failure = await self._call_begins()
        result = await self._record_charge(idempotency_key, amount_cents, currency, reference)
        if failure:
            raise ProviderUnavailableError("payment provider timed out after accepting the charge")
        return result

    async def refund(self, charge_id: str, idempotency_key: str) -> RefundResult:
        failure = await self._call_begins()
        result = await self._record_refund(charge_id, idempotency_key)
        if failure:
            raise ProviderUnavailableError("payment provider timed out after accepting the refund")
        return result

    async def _call_begins(self) -> bool:
        """Wait the simulated network latency; fail now (request lost) or return True to fail after the write."""
        mean = self.simulation.latency_ms / 1000
        if mean > 0:
            await asyncio.sleep(self._rng.uniform(0.5 * mean, 1.5 * mean))
        if self._rng.random() >= self.simulation.failure_rate:
            return False
        if self._rng.random() < 0.5:
            raise ProviderUnavailableError("payment provider unavailable (503)")
        return True

    def _decline_code(self, amount_cents: int) -> str | None:
        if amount_cents % 100 == DETERMINISTIC_DECLINE_CENTS:
            return DETERMINISTIC_DECLINE_CODE
        if self._rng.random() < self.simulation.decline_rate:
            return RANDOM_DECLINE_CODE
        return None

    async def _record_charge(
        self, idempotency_key: str, amount_cents: int, currency: str, reference: str
    ) -> ProviderResult:
        fingerprint = f"{amount_cents}:{currency}:{reference}"
        decline_code = self._decline_code(amount_cents)
        status: ChargeStatus = "declined" if decline_code else "captured"
        values = (new_id("ch"), idempotency_key, fingerprint, reference, amount_cents, currency, status, decline_code)
        async with self._pool.connection() as conn:
            # The ledger stands in for the provider's own system, whose latency is PROVIDER_LATENCY_MS: its write
            # does not also wait for our WAL flush. Uniqueness on the key, what "never twice" rests on, is unchanged.
            async with unflushed_transaction(conn):
                row = await (await conn.execute(_INSERT_CHARGE, values)).fetchone()
            if row is None:  # a replay (or a concurrent twin, whose insert we waited for)
                row = await (await conn.execute(_CHARGE_BY_KEY, (idempotency_key,))).fetchone()
                assert row is not None, "a conflicting charge is committed before ON CONFLICT DO NOTHING returns"
                if row["request_fingerprint"] != fingerprint:
                    raise ProviderRejectedError(
                        "idempotency_key_reused",
                        f"idempotency key {idempotency_key!r} was used for a different charge request",
                    )
        return ProviderResult(row["id"], row["status"], row["decline_code"])

    async def _record_refund(self, charge_id: str, idempotency_key: str) -> RefundResult:
        async with self._pool.connection() as conn:
            row = await (await conn.execute(_INSERT_REFUND, (new_id("re"), idempotency_key, charge_id))).fetchone()
            if row is not None:
                return RefundResult(row["id"], charge_id)
            existing = await (await conn.execute(_REFUND_BY_KEY, (idempotency_key,))).fetchone()
            if existing is not None:
                if existing["charge_id"] != charge_id:
                    raise ProviderRejectedError(
                        "idempotency_key_reused", f"idempotency key {idempotency_key!r} was used for another refund"
                    )
                return RefundResult(existing["id"], charge_id)
            state = await (await conn.execute(_CHARGE_STATE, (charge_id,))).fetchone()
        raise _refund_refusal(charge_id, state)


def _refund_refusal(charge_id: str, state: dict[str, object] | None) -> ProviderRejectedError:
    if state is None:
        return ProviderRejectedError("no_such_charge", f"charge {charge_id!r} does not exist")
    if state["refund_id"] is not None:
        return ProviderRejectedError("charge_already_refunded", f"charge {charge_id!r} was already refunded")
    return ProviderRejectedError("charge_not_captured", f"charge {charge_id!r} was {state['status']}, not captured")


def new_id(prefix: str) -> str:
    """A provider-style object id (`ch_...`, `re_...`)."""
    return f"{prefix}_{secrets.token_hex(12)}"
