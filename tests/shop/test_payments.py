"""The payments service against real PostgreSQL: the simulated provider's idempotency, and the API's promise
never to charge twice for one Idempotency-Key or one order, through concurrency, provider failures and retries."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from services.common.db import connect
from services.shop.common.database import open_service_pool
from services.shop.payments.app import create_app
from services.shop.payments.models import PaymentRequest
from services.shop.payments.provider import (
    ProviderRejectedError,
    ProviderUnavailableError,
    SimulatedProvider,
    Simulation,
)
from services.shop.payments.service import PaymentService
from services.shop.payments.settings import PaymentsSettings
from tests.shop.serving import served

CONCURRENT_REQUESTS = 50


class ScriptedRandom(random.Random):
    """Randomness on rails: `random()` returns the given values in turn (then 0.99: no failure, no decline)."""

    def __init__(self, *values: float) -> None:
        super().__init__(0)
        self._values = list(values)

    def random(self) -> float:
        return self._values.pop(0) if self._values else 0.99


@pytest.fixture(scope="module")
def settings(make_service_settings: Any) -> PaymentsSettings:
    return make_service_settings(
        "payments", PaymentsSettings, PROVIDER_LATENCY_MS=20, DB_POOL_MAX=8, PROVIDER_TIMEOUT_SECONDS=1
    )


@pytest.fixture(scope="module")
def app(settings: PaymentsSettings) -> FastAPI:
    return create_app(settings)


@pytest.fixture(scope="module")
def base_url(app: FastAPI) -> Iterator[str]:
    with served(app) as url:
        yield url


@pytest.fixture
def provider(app: FastAPI, base_url: str) -> Iterator[SimulatedProvider]:
    """The running app's provider, reset to well-behaved after each test."""
    simulated: SimulatedProvider = app.state.provider
    normal = simulated.simulation
    yield simulated
    simulated.simulation = normal


@pytest.fixture
def db(settings: PaymentsSettings, base_url: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(settings, options=f"-c search_path={settings.DB_SCHEMA}") as conn:
        yield conn


def provider_charges(db: psycopg.Connection[Any], order_id: uuid.UUID | str) -> list[dict[str, Any]]:
    rows = db.execute("SELECT * FROM provider_charges WHERE reference = %s", (str(order_id),)).fetchall()
    return [dict(row) for row in rows]


def provider_refunds(db: psycopg.Connection[Any], order_id: uuid.UUID | str) -> int:
    row = db.execute(
        "SELECT count(*) AS n FROM provider_refunds r JOIN provider_charges c ON c.id = r.charge_id"
        " WHERE c.reference = %s",
        (str(order_id),),
    ).fetchone()
    assert row is not None
    return row["n"]


def pay(
    client: httpx.Client, key: str, order_id: uuid.UUID | str, amount_cents: int = 2599, currency: str = "USD"
) -> httpx.Response:
    body = {"order_id": str(order_id), "amount_cents": amount_cents, "currency": currency}
    return client.post("/payments", json=body, headers={"Idempotency-Key": key})


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        yield http


async def _concurrently(base_url: str, requests: list[tuple[str, dict[str, Any], dict[str, str]]]) -> list[Any]:
    async with httpx.AsyncClient(
        base_url=base_url, timeout=30, limits=httpx.Limits(max_connections=CONCURRENT_REQUESTS)
    ) as http:
        return await asyncio.gather(*(http.post(path, json=body, headers=headers) for path, body, headers in requests))


# --- The simulated provider on its own ---


def _with_provider(settings: PaymentsSettings, simulation: Simulation, rng: random.Random | None = None) -> Any:
    async def run(body: Any) -> Any:
        pool = await open_service_pool(settings)
        try:
            return await body(SimulatedProvider(pool, simulation, rng))
        finally:
            await pool.close()

    return run


def test_provider_replays_a_charge_for_the_same_key_and_refuses_a_different_request(
    settings: PaymentsSettings, db: psycopg.Connection[Any]
) -> None:
    reference = str(uuid.uuid4())

    async def scenario(provider: SimulatedProvider) -> None:
        first = await provider.charge("key-1", 1500, "EUR", reference)
        again = await provider.charge("key-1", 1500, "EUR", reference)
        assert (first.status, first.decline_code) == ("captured", None)
        assert again == first
        with pytest.raises(ProviderRejectedError) as refused:
            await provider.charge("key-1", 1600, "EUR", reference)
        assert refused.value.code == "idempotency_key_reused"

    asyncio.run(_with_provider(settings, Simulation(latency_ms=0))(scenario))
    assert len(provider_charges(db, reference)) == 1


def test_provider_declines_amounts_ending_in_13_cents_every_time(
    settings: PaymentsSettings, db: psycopg.Connection[Any]
) -> None:
    reference = str(uuid.uuid4())

    async def scenario(provider: SimulatedProvider) -> None:
        declined = await provider.charge(f"k-{reference}", 4213, "USD", reference)
        assert (declined.status, declined.decline_code) == ("declined", "card_declined")
        with pytest.raises(ProviderRejectedError) as refused:
            await provider.refund(declined.charge_id, f"r-{reference}")
        assert refused.value.code == "charge_not_captured"

    asyncio.run(_with_provider(settings, Simulation(latency_ms=0))(scenario))
    assert [row["status"] for row in provider_charges(db, reference)] == ["declined"]


def test_provider_random_declines_follow_the_decline_rate(settings: PaymentsSettings) -> None:
    async def scenario(provider: SimulatedProvider) -> list[str]:
        results = [await provider.charge(f"k-{uuid.uuid4()}", 1000, "USD", str(uuid.uuid4())) for _ in range(2)]
        return [result.status for result in results]

    # First charge: no failure (0.99), declined (0.1 < 0.5); second: no failure, not declined (0.9).
    rng = ScriptedRandom(0.99, 0.1, 0.99, 0.9)
    statuses = asyncio.run(_with_provider(settings, Simulation(latency_ms=0, decline_rate=0.5), rng)(scenario))
    assert statuses == ["declined", "captured"]


def test_a_response_lost_after_the_charge_is_recovered_by_retrying_the_same_key(
    settings: PaymentsSettings, db: psycopg.Connection[Any]
) -> None:
    reference = str(uuid.uuid4())

    async def scenario(provider: SimulatedProvider) -> None:
        # Call 1 fails before the provider records anything; call 2 records the charge, then its answer is lost.
        with pytest.raises(ProviderUnavailableError, match="unavailable"):
            await provider.charge("lost", 700, "USD", reference)
        assert provider_charges(db, reference) == []
        with pytest.raises(ProviderUnavailableError, match="after accepting"):
            await provider.charge("lost", 700, "USD", reference)
        assert len(provider_charges(db, reference)) == 1
        recovered = await provider.charge("lost", 700, "USD", reference)
        assert recovered.charge_id == provider_charges(db, reference)[0]["id"]

    rng = ScriptedRandom(0.0, 0.2, 0.0, 0.7)  # fail + before, fail + after, then well-behaved
    asyncio.run(_with_provider(settings, Simulation(latency_ms=0, failure_rate=0.5), rng)(scenario))
    assert len(provider_charges(db, reference)) == 1


def test_provider_refunds_once_per_charge(settings: PaymentsSettings, db: psycopg.Connection[Any]) -> None:
    reference = str(uuid.uuid4())

    async def scenario(provider: SimulatedProvider) -> None:
        charge = await provider.charge(f"c-{reference}", 900, "USD", reference)
        first = await provider.refund(charge.charge_id, "refund-1")
        assert await provider.refund(charge.charge_id, "refund-1") == first
        with pytest.raises(ProviderRejectedError) as twice:
            await provider.refund(charge.charge_id, "refund-2")
        assert twice.value.code == "charge_already_refunded"
        with pytest.raises(ProviderRejectedError) as unknown:
            await provider.refund("ch_missing", "refund-3")
        assert unknown.value.code == "no_such_charge"

    asyncio.run(_with_provider(settings, Simulation(latency_ms=0))(scenario))
    assert provider_refunds(db, reference) == 1


def test_simulation_rejects_rates_outside_0_to_1() -> None:
    with pytest.raises(ValueError, match="failure_rate must be between 0 and 1"):
        Simulation(failure_rate=1.5)
    with pytest.raises(ValueError, match="latency_ms must be >= 0"):
        Simulation(latency_ms=-1)


# --- The payment service without the API's idempotency claims (as after a claim's lease ran out) ---


def test_concurrent_duplicates_past_the_claims_still_charge_once(
    settings: PaymentsSettings, db: psycopg.Connection[Any]
) -> None:
    order_id = uuid.uuid4()
    request = PaymentRequest(order_id=order_id, amount_cents=3100, currency="USD")

    async def scenario() -> set[tuple[str, str]]:
        pool = await open_service_pool(settings)
        try:
            service = PaymentService(
                pool, SimulatedProvider(pool, Simulation(latency_ms=20)), provider_timeout_seconds=5
            )
            payments = await asyncio.gather(
                *(service.pay(f"k-{order_id}", request) for _ in range(CONCURRENT_REQUESTS))
            )
        finally:
            await pool.close()
        return {(str(payment.id), payment.status) for payment in payments}

    [(payment_id, status)] = asyncio.run(scenario())
    assert status == "captured"
    assert len(provider_charges(db, order_id)) == 1
    row = db.execute("SELECT provider_charge_id FROM payments WHERE id = %s", (payment_id,)).fetchone()
    assert row is not None
    assert row["provider_charge_id"] == provider_charges(db, order_id)[0]["id"]


# --- The API ---


def test_a_payment_is_captured_and_can_be_read_back(client: httpx.Client) -> None:
    order_id = uuid.uuid4()
    created = pay(client, f"k-{order_id}", order_id, 2599, "EUR")
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment | {"id": None, "created_at": None, "updated_at": None} == {
        "id": None,
        "order_id": str(order_id),
        "status": "captured",
        "amount_cents": 2599,
        "currency": "EUR",
        "decline_code": None,
        "created_at": None,
        "updated_at": None,
    }
    assert client.get(f"/payments/{payment['id']}").json() == payment
    assert client.get("/payments", params={"order_id": str(order_id)}).json() == {"items": [payment]}


def test_a_retry_with_the_same_key_returns_the_first_payment_without_charging_again(
    client: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    order_id = uuid.uuid4()
    first = pay(client, f"k-{order_id}", order_id)
    again = pay(client, f"k-{order_id}", order_id)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(provider_charges(db, order_id)) == 1


def test_concurrent_identical_requests_charge_once(base_url: str, db: psycopg.Connection[Any]) -> None:
    order_id = uuid.uuid4()
    body = {"order_id": str(order_id), "amount_cents": 1999, "currency": "USD"}
    request = ("/payments", body, {"Idempotency-Key": f"k-{order_id}"})
    responses = asyncio.run(_concurrently(base_url, [request] * CONCURRENT_REQUESTS))
    statuses = [response.status_code for response in responses]
    # The first claims the key; the others either see it in progress (409, retry later) or replay its result.
    assert set(statuses) <= {201, 409}, statuses
    assert statuses.count(201) >= 1
    assert {response.json()["id"] for response in responses if response.status_code == 201} == {
        next(response.json()["id"] for response in responses if response.status_code == 201)
    }
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"] == "idempotency_key_in_progress"
            assert response.headers["Retry-After"].isdigit()
    assert len(provider_charges(db, order_id)) == 1


def test_concurrent_requests_for_one_order_under_different_keys_charge_once(
    base_url: str, db: psycopg.Connection[Any]
) -> None:
    order_id = uuid.uuid4()
    body = {"order_id": str(order_id), "amount_cents": 1999, "currency": "USD"}
    requests = [("/payments", body, {"Idempotency-Key": f"k-{order_id}-{n}"}) for n in range(CONCURRENT_REQUESTS)]
    responses = asyncio.run(_concurrently(base_url, requests))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * (CONCURRENT_REQUESTS - 1), statuses
    assert {r.json()["error"] for r in responses if r.status_code == 409} == {"order_already_paid"}
    assert len(provider_charges(db, order_id)) == 1


def test_the_same_key_with_a_different_body_is_refused(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    order_id = uuid.uuid4()
    assert pay(client, f"k-{order_id}", order_id, 1000).status_code == 201
    reused = pay(client, f"k-{order_id}", order_id, 2000)
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"
    assert [row["amount_cents"] for row in provider_charges(db, order_id)] == [1000]


def test_a_second_payment_for_a_paid_order_is_refused(client: httpx.Client) -> None:
    order_id = uuid.uuid4()
    first = pay(client, f"a-{order_id}", order_id)
    second = pay(client, f"b-{order_id}", order_id)
    assert second.status_code == 409
    assert second.json()["error"] == "order_already_paid"
    assert first.json()["id"] in second.json()["detail"]


def test_a_declined_payment_is_an_answer_and_the_order_may_be_paid_again(
    client: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    order_id = uuid.uuid4()
    declined = pay(client, f"a-{order_id}", order_id, 1013)
    assert declined.status_code == 201
    assert (declined.json()["status"], declined.json()["decline_code"]) == ("declined", "card_declined")
    retried = pay(client, f"b-{order_id}", order_id, 1000)
    assert retried.json()["status"] == "captured"
    listed = client.get("/payments", params={"order_id": str(order_id)}).json()["items"]
    assert [item["status"] for item in listed] == ["declined", "captured"]
    assert sorted(row["status"] for row in provider_charges(db, order_id)) == ["captured", "declined"]


def test_provider_failures_leave_the_payment_pending_and_a_retry_completes_it_with_one_charge(
    client: httpx.Client, provider: SimulatedProvider, db: psycopg.Connection[Any]
) -> None:
    order_id = uuid.uuid4()
    key = f"k-{order_id}"
    provider.simulation = Simulation(latency_ms=0, failure_rate=1.0)
    for _ in range(4):  # failures both before and after the provider records the charge (a coin flip each)
        failed = pay(client, key, order_id)
        assert failed.status_code == 503
        assert failed.json()["error"] == "provider_unavailable"
        assert failed.headers["Retry-After"] == "2"
    [pending] = client.get("/payments", params={"order_id": str(order_id)}).json()["items"]
    assert pending["status"] == "pending"
    assert len(provider_charges(db, order_id)) <= 1

    provider.simulation = Simulation(latency_ms=0)
    completed = pay(client, key, order_id)
    assert completed.status_code == 201
    assert (completed.json()["id"], completed.json()["status"]) == (pending["id"], "captured")
    assert len(provider_charges(db, order_id)) == 1


def test_a_provider_slower_than_the_timeout_is_a_transient_failure(
    client: httpx.Client, provider: SimulatedProvider, settings: PaymentsSettings
) -> None:
    order_id = uuid.uuid4()
    provider.simulation = Simulation(latency_ms=settings.PROVIDER_TIMEOUT_SECONDS * 1000 * 4)
    timed_out = pay(client, f"k-{order_id}", order_id)
    assert timed_out.status_code == 503
    assert "within 1 s" in timed_out.json()["detail"]
    provider.simulation = Simulation(latency_ms=0)
    assert pay(client, f"k-{order_id}", order_id).json()["status"] == "captured"


def test_refunding_twice_refunds_once(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    order_id = uuid.uuid4()
    payment = pay(client, f"k-{order_id}", order_id).json()
    first = client.post(f"/payments/{payment['id']}/refund", headers={"Idempotency-Key": f"r1-{order_id}"})
    same_key = client.post(f"/payments/{payment['id']}/refund", headers={"Idempotency-Key": f"r1-{order_id}"})
    other_key = client.post(f"/payments/{payment['id']}/refund", headers={"Idempotency-Key": f"r2-{order_id}"})
    assert [r.status_code for r in (first, same_key, other_key)] == [200, 200, 200]
    assert {r.json()["status"] for r in (first, same_key, other_key)} == {"refunded"}
    assert provider_refunds(db, order_id) == 1
    assert client.get(f"/payments/{payment['id']}").json()["status"] == "refunded"


def test_concurrent_refunds_refund_once(client: httpx.Client, base_url: str, db: psycopg.Connection[Any]) -> None:
    order_id = uuid.uuid4()
    payment = pay(client, f"k-{order_id}", order_id).json()
    requests = [(f"/payments/{payment['id']}/refund", {}, {"Idempotency-Key": f"r-{n}-{order_id}"}) for n in range(20)]
    responses = asyncio.run(_concurrently(base_url, requests))
    assert {response.status_code for response in responses} == {200}
    assert provider_refunds(db, order_id) == 1


def test_only_captured_payments_can_be_refunded(client: httpx.Client) -> None:
    order_id = uuid.uuid4()
    declined = pay(client, f"k-{order_id}", order_id, 513).json()
    refused = client.post(f"/payments/{declined['id']}/refund", headers={"Idempotency-Key": f"r-{order_id}"})
    assert refused.status_code == 409
    assert refused.json()["error"] == "not_refundable"
    missing = client.post(f"/payments/{uuid.uuid4()}/refund", headers={"Idempotency-Key": f"m-{order_id}"})
    assert missing.status_code == 404


def test_unknown_payments_are_404_and_bad_input_is_422(client: httpx.Client) -> None:
    assert client.get(f"/payments/{uuid.uuid4()}").json()["error"] == "payment_not_found"
    assert client.get("/payments", params={"order_id": str(uuid.uuid4())}).json() == {"items": []}
    order_id = uuid.uuid4()
    body = {"order_id": str(order_id), "amount_cents": 100, "currency": "USD"}
    assert client.post("/payments", json=body).status_code == 422  # no Idempotency-Key
    for bad in ({"amount_cents": 0}, {"amount_cents": 10**12}, {"currency": "usd"}, {"order_id": "42"}):
        response = client.post("/payments", json=body | bad, headers={"Idempotency-Key": f"k-{uuid.uuid4()}"})
        assert response.status_code == 422, bad
        assert response.json()["error"] == "invalid_request"
