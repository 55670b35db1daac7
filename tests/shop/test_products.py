"""The products service against real PostgreSQL and Redis, through its HTTP app (httpx + ASGITransport, the app's
own lifespan): reservations (no overselling under 200 concurrent requests, idempotency, expiry), keyset
pagination and search, and the cache (hits, invalidation by stock changes, stampedes, stale data when PostgreSQL
is down or slow)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg import sql

from services.fauxqs import free_port
from services.shop.products import catalog, seed
from services.shop.products.app import create_app
from services.shop.products.reads import LocalCache, SingleFlight
from services.shop.products.routes import ProductsState
from services.shop.products.seed import NewProduct, generate_products, insert_products
from services.shop.products.settings import ProductsSettings
from tests.services.helpers import TcpProxy
from tests.shop.conftest import ADMIN_DSN

Client = httpx.AsyncClient
Body = Callable[[Client, ProductsState], Awaitable[None]]


def products_settings(make_service_settings: Any, **overrides: Any) -> ProductsSettings:
    """Settings for a products service with a schema (and Redis prefix) of its own."""
    values: dict[str, Any] = {"RESERVATION_SWEEP_SECONDS": 3600, "DB_POOL_MAX": 8, "DB_POOL_TIMEOUT_SECONDS": 10}
    schema = f"products_{uuid.uuid4().hex[:8]}"
    return make_service_settings("products", ProductsSettings, schema=schema, **(values | overrides))


@pytest.fixture
def settings(make_service_settings: Any) -> ProductsSettings:
    return products_settings(make_service_settings)


@asynccontextmanager
async def serving(settings: ProductsSettings) -> AsyncIterator[tuple[Client, ProductsState]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://products", timeout=30) as client:
            yield client, app.state.products


def run(settings: ProductsSettings, body: Body) -> None:
    async def main() -> None:
        async with serving(settings) as (client, state):
            await body(client, state)

    asyncio.run(main())


def product(name: str, stock: int, *, category: str = "kitchen", description: str = "") -> NewProduct:
    return NewProduct(
        sku=f"T-{uuid.uuid4().hex[:12]}",
        name=name,
        description=description or f"{name} for testing",
        category=category,
        price_cents=1299,
        stock=stock,
    )


async def create(state: ProductsState, *products: NewProduct) -> list[UUID]:
    async with state.pool.connection() as conn:
        ids = await insert_products(conn, products)
    await state.reader.catalog_changed()
    return ids


async def available(state: ProductsState, product_id: UUID) -> int:
    async with state.pool.connection() as conn:
        row = await (await conn.execute("SELECT available FROM stock WHERE product_id = %s", (product_id,))).fetchone()
    assert row is not None
    return row["available"]


async def held_units(state: ProductsState, product_id: UUID) -> int:
    async with state.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT coalesce(sum(i.quantity), 0) AS units FROM reservation_items i JOIN reservations r USING (order_id)"
            " WHERE i.product_id = %s AND r.status IN ('held', 'committed')",
            (product_id,),
        )
        row = await cursor.fetchone()
    assert row is not None
    return row["units"]


async def reserve(client: Client, items: list[tuple[UUID, int]], **extra: Any) -> httpx.Response:
    order_id = extra.pop("order_id", uuid.uuid4())
    lines = [{"product_id": str(pid), "quantity": qty} for pid, qty in items]
    return await client.post("/reservations", json={"order_id": str(order_id), "items": lines, **extra})


async def backdate(state: ProductsState, order_id: str) -> None:
    """Put a reservation past its expiry (instead of waiting for it)."""
    async with state.pool.connection() as conn:
        await conn.execute(
            "UPDATE reservations SET expires_at = now() - interval '1 second' WHERE order_id = %s", (order_id,)
        )


# --- Reservations ---


def test_two_hundred_concurrent_reservations_for_fifty_units_take_exactly_fifty(settings: ProductsSettings) -> None:
    async def body(client: Client, state: ProductsState) -> None:
        scarce, plenty = await create(state, product("Scarce Kettle", 50), product("Plenty Mug", 1000))

        async def one() -> httpx.Response:
            lines = [(scarce, 1), (plenty, 1)]
            random.shuffle(lines)  # lines in either order: rows are still locked in product id order
            return await reserve(client, lines)

        responses = await asyncio.gather(*(one() for _ in range(200)))
        statuses = Counter(response.status_code for response in responses)
        assert statuses == {201: 50, 409: 150}, statuses  # no 5xx: no deadlock, no pool exhaustion
        refused = [response.json() for response in responses if response.status_code == 409]
        assert {(body["error"], body["product_id"]) for body in refused} == {("insufficient_stock", str(scarce))}
        assert await available(state, scarce) == 0
        assert await held_units(state, scarce) == 50
        assert await available(state, plenty) == 950  # refused reservations took nothing (all or nothing)
        assert await held_units(state, plenty) == 50

    run(settings, body)


def test_reservation_is_all_or_nothing_and_names_the_short_product(settings: ProductsSettings) -> None:
    async def body(client: Client, state: ProductsState) -> None:
        knife, board = await create(state, product("Chef Knife", 10), product("Cutting Board", 1))
        response = await reserve(client, [(knife, 5), (board, 2)])
        assert response.status_code == 409
        assert response.json()["error"] == "insufficient_stock"
        assert response.json()["product_id"] == str(board)
        assert (await available(state, knife), await available(state, board)) == (10, 1)

        unknown = uuid.uuid4()
        response = await reserve(client, [(knife, 1), (unknown, 1)])
        assert response.status_code == 422
        assert response.json() | {"detail": ""} == {
            "error": "unknown_product",
            "product_id": str(unknown),
            "detail": "",
        }
        assert await available(state, knife) == 10

    run(settings, body)


def test_reservation_is_idempotent_on_the_order_id(settings: ProductsSettings) -> None:
    async def body(client: Client, state: ProductsState) -> None:
        [pan] = await create(state, product("Cast Iron Pan", 20))
        order_id = uuid.uuid4()
        first = await reserve(client, [(pan, 2), (pan, 1)], order_id=order_id, ttl_seconds=300)
        assert first.status_code == 201, first.text
        assert first.json()["status"] == "held"
        assert first.json()["items"] == [{"product_id": str(pan), "quantity": 3}]  # lines of one product merged

        again = await reserve(client, [(pan, 3)], order_id=order_id, ttl_seconds=300)
        assert again.status_code == 200
        assert again.json() == first.json()
        assert await available(state, pan) == 17  # taken once

        different = await reserve(client, [(pan, 4)], order_id=order_id)
        assert different.status_code == 422
        assert different.json()["error"] == "reservation_mismatch"

        concurrent_order = uuid.uuid4()
        retries = await asyncio.gather(*(reserve(client, [(pan, 1)], order_id=concurrent_order) for _ in range(20)))
        assert sorted(response.status_code for response in retries) == [200] * 19 + [201]
        assert await available(state, pan) == 16

    run(settings, body)


def test_commit_and_release_follow_the_reservation_lifecycle(settings: ProductsSettings) -> None:
    async def body(client: Client, state: ProductsState) -> None:
        [mixer] = await create(state, product("Stand Mixer", 10))
        sold, dropped = uuid.uuid4(), uuid.uuid4()
        assert (await reserve(client, [(mixer, 2)], order_id=sold)).status_code == 201
        assert (await reserve(client, [(mixer, 3)], order_id=dropped)).status_code == 201
        assert await available(state, mixer) == 5

        for _ in range(2):  # idempotent
            response = await client.post(f"/reservations/{sold}/commit")
            assert response.status_code == 200
            assert response.json() == {"order_id": str(sold), "status": "committed"}
        refused = await client.delete(f"/reservations/{sold}")
        assert refused.status_code == 409
        assert refused.json()["error"] == "reservation_committed"

        for _ in range(2):  # idempotent
            assert (await client.delete(f"/reservations/{dropped}")).status_code == 204
        assert await available(state, mixer) == 8  # the released 3 are back, the sold 2 are not
        refused = await client.post(f"/reservations/{dropped}/commit")
        assert refused.status_code == 409
        assert refused.json()["error"] == "reservation_released"
        again = await reserve(client, [(mixer, 3)], order_id=dropped)
        assert again.status_code == 409
        assert again.json()["error"] == "reservation_released"

        status = await client.get(f"/reservations/{dropped}")
        assert status.json()["status"] == "released"
        missing = uuid.uuid4()
        assert (await client.get(f"/reservations/{missing}")).status_code == 404
        assert (await client.post(f"/reservations/{missing}/commit")).status_code == 404
        assert await available(state, mixer) == 8

    run(settings, body)


def test_a_release_that_arrives_before_its_reservation_keeps_it_from_taking_stock(settings: ProductsSettings) -> None:
    async def body(client: Client, state: ProductsState) -> None:
        [kettle] = await create(state, product("Kettle", 5))
        order_id = uuid.uuid4()
        assert (await client.delete(f"/reservations/{order_id}")).status_code == 204
        late = await reserve(client, [(kettle, 1)], order_id=order_id)
        assert late.status_code == 409
        assert late.json()["error"] == "reservation_released"
        assert await available(state, kettle) == 5

    run(settings, body)


def test_a_release_racing_its_reservation_releases_it(settings: ProductsSettings) -> None:
    async def body(client: Client, state: ProductsState) -> None:
        [toaster] = await create(state, product("Toaster", 6))
        order_id = uuid.uuid4()
        async with await psycopg.AsyncConnection.connect(f"{ADMIN_DSN} dbname={settings.DB_NAME}") as other:
            await other.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(settings.DB_SCHEMA)))
            # The reservation is being made (not committed yet) when the release arrives: the release cannot see
            # it, and its tombstone must not win over it either.
            await other.execute(
                "SELECT * FROM reserve_stock(%s, 'h', 600, %s::uuid[], %s::integer[])", (order_id, [toaster], [2])
            )
            release = asyncio.ensure_future(client.delete(f"/reservations/{order_id}"))
            await asyncio.sleep(0.2)
            await other.commit()
        assert (await release).status_code == 204
        assert (await client.get(f"/reservations/{order_id}")).json()["status"] == "released"
        assert await available(state, toaster) == 6

    run(settings, body)


def test_expired_reservations_return_their_stock(settings: ProductsSettings) -> None:
    async def body(client: Client, state: ProductsState) -> None:
        [press] = await create(state, product("French Press", 100))
        expired_ids = []
        for _ in range(30):
            response = await reserve(client, [(press, 2)], ttl_seconds=600)
            expired_ids.append(response.json()["order_id"])
            await backdate(state, expired_ids[-1])
        kept = (await reserve(client, [(press, 5)])).json()["order_id"]
        assert await available(state, press) == 35

        # Three sweepers at once (as three tasks would): each reservation is expired exactly once.
        counts = await asyncio.gather(*(state.sweeper.sweep() for _ in range(3)))
        assert sum(counts) == 30
        assert await available(state, press) == 95
        assert (await client.get(f"/reservations/{expired_ids[0]}")).json()["status"] == "expired"
        refused = await client.post(f"/reservations/{expired_ids[0]}/commit")
        assert refused.status_code == 409
        assert refused.json()["error"] == "reservation_expired"
        assert (await client.get(f"/reservations/{kept}")).json()["status"] == "held"

        # Committing a reservation past its expiry that no sweeper has seen yet expires it on the spot.
        await backdate(state, kept)
        refused = await client.post(f"/reservations/{kept}/commit")
        assert refused.status_code == 409
        assert refused.json()["error"] == "reservation_expired"
        assert await available(state, press) == 100
        assert await state.sweeper.sweep() == 0

    run(settings, body)


def test_the_background_sweeper_expires_reservations(make_service_settings: Any) -> None:
    settings = products_settings(make_service_settings, RESERVATION_SWEEP_SECONDS=0.1)

    async def body(client: Client, state: ProductsState) -> None:
        [bottle] = await create(state, product("Water Bottle", 10))
        order_id = (await reserve(client, [(bottle, 4)])).json()["order_id"]
        await backdate(state, order_id)
        for _ in range(200):  # bounded: 200 x 50 ms
            if (await client.get(f"/reservations/{order_id}")).json()["status"] == "expired":
                break
            await asyncio.sleep(0.05)
        assert (await client.get(f"/reservations/{order_id}")).json()["status"] == "expired"
        assert await available(state, bottle) == 10

    run(settings, body)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"items": [{"product_id": str(uuid.uuid4()), "quantity": 1}], "ttl_seconds": 3601}, "ttl_seconds"),
        ({"items": [{"product_id": str(uuid.uuid4()), "quantity": 0}]}, "quantity"),
        ({"items": []}, "items"),
        ({"items": [{"product_id": "not-a-uuid", "quantity": 1}]}, "product_id"),
    ],
)
def test_invalid_reservation_requests_are_refused_naming_the_field(
    settings: ProductsSettings, body: dict[str, Any], problem: str
) -> None:
    async def check(client: Client, _: ProductsState) -> None:
        response = await client.post("/reservations", json={"order_id": str(uuid.uuid4())} | body)
        assert response.status_code == 422
        assert problem in str([error["loc"] for error in response.json()["detail"]])

    run(settings, check)


# --- Catalog: pagination and search ---


async def all_pages(client: Client, between: Callable[[], Awaitable[None]] | None = None, **params: Any) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        response = await client.get("/products", params=params | ({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        ids += [item["id"] for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return ids
        if between is not None:
            await between()
    raise AssertionError("pagination did not end")


def test_pagination_is_complete_and_stable_while_products_are_inserted(settings: ProductsSettings) -> None:
    async def body(client: Client, state: ProductsState) -> None:
        names = [f"{letter} item {n}" for letter in "BDFHJ" for n in range(9)]
        original = {str(pid) for pid in await create(state, *(product(name, 10) for name in names))}
        inserted: list[str] = []

        async def insert_some() -> None:
            # Before, among and after the rows already paged through.
            new = [product(f"{letter} new {uuid.uuid4().hex[:6]}", 10) for letter in "ACEGIK"]
            inserted.extend(str(pid) for pid in await create(state, *new))

        seen = await all_pages(client, insert_some, limit=7)
        assert len(seen) == len(set(seen))  # no product twice
        assert original <= set(seen)  # none that existed at the start skipped
        assert set(seen) <= original | set(inserted)
        listing = await all_pages(client, limit=100)
        assert set(listing) == original | set(inserted)

        first = (await client.get("/products", params={"limit": 5})).json()["items"]
        assert [item["name"] for item in first] == sorted(item["name"] for item in first)
        assert set(first[0]) == {"id", "sku", "name", "description", "category", "price_cents", "currency", "available"}

    run(settings, body)


def test_category_filter_and_full_text_search(settings: ProductsSettings) -> None:
    async def body(client: Client, state: ProductsState) -> None:
        espresso, grinder, hose = await create(
            state,
            product("Espresso Machine", 5, description="Makes espresso and cappuccino"),
            product("Coffee Grinder", 5, description="Burr grinder for espresso beans"),
            product("Garden Hose", 5, category="garden", description="Thirty metres, kink free"),
        )
        await create(state, *(product(f"Filler {n}", 1, category="garden") for n in range(12)))

        garden = await all_pages(client, category="garden", limit=5)
        assert len(garden) == 13
        assert str(hose) in garden

        found = (await client.get("/products", params={"q": "espresso"})).json()["items"]
        assert [item["id"] for item in found] == [str(espresso), str(grinder)]  # the name match ranks first
        assert (await client.get("/products", params={"q": "espresso", "category": "garden"})).json()["items"] == []
        hose_hits = await client.get("/products", params={"q": "kink free hoses"})
        assert [item["id"] for item in hose_hits.json()["items"]] == [str(hose)]  # stemmed
        for nothing in ("the", "zzzyzx", '"unbalanced', "-espresso"):
            response = await client.get("/products", params={"q": nothing, "category": "kitchen"})
            assert response.status_code == 200
            assert str(espresso) not in [item["id"] for item in response.json()["items"]]

        fillers = await all_pages(client, q="filler", limit=5)
        assert len(fillers) == len(set(fillers)) == 12

    run(settings, body)


def test_a_cursor_is_refused_with_another_query_or_when_garbled(settings: ProductsSettings) -> None:
    async def body(client: Client, state: ProductsState) -> None:
        await create(state, *(product(f"Bowl {n}", 1) for n in range(3)))
        cursor = (await client.get("/products", params={"limit": 1, "category": "kitchen"})).json()["next_cursor"]
        assert cursor is not None
        for params in ({"cursor": cursor, "category": "garden"}, {"cursor": cursor, "q": "bowl"}, {"cursor": "x!"}):
            response = await client.get("/products", params=params)
            assert response.status_code == 400
            assert response.json()["error"] == "invalid_cursor"
        for params in ({"limit": 0}, {"limit": 101}, {"category": "Not A Category"}, {"q": "a\x00b"}):
            assert (await client.get("/products", params=params)).status_code == 422

    run(settings, body)


# --- Cache ---


def test_cache_hits_and_invalidation_by_stock_changes(settings: ProductsSettings) -> None:
    async def body(client: Client, state: ProductsState) -> None:
        [grill] = await create(state, product("Charcoal Grill", 40))
        first = await client.get(f"/products/{grill}")
        assert (first.status_code, first.headers["X-Cache"]) == (200, "miss")
        assert first.json()["available"] == 40
        second = await client.get(f"/products/{grill}")
        assert (second.headers["X-Cache"], second.json()) == ("hit", first.json())

        page = await client.get("/products", params={"limit": 10})
        assert page.headers["X-Cache"] == "miss"
        assert (await client.get("/products", params={"limit": 10})).headers["X-Cache"] == "hit"

        order_id = (await reserve(client, [(grill, 15)])).json()["order_id"]
        after = await client.get(f"/products/{grill}")
        assert (after.headers["X-Cache"], after.json()["available"]) == ("miss", 25)
        page = await client.get("/products", params={"limit": 10})
        assert [item["available"] for item in page.json()["items"] if item["id"] == str(grill)] == [25]
        assert (await client.get(f"/products/{grill}")).headers["X-Cache"] == "hit"

        await client.delete(f"/reservations/{order_id}")
        assert (await client.get(f"/products/{grill}")).json()["available"] == 40

        [new] = await create(state, product("Aaa First Product", 3))  # bumps the catalog version
        page = await client.get("/products", params={"limit": 10})
        assert page.headers["X-Cache"] == "miss"
        assert page.json()["items"][0]["id"] == str(new)

        assert (await client.get(f"/products/{uuid.uuid4()}")).status_code == 404

    run(settings, body)


def test_a_read_that_fetched_old_stock_cannot_overwrite_a_newer_invalidation(settings: ProductsSettings) -> None:
    async def body(client: Client, state: ProductsState) -> None:
        [lamp] = await create(state, product("Desk Lamp", 9))
        async with state.pool.connection() as conn:
            old = (await catalog.fetch_products(conn, [lamp]))[lamp]  # read before the change...
        assert (await reserve(client, [(lamp, 4)])).status_code == 201  # ...which marks the entry stale
        await state.cache.store_products([old])  # ...stored after it: refused, it is older
        response = await client.get(f"/products/{lamp}")
        assert (response.headers["X-Cache"], response.json()["available"]) == ("miss", 5)

    run(settings, body)


def test_concurrent_misses_of_a_hot_key_make_one_database_read(
    make_service_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A generous Redis timeout: on a loaded test machine a hundred requests in one event loop can wait longer than
    # the default 0.5 s for a connection, and a Redis failure rightly sends a request to PostgreSQL.
    settings = products_settings(make_service_settings, REDIS_TIMEOUT_SECONDS=5)
    reads: list[list[UUID]] = []
    real_fetch = catalog.fetch_products

    async def counting_fetch(conn: Any, ids: list[UUID]) -> Any:
        reads.append(ids)
        await asyncio.sleep(0.05)  # keep the flight open while the other requests arrive
        return await real_fetch(conn, ids)

    monkeypatch.setattr(catalog, "fetch_products", counting_fetch)

    async def body(client: Client, state: ProductsState) -> None:
        [hot] = await create(state, product("Hot Item", 5))
        responses = await asyncio.gather(*(client.get(f"/products/{hot}") for _ in range(100)))
        assert {response.json()["available"] for response in responses} == {5}
        assert reads == [[hot]]

    run(settings, body)


def test_processes_share_the_redis_cache_and_see_each_others_stock_changes(make_service_settings: Any) -> None:
    settings = products_settings(make_service_settings, CACHE_LOCAL_SECONDS=0.2)

    async def main() -> None:
        async with serving(settings) as (first, state), serving(settings) as (second, _):
            [tent] = await create(state, product("Camping Tent", 30))
            assert (await first.get(f"/products/{tent}")).headers["X-Cache"] == "miss"
            shared = await second.get(f"/products/{tent}")  # the other process: a Redis hit
            assert (shared.headers["X-Cache"], shared.json()["available"]) == ("hit", 30)

            assert (await reserve(first, [(tent, 7)])).status_code == 201
            assert (await first.get(f"/products/{tent}")).json()["available"] == 23  # at once where it changed
            await asyncio.sleep(0.25)  # past CACHE_LOCAL_SECONDS: the other process's local copy is gone
            assert (await second.get(f"/products/{tent}")).json()["available"] == 23

    asyncio.run(main())


def test_the_local_cache_expires_is_bounded_and_refuses_reads_older_than_an_invalidation() -> None:
    now = [0.0]
    local = LocalCache(ttl_seconds=1.0, max_entries=2, clock=lambda: now[0])
    local.put("a", b"1", local.generation)
    assert local.get("a") == b"1"
    now[0] = 1.0
    assert local.get("a") is None  # expired

    read_at = local.generation
    local.invalidate(["b"])  # something changed while a read was in flight...
    local.put("b", b"old", read_at)  # ...so what it read is not kept
    assert local.get("b") is None

    for key in ("c", "d", "e"):
        local.put(key, key.encode(), local.generation)
    assert (len(local), local.get("c"), local.get("e")) == (2, None, b"e")  # the oldest went first

    local.invalidate_where(lambda key: key == "e")
    assert (local.get("d"), local.get("e")) == (b"d", None)

    off = LocalCache(ttl_seconds=0, max_entries=10)
    off.put("a", b"1", off.generation)
    assert off.get("a") is None


def test_single_flight_survives_a_cancelled_waiter() -> None:
    async def main() -> None:
        flights = SingleFlight()
        calls = 0
        release = asyncio.Event()

        async def work() -> str:
            nonlocal calls
            calls += 1
            await release.wait()
            return "done"

        first = asyncio.ensure_future(flights.run("k", work))
        second = asyncio.ensure_future(flights.run("k", work))
        await asyncio.sleep(0)
        first.cancel()
        release.set()
        assert await second == "done"
        assert calls == 1
        assert len(flights) == 0

    asyncio.run(main())


def test_reads_degrade_to_stale_cache_while_the_database_is_down(make_service_settings: Any) -> None:
    proxy = TcpProxy(5432)
    proxy.start()
    settings = products_settings(
        make_service_settings, DB_PORT=proxy.port, DB_READ_TIMEOUT_SECONDS=0.5, DB_BREAKER_COOLDOWN_SECONDS=0.3
    )

    async def body(client: Client, state: ProductsState) -> None:
        chair, desk = await create(state, product("Office Chair", 12), product("Standing Desk", 3))
        for path in (f"/products/{chair}", "/products?limit=5"):
            assert (await client.get(path)).status_code == 200  # cached
        assert (await reserve(client, [(chair, 2)])).status_code == 201  # marks the chair's entry stale
        [lamp] = await create(state, product("Floor Lamp", 4))  # never read: never cached

        proxy.stop()
        # Concurrent reads share one failed PostgreSQL read (single flight) and all answer from the cache.
        for stale in await asyncio.gather(*(client.get(f"/products/{chair}") for _ in range(5))):
            assert (stale.status_code, stale.headers["X-Cache"]) == (200, "stale")
            assert stale.headers["Warning"] == '110 - "Response is Stale"'
            assert stale.json()["available"] == 12  # the last copy cached, from before the reservation
        page = await client.get("/products", params={"limit": 5})
        assert (page.status_code, page.headers["X-Cache"]) == (200, "stale")
        assert {item["id"] for item in page.json()["items"]} == {str(chair), str(desk)}
        never_cached = await client.get(f"/products/{lamp}")
        assert never_cached.status_code == 503
        assert never_cached.json()["error"] == "database_unavailable"
        assert never_cached.headers["Retry-After"] == "1"
        assert (await client.get("/products", params={"q": "chair"})).status_code == 503

        proxy.start()
        fresh = await client.get(f"/products/{chair}")
        for _ in range(100):  # bounded: the breaker lets a trial read through after its cooldown
            fresh = await client.get(f"/products/{chair}")
            if fresh.headers["X-Cache"] != "stale":
                break
            await asyncio.sleep(0.05)
        assert (fresh.headers["X-Cache"], fresh.json()["available"]) == ("miss", 10)

    try:
        run(settings, body)
    finally:
        proxy.stop()


def test_a_slow_database_read_is_answered_from_the_stale_cache(make_service_settings: Any) -> None:
    settings = products_settings(make_service_settings, DB_READ_TIMEOUT_SECONDS=0.3)

    async def body(client: Client, state: ProductsState) -> None:
        [rug] = await create(state, product("Wool Rug", 8))
        assert (await client.get(f"/products/{rug}")).status_code == 200
        assert (await reserve(client, [(rug, 1)])).status_code == 201  # the entry is now stale
        # Another session holds a lock that blocks every read of products: PostgreSQL is "slow".
        with psycopg.connect(f"{ADMIN_DSN} dbname={settings.DB_NAME}", autocommit=True) as admin:
            with admin.transaction():
                lock = sql.SQL("LOCK TABLE {}.products IN ACCESS EXCLUSIVE MODE")
                admin.execute(lock.format(sql.Identifier(settings.DB_SCHEMA)))
                slow = await client.get(f"/products/{rug}")
            assert (slow.status_code, slow.headers["X-Cache"], slow.json()["available"]) == (200, "stale", 8)

    run(settings, body)


def test_without_redis_reads_go_to_postgres(make_service_settings: Any) -> None:
    settings = products_settings(
        make_service_settings, REDIS_PORT=free_port(), REDIS_TIMEOUT_SECONDS=0.2, CACHE_LOCAL_SECONDS=0
    )

    async def body(client: Client, state: ProductsState) -> None:
        [vase] = await create(state, product("Glass Vase", 6))
        for _ in range(2):
            response = await client.get(f"/products/{vase}")
            assert (response.status_code, response.headers["X-Cache"], response.json()["available"]) == (200, "miss", 6)
        assert (await client.get("/products")).status_code == 200
        assert (await reserve(client, [(vase, 1)])).status_code == 201
        assert (await client.get(f"/products/{vase}")).json()["available"] == 5

    run(settings, body)


# --- Seed ---


def test_the_generated_catalog_is_deterministic_and_realistic() -> None:
    products = generate_products(400)
    assert products == generate_products(400)
    assert generate_products(10, start=390) == products[390:]
    assert len({p.sku for p in products}) == 400
    assert len({p.category for p in products}) == 8
    assert all(50 <= p.stock <= 500 for p in products)
    assert all(p.price_cents > 0 and p.price_cents % 100 == 99 for p in products)
    assert len({p.name for p in products}) > 300


def test_seeding_creates_the_catalog_once(settings: ProductsSettings) -> None:
    assert asyncio.run(seed.seed(settings, 150, rng_seed=7)) == 150
    assert asyncio.run(seed.seed(settings, 200, rng_seed=7)) == 50  # the first 150 exist already

    async def body(client: Client, _: ProductsState) -> None:
        listed = await all_pages(client, limit=100)
        assert len(listed) == 200
        electronics = await all_pages(client, category="electronics", limit=100)
        assert len(electronics) == 25

    run(settings, body)


@pytest.mark.parametrize("count", ["0", "1000001", "many"])
def test_seed_refuses_a_bad_count(count: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        seed.main(["--count", count])
    assert exit_info.value.code == 2
    assert "--count" in capsys.readouterr().err
