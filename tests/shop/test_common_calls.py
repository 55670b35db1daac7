"""Calls between services (services/shop/common/calls.py) against a real local HTTP server, and every circuit
breaker transition (services/shop/common/breaker.py) with an injected clock."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
import pytest
import stamina
import uvicorn
from stamina.instrumentation import RetryDetails
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route

from services.fauxqs import free_port
from services.shop.common.breaker import BreakerPolicy, BreakerState, CircuitBreaker, DependencyUnavailable
from services.shop.common.calls import (
    PoolLimits,
    Response,
    RetryPolicy,
    ServiceClient,
    Timeouts,
    retry_after_seconds,
)
from tests.services.helpers import wait_until

FAST_RETRY = RetryPolicy(attempts=3, budget_seconds=5.0, wait_initial=0.001, wait_max=0.01)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Callee:
    """The callee's behaviour per test key: scripted responses (then 200), and every request it received."""

    port: int
    scripts: dict[str, deque[Scripted]] = field(default_factory=lambda: defaultdict(deque))
    received: dict[str, list[Request]] = field(default_factory=lambda: defaultdict(list))
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, key: str, *responses: Scripted) -> None:
        self.scripts[key].extend(responses)

    def hits(self, key: str) -> int:
        return len(self.received[key])

    def headers(self, key: str) -> list[dict[str, str]]:
        return [dict(request.headers) for request in self.received[key]]


def callee_app(callee: Callee) -> Starlette:
    async def scripted(request: Request) -> StarletteResponse:
        key = request.path_params["key"]
        callee.received[key].append(request)
        queue = callee.scripts[key]
        if queue:
            reply = queue.popleft()
            return JSONResponse({"status": reply.status}, reply.status, headers=reply.headers)
        return JSONResponse({"ok": True, "method": request.method})

    async def slow(request: Request) -> StarletteResponse:
        callee.received[request.path_params["key"]].append(request)
        for _ in range(600):
            if callee.release.is_set():
                break
            await asyncio.sleep(0.05)
        return JSONResponse({"late": True})

    async def drip(request: Request) -> StarletteResponse:
        callee.received[request.path_params["key"]].append(request)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(600):
                if callee.release.is_set():
                    return
                yield b"x"
                await asyncio.sleep(0.05)

        return StreamingResponse(chunks())

    async def echo(request: Request) -> StarletteResponse:
        callee.received[request.path_params["key"]].append(request)
        return JSONResponse(
            {
                "method": request.method,
                "raw_path": request.scope["raw_path"].decode(),
                "query": request.scope["query_string"].decode(),
                "content_type": request.headers.get("content-type"),
                "body": (await request.body()).decode(),
                "client_port": request.client.port if request.client else None,
            },
            headers={"X-Callee": "echo"},
        )

    methods = ["GET", "POST", "PUT", "DELETE"]
    return Starlette(
        routes=[
            Route("/echo/{key}/{rest:path}", echo, methods=methods),
            Route("/scripted/{key}", scripted, methods=methods),
            Route("/slow/{key}", slow, methods=methods),
            Route("/drip/{key}", drip, methods=methods),
        ]
    )


@pytest.fixture(scope="module")
def callee() -> Iterator[Callee]:
    state = Callee(port=free_port())
    server = uvicorn.Server(
        uvicorn.Config(callee_app(state), host="127.0.0.1", port=state.port, log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=15, what="the callee server to start")
    try:
        yield state
    finally:
        state.release.set()
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def key() -> str:
    return uuid.uuid4().hex


def run(base_url: str, call: Callable[[ServiceClient], Awaitable[Any]], **options: Any) -> Any:
    """Run `call` with a fresh client (fast retries unless `retry=` is given) and close it."""

    async def main() -> Any:
        options.setdefault("retry", FAST_RETRY)
        async with ServiceClient("products", base_url, **options) as client:
            return await call(client)

    return asyncio.run(main())


def unavailable(base_url: str, call: Callable[[ServiceClient], Awaitable[Any]], **options: Any) -> str:
    with pytest.raises(DependencyUnavailable) as raised:
        run(base_url, call, **options)
    assert raised.value.service == "products"
    return raised.value.reason


# --- retries ---


def test_get_is_retried_on_503_until_it_succeeds(callee: Callee, key: str) -> None:
    callee.script(key, Scripted(503), Scripted(502))
    response = run(callee.url, lambda client: client.get(f"/scripted/{key}"))
    assert response.status_code == 200
    assert callee.hits(key) == 3


def test_put_and_delete_are_retried(callee: Callee, key: str) -> None:
    async def both(client: ServiceClient) -> tuple[int, int]:
        callee.script(key, Scripted(504))
        put = await client.put(f"/scripted/{key}", json={"a": 1})
        callee.script(key, Scripted(503))
        delete = await client.delete(f"/scripted/{key}")
        return put.status_code, delete.status_code

    assert run(callee.url, both) == (200, 200)
    assert [request.method for request in callee.received[key]] == ["PUT", "PUT", "DELETE", "DELETE"]


def test_post_without_idempotency_key_is_never_retried(callee: Callee, key: str) -> None:
    callee.script(key, Scripted(503))
    reason = unavailable(callee.url, lambda client: client.post(f"/scripted/{key}", json={"a": 1}))
    assert "HTTP 503" in reason
    assert "1 attempt)" in reason
    assert callee.hits(key) == 1


def test_post_with_idempotency_key_is_retried_with_the_same_key(callee: Callee, key: str) -> None:
    callee.script(key, Scripted(503), Scripted(429, {"Retry-After": "0"}))
    response = run(callee.url, lambda client: client.post(f"/scripted/{key}", json={"a": 1}, idempotency_key="k-1"))
    assert response.status_code == 200
    assert [headers["idempotency-key"] for headers in callee.headers(key)] == ["k-1"] * 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_4xx_is_returned_and_not_retried(callee: Callee, key: str, status: int) -> None:
    callee.script(key, Scripted(status))
    breaker = CircuitBreaker("products", BreakerPolicy(minimum_calls=1))
    response = run(callee.url, lambda client: client.get(f"/scripted/{key}"), breaker=breaker)
    assert response.status_code == status
    assert callee.hits(key) == 1
    assert breaker.state is BreakerState.CLOSED  # an answer, not a failure of the callee


def test_500_is_not_retried(callee: Callee, key: str) -> None:
    callee.script(key, Scripted(500), Scripted(500))
    assert "HTTP 500" in unavailable(callee.url, lambda client: client.get(f"/scripted/{key}"))
    assert callee.hits(key) == 1


def test_attempts_are_bounded(callee: Callee, key: str) -> None:
    callee.script(key, *[Scripted(503)] * 10)
    reason = unavailable(callee.url, lambda client: client.get(f"/scripted/{key}"))
    assert "3 attempts" in reason
    assert callee.hits(key) == 3


@pytest.fixture
def scheduled_retries() -> Iterator[list[RetryDetails]]:
    """Every retry stamina schedules (its instrumentation hook), with the wait it chose."""
    retries: list[RetryDetails] = []

    def record(details: RetryDetails) -> None:
        retries.append(details)

    stamina.instrumentation.set_on_retry_hooks([record])
    yield retries
    stamina.instrumentation.set_on_retry_hooks(None)


def test_retry_after_is_honoured(callee: Callee, key: str, scheduled_retries: list[RetryDetails]) -> None:
    callee.script(key, Scripted(429, {"Retry-After": "1"}), Scripted(503))
    response = run(callee.url, lambda client: client.get(f"/scripted/{key}"))
    assert response.status_code == 200
    waits = [retry.wait_for for retry in scheduled_retries]
    assert waits[0] == 1.0  # the callee's wait, not the backoff
    assert waits[1] <= FAST_RETRY.wait_initial * 2  # no Retry-After: jittered exponential backoff
    assert "products GET /scripted/" in str(scheduled_retries[0].caused_by)


def test_a_retry_after_beyond_the_budget_ends_the_call_at_once(callee: Callee, key: str) -> None:
    callee.script(key, Scripted(503, {"Retry-After": "60"}))
    reason = unavailable(callee.url, lambda client: client.get(f"/scripted/{key}"))
    assert "1 attempt)" in reason
    assert callee.hits(key) == 1


def test_the_budget_bounds_the_whole_call(callee: Callee, key: str) -> None:
    # Attempt 1 ends at t0 < 0.99 and waits 1 s; attempt 2 ends after t0 + 1 and would wait until after t0 + 2,
    # past the 1.99 s budget: two attempts of 10.
    callee.script(key, *[Scripted(503, {"Retry-After": "1"})] * 10)
    retry = RetryPolicy(attempts=10, budget_seconds=1.99)
    assert "2 attempts" in unavailable(callee.url, lambda client: client.get(f"/scripted/{key}"), retry=retry)
    assert callee.hits(key) == 2


# --- timeouts ---


def test_read_timeout_is_honoured_and_retried_for_get(callee: Callee, key: str) -> None:
    timeouts = Timeouts(connect=0.5, read=0.1, total=5.0)
    reason = unavailable(callee.url, lambda client: client.get(f"/slow/{key}"), timeouts=timeouts)
    assert "timeout (ReadTimeoutError)" in reason
    assert callee.hits(key) == 3


def test_total_timeout_cuts_a_trickling_response(callee: Callee, key: str) -> None:
    timeouts = Timeouts(connect=0.5, read=1.0, total=0.3)
    reason = unavailable(callee.url, lambda client: client.post(f"/drip/{key}"), timeouts=timeouts)
    assert "timeout (TotalTimeoutError)" in reason
    assert callee.hits(key) == 1  # a POST without an Idempotency-Key: no retry


def test_connect_errors_are_retried_then_reported() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    breaker = CircuitBreaker("products", BreakerPolicy(minimum_calls=10))
    reason = unavailable(closed, lambda client: client.get("/anything"), breaker=breaker)
    assert "ConnectError" in reason
    assert "3 attempts" in reason
    assert breaker.snapshot()["failures_in_window"] == 3


# --- the breaker in the client ---


def test_open_breaker_short_circuits_without_a_network_call(callee: Callee, key: str) -> None:
    callee.script(key, *[Scripted(503)] * 4)
    breaker = CircuitBreaker("products", BreakerPolicy(minimum_calls=4, failure_ratio=0.5))
    reasons: list[str] = []

    async def calls(client: ServiceClient) -> None:
        for _ in range(6):
            try:
                await client.post(f"/scripted/{key}")
            except DependencyUnavailable as error:
                reasons.append(error.reason)

    run(callee.url, calls, breaker=breaker)
    assert callee.hits(key) == 4
    assert breaker.state is BreakerState.OPEN
    assert all(reason.startswith("circuit open") for reason in reasons[4:])
    assert len(reasons) == 6


def test_an_open_breaker_stops_retries(callee: Callee, key: str) -> None:
    callee.script(key, *[Scripted(503)] * 5)
    breaker = CircuitBreaker("products", BreakerPolicy(minimum_calls=2, failure_ratio=1.0))
    retry = RetryPolicy(attempts=5, budget_seconds=5.0, wait_initial=0.001, wait_max=0.01)
    reason = unavailable(callee.url, lambda client: client.get(f"/scripted/{key}"), breaker=breaker, retry=retry)
    assert reason.startswith("circuit open")
    assert callee.hits(key) == 2


def test_half_open_recovery_and_relapse(callee: Callee, key: str) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "products", BreakerPolicy(minimum_calls=2, failure_ratio=1.0, cooldown_seconds=5), clock=clock
    )
    callee.script(key, Scripted(503), Scripted(503), Scripted(503))

    async def scenario(client: ServiceClient) -> list[BreakerState]:
        states = []
        for _ in range(2):
            with pytest.raises(DependencyUnavailable):
                await client.post(f"/scripted/{key}")
        states.append(breaker.state)
        clock.advance(5)
        states.append(breaker.state)
        with pytest.raises(DependencyUnavailable):  # the trial call fails: open again
            await client.post(f"/scripted/{key}")
        states.append(breaker.state)
        clock.advance(5)
        assert (await client.post(f"/scripted/{key}")).status_code == 200  # the trial succeeds
        states.append(breaker.state)
        return states

    states = run(callee.url, scenario, breaker=breaker)
    assert states == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.OPEN, BreakerState.CLOSED]
    assert callee.hits(key) == 4


def test_a_cancelled_trial_call_frees_its_slot(callee: Callee, key: str) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("products", BreakerPolicy(minimum_calls=1, cooldown_seconds=5), clock=clock)
    breaker.record(breaker.acquire(), success=False)
    clock.advance(5)

    async def scenario(client: ServiceClient) -> int:
        call = asyncio.create_task(client.get(f"/slow/{key}"))
        await asyncio.to_thread(wait_until, lambda: callee.hits(key) == 1, 10, "the trial call to arrive")
        with pytest.raises(DependencyUnavailable, match="trial call in progress"):
            await client.get(f"/scripted/{key}")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return (await client.get(f"/scripted/{key}")).status_code

    assert run(callee.url, scenario, breaker=breaker) == 200
    assert breaker.state is BreakerState.CLOSED


# --- headers ---


def test_traceparent_and_authorization_are_forwarded(callee: Callee, key: str) -> None:
    def call(client: ServiceClient) -> Awaitable[Response]:
        return client.get(f"/scripted/{key}", authorization="Bearer t0k3n", headers={"X-Extra": "1"})

    run(callee.url, call, traceparent=lambda: TRACEPARENT)
    (headers,) = callee.headers(key)
    assert headers["traceparent"] == TRACEPARENT
    assert headers["authorization"] == "Bearer t0k3n"
    assert headers["x-extra"] == "1"


def test_no_traceparent_or_authorization_unless_given(callee: Callee, key: str) -> None:
    run(callee.url, lambda client: client.get(f"/scripted/{key}"), traceparent=lambda: None)
    run(callee.url, lambda client: client.get(f"/scripted/{key}"))
    for headers in callee.headers(key):
        assert "traceparent" not in headers
        assert "authorization" not in headers


def test_the_traceparent_is_read_for_every_request(callee: Callee, key: str) -> None:
    parents = iter([f"00-{n:032x}-00f067aa0ba902b7-01" for n in range(1, 4)])
    callee.script(key, Scripted(503))

    async def two_calls(client: ServiceClient) -> None:
        await client.get(f"/scripted/{key}")
        await client.get(f"/scripted/{key}")

    run(callee.url, two_calls, traceparent=lambda: next(parents))
    # One value per call (its retries carry the same one), a new one for the next call.
    assert [headers["traceparent"][3:35] for headers in callee.headers(key)] == [f"{1:032x}"] * 2 + [f"{2:032x}"]


def test_a_json_body_is_sent_with_its_content_type(callee: Callee, key: str) -> None:
    response = run(callee.url, lambda client: client.put(f"/echo/{key}/x", json={"note": "caf\u00e9", "n": [1, 2]}))
    echo = response.json()
    assert echo["method"] == "PUT"
    assert echo["content_type"] == "application/json"
    assert orjson.loads(echo["body"]) == {"note": "caf\u00e9", "n": [1, 2]}


def test_params_become_the_query_and_the_path_is_percent_encoded(callee: Callee, key: str) -> None:
    params = {"order_id": "a&b", "tag": ["x", "y z"]}
    echo = run(callee.url, lambda client: client.get(f"/echo/{key}/two words/caf\u00e9", params=params)).json()
    assert echo["raw_path"] == f"/echo/{key}/two%20words/caf%C3%A9"
    assert echo["query"] == "order_id=a%26b&tag=x&tag=y+z"
    assert echo["body"] == ""


def test_responses_carry_what_callers_read(callee: Callee, key: str) -> None:
    response = run(callee.url, lambda client: client.delete(f"/echo/{key}/x"))
    assert response.status_code == 200
    assert response.headers["x-callee"] == response.headers["X-Callee"] == "echo"
    assert response.headers.get("Content-Type") == "application/json"
    assert response.json()["method"] == "DELETE"
    assert response.text == response.content.decode()
    assert response.url == f"{callee.url}/echo/{key}/x"


def test_calls_share_one_keep_alive_connection(callee: Callee, key: str) -> None:
    async def ports(client: ServiceClient) -> set[int]:
        return {(await client.get(f"/echo/{key}/x")).json()["client_port"] for _ in range(5)}

    assert len(run(callee.url, ports)) == 1


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-Note": "a\r\nX-Injected: 1"}, "allowed: Latin-1 text without control characters"),
        ({"Bad Name": "1"}, "header name 'Bad Name'; allowed: a token"),
        ({"Content-Length": "0"}, "is set by the client itself"),
    ],
)
def test_bad_headers_are_refused_before_any_call(
    callee: Callee, key: str, headers: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run(callee.url, lambda client: client.get(f"/echo/{key}/x", headers=headers))
    assert callee.hits(key) == 0


def test_the_base_url_prefix_is_kept(callee: Callee, key: str) -> None:
    response = run(f"{callee.url}/scripted", lambda client: client.get(f"/{key}"))
    assert response.json() == {"ok": True, "method": "GET"}


# --- bad input ---


@pytest.mark.parametrize("path", ["scripted/x", "//evil.example/x", "http://evil.example/x"])
def test_paths_must_be_relative_to_the_callee(callee: Callee, path: str) -> None:
    with pytest.raises(ValueError, match="path must start with a single '/'"):
        run(callee.url, lambda client: client.get(path))


@pytest.mark.parametrize("base_url", ["products:8082", "ftp://products", "http://", "http://products/?a=1"])
def test_base_url_must_be_http_with_a_host(base_url: str) -> None:
    with pytest.raises(ValueError, match="base URL must be http"):
        ServiceClient("products", base_url)


@pytest.mark.parametrize("key_value", ["", "x" * 256, "caf\u00e9", "a\nb"])
def test_idempotency_key_must_be_printable_ascii(callee: Callee, key_value: str) -> None:
    with pytest.raises(ValueError, match="Idempotency-Key must be"):
        run(callee.url, lambda client: client.post("/scripted/x", idempotency_key=key_value))


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: Timeouts(read=0), "Timeouts.read must be > 0"),
        (lambda: RetryPolicy(attempts=0), "attempts must be >= 1"),
        (lambda: RetryPolicy(budget_seconds=0), "budget_seconds must be > 0"),
        (lambda: RetryPolicy(wait_initial=2, wait_max=1), "wait_initial <= wait_max"),
        (lambda: BreakerPolicy(failure_ratio=0), "failure_ratio must be in"),
        (lambda: BreakerPolicy(minimum_calls=0), "minimum_calls must be >= 1"),
        (lambda: BreakerPolicy(failure_threshold=0), "failure_threshold must be >= 1"),
        (lambda: BreakerPolicy(cooldown_seconds=0), "cooldown_seconds must be > 0"),
        (lambda: BreakerPolicy(half_open_calls=0), "half_open_calls must be >= 1"),
        (lambda: BreakerPolicy(window_seconds=-1), "window_seconds must be > 0"),
    ],
)
def test_policies_reject_bad_values(factory: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def test_pool_limits_and_timeouts_reach_the_connection_pool(callee: Callee) -> None:
    async def pool_settings(client: ServiceClient) -> tuple[Any, ...]:
        pool = client.http
        return (
            pool.max_connections,
            pool.max_idle_connections,
            pool.idle_seconds,
            pool.connect_timeout,
            pool.read_timeout,
        )

    limits = PoolLimits(max_connections=7, max_keepalive_connections=3, keepalive_expiry=2.5)
    timeouts = Timeouts(connect=0.25, read=1.5, total=2.0)
    assert run(callee.url, pool_settings, limits=limits, timeouts=timeouts) == (7, 3, 2.5, 0.25, 1.5)


# --- Retry-After parsing ---


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("3", now) == 3.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
    assert retry_after_seconds("-1", now) is None


# --- breaker transitions, with an injected clock ---


def make_breaker(clock: FakeClock, **policy: Any) -> CircuitBreaker:
    return CircuitBreaker("payments", BreakerPolicy(**policy), clock=clock)


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record(breaker.acquire(), success=False)


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record(breaker.acquire(), success=True)


def test_ratio_opens_only_over_the_minimum_of_calls() -> None:
    breaker = make_breaker(FakeClock(), minimum_calls=4, failure_ratio=0.5)
    fail(breaker, 3)
    assert breaker.state is BreakerState.CLOSED  # 3 of 3 failed, but fewer than 4 calls
    succeed(breaker, 1)
    assert breaker.state is BreakerState.CLOSED  # successes never open it
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN  # 4 of 5 failed


def test_ratio_below_the_threshold_stays_closed() -> None:
    breaker = make_breaker(FakeClock(), minimum_calls=4, failure_ratio=0.5)
    for _ in range(10):
        succeed(breaker, 2)
        fail(breaker, 1)
    assert breaker.state is BreakerState.CLOSED


def test_failure_count_opens_within_the_window_only() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, failure_threshold=3, minimum_calls=1000, window_seconds=10)
    fail(breaker, 2)
    clock.advance(10)  # those two leave the window
    succeed(breaker, 5)
    fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN


def test_open_rejects_then_half_opens_after_the_cooldown() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, minimum_calls=1, cooldown_seconds=5)
    fail(breaker)
    with pytest.raises(DependencyUnavailable, match=r"circuit open \(retry in 5.0s\)") as raised:
        breaker.acquire()
    assert raised.value.service == "payments"
    clock.advance(4.9)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN


def test_half_open_limits_trial_calls_and_a_success_closes() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, minimum_calls=1, cooldown_seconds=5, half_open_calls=2)
    fail(breaker)
    clock.advance(5)
    first, second = breaker.acquire(), breaker.acquire()
    with pytest.raises(DependencyUnavailable, match="trial call in progress"):
        breaker.acquire()
    breaker.record(first, success=True)
    assert breaker.state is BreakerState.CLOSED
    breaker.record(second, success=False)  # from the half-open generation: ignored
    assert breaker.state is BreakerState.CLOSED


def test_a_failed_trial_reopens_for_a_new_cooldown() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, minimum_calls=1, cooldown_seconds=5)
    fail(breaker)
    clock.advance(5)
    fail(breaker)
    assert breaker.state is BreakerState.OPEN
    clock.advance(4.9)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN


def test_a_released_trial_permit_frees_its_slot() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, minimum_calls=1, cooldown_seconds=5)
    fail(breaker)
    clock.advance(5)
    breaker.release(breaker.acquire())
    succeed(breaker)
    assert breaker.state is BreakerState.CLOSED


def test_results_of_calls_started_before_a_transition_are_ignored() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, minimum_calls=2, failure_ratio=1.0, cooldown_seconds=5)
    slow_success, slow_failure = breaker.acquire(), breaker.acquire()
    fail(breaker, 2)
    assert breaker.state is BreakerState.OPEN
    breaker.record(slow_success, success=True)
    assert breaker.state is BreakerState.OPEN
    clock.advance(4)
    breaker.record(slow_failure, success=False)
    clock.advance(1)  # the cooldown runs from the opening, not from the late failure
    assert breaker.state is BreakerState.HALF_OPEN


def test_closing_starts_a_fresh_window() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, minimum_calls=2, failure_ratio=0.5, cooldown_seconds=5)
    fail(breaker, 2)
    clock.advance(5)
    succeed(breaker)
    fail(breaker)  # 1 of 1 since closing: below the minimum of calls
    assert breaker.state is BreakerState.CLOSED


def test_transitions_are_logged_with_the_callee(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, minimum_calls=1, cooldown_seconds=5)
    with caplog.at_level(logging.INFO, logger="services.shop.common.breaker"):
        fail(breaker)
        clock.advance(5)
        succeed(breaker)
    transitions = [(r.levelname, r.callee, r.from_state, r.to_state) for r in caplog.records]  # pyright: ignore[reportAttributeAccessIssue]
    assert transitions == [
        ("WARNING", "payments", "closed", "open"),
        ("INFO", "payments", "open", "half_open"),
        ("INFO", "payments", "half_open", "closed"),
    ]


def test_snapshot_reports_state_and_counters() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, minimum_calls=3, cooldown_seconds=5, window_seconds=10)
    succeed(breaker)
    fail(breaker)
    assert breaker.snapshot() == {
        "callee": "payments",
        "state": "closed",
        "calls_in_window": 2,
        "failures_in_window": 1,
    }
    clock.advance(10)
    assert breaker.snapshot()["calls_in_window"] == 0
    fail(breaker, 3)
    clock.advance(2)
    snapshot = breaker.snapshot()
    assert snapshot["state"] == "open"
    assert snapshot["retry_in_seconds"] == 3.0
