"""Load benchmark: 1,000 concurrent shoppers through the local gateway (issue 18).

    uv run python bench/shop_load.py --users 1000 --seconds 30 [--products 300] [--ramp-seconds 15]

Starts the whole shop with `ShopProcesses` (five services and the gateway, routes and throttling from
Pulumi.shop.yaml) on a throwaway database, seeds a catalog, and creates the accounts (one argon2 hash made with the
users service's own parameters, inserted directly: registration is not what this measures). Then every virtual user
arrives during the ramp; `--login-share` of them (default 20 %) log in through `POST /auth/token` (argon2, throttled
at the HTTP API's 40/s), the others are returning shoppers whose session token was issued before the run (signed with
the users service's key, as `/auth/token` signs). Until the end each browses (listings, searches,
product pages), checks out (`POST /orders` with an Idempotency-Key, retried with the same key after a 5xx or a
timeout, as a careful client does) and reads its order history, with a think time between actions. After the run it
waits for unfinished orders to settle and audits the databases. Prints one JSON document:

    {"users", "requests", "errors", "p50_ms", "p99_ms", "orders_completed", "orders_lost", "oversold",
     "double_charged"}

- `errors`: answers other than 2xx and the intended ones (429 from throttling, 409/422 business refusals such as
  out of stock), plus connection failures and timeouts.
- `orders_lost`: orders the shop accepted (201/202) that are missing or still unfinished after the drain.
- `oversold`: products whose held and committed reservations exceed the stock they were seeded with.
- `double_charged`: orders with more than one captured provider charge, or captured and not confirmed yet
  not refunded.
Targets on this 2-core machine (issue 18): 0 errors, p99 < 250 ms, 0 lost, 0 oversold, 0 double charges.
Figures: docs/shop.md ("Load"). The client is the shop's own lean HTTP/1.1 client (services/shop/common/http1.py),
one keep-alive connection per user, so the load generator takes little of the CPU it shares with the shop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.shop.common.auth import TokenSigner
from services.shop.common.database import pool_budget
from services.shop.common.http1 import ConnectionPool, HttpError
from services.shop.local import ADMIN_CONNINFO, ShopProcesses
from services.shop.products.seed import generate_products
from services.shop.routes import load_stack_config
from services.shop.users.app import password_hasher
from services.shop.users.settings import UsersSettings

PASSWORD = "correct horse battery staple 18"
DATABASE_MAX_CONNECTIONS = 200  # the stack's database.maxConnections (the default)
INTENDED = frozenset({429, 409, 422})
UNFINISHED = ("pending", "reserved", "payment_pending", "paid", "releasing", "refunding")
# Action weights per think cycle: what a shopper mostly does is look.
ACTIONS = ("list", "search", "product", "checkout", "history")
ACTION_WEIGHTS = (30, 15, 35, 12, 8)


@dataclass
class Stats:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    accepted_orders: set[str] = field(default_factory=set)
    by_route: dict[str, list[float]] = field(default_factory=dict)

    def record(self, started: float, status: int, route: str = "") -> None:
        elapsed = (time.perf_counter() - started) * 1000
        self.latencies_ms.append(elapsed)
        self.by_route.setdefault(route, []).append(elapsed)
        self.statuses[status] += 1

    def route_percentiles(self) -> dict[str, dict[str, float]]:
        """Requests, p50 and p99 per route (where the tail comes from; --verbose)."""
        return {
            route: {
                "n": len(values),
                "p50": round(percentile(values, 0.5), 1),
                "p99": round(percentile(values, 0.99), 1),
            }
            for route, values in sorted(self.by_route.items())
        }

    @property
    def errors(self) -> int:
        unexpected = sum(n for status, n in self.statuses.items() if status >= 300 and status not in INTENDED)
        return unexpected + sum(self.failures.values())


@dataclass(frozen=True)
class Plan:
    url: str
    users: int
    seconds: float
    ramp_seconds: float
    think_seconds: float
    product_ids: list[str]


REQUEST_TIMEOUT_SECONDS = 10.0
# Below the gateway's 65 s keep-alive: a user's connection is retired before the gateway would close it.
IDLE_CONNECTION_SECONDS = 60.0


async def timed(
    conn: ConnectionPool,
    stats: Stats,
    method: str,
    path: str,
    *,
    json: object | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, object]:
    started = time.perf_counter()
    sent = {"Accept": "application/json", **(headers or {})}
    if json is not None:
        sent["Content-Type"] = "application/json"
    body = None if json is None else orjson.dumps(json)
    try:
        response = await conn.request(method, path, headers=sent, body=body, timeout=REQUEST_TIMEOUT_SECONDS)
    except HttpError as exc:
        stats.failures[f"{method} {path.split('?')[0]}: {str(exc)[:60]}"] += 1
        return 0, None
    stats.record(started, response.status_code, f"{method} {route_of(path)}")
    answer = (
        response.json()
        if response.content and response.headers.get("content-type", "").startswith("application/json")
        else None
    )
    if response.status_code >= 300:
        code = (answer.get("error") or answer.get("message")) if isinstance(answer, dict) else None
        stats.refusals[f"{response.status_code} {method} {path.split('?')[0][:9]} {code}"] += 1
    return response.status_code, answer


def route_of(path: str) -> str:
    """`/products/<id>?…` -> `/products/{id}` (`/auth/token` stays as it is); a query's kind is kept."""
    bare, _, query = path.partition("?")
    parts = bare.split("/")
    route = "/".join(parts[:2] + (["{id}" if _looks_like_id(parts[2]) else parts[2]] if len(parts) > 2 else []))
    return route + (" search" if query.startswith("q=") else "")


def _looks_like_id(segment: str) -> bool:
    return any(character.isdigit() for character in segment)


async def login(conn: ConnectionPool, stats: Stats, email: str, deadline: float) -> str | None:
    """Log in, backing off (exponential, full jitter) while the gateway throttles or users sheds load."""
    for attempt in itertools.count():
        status, body = await timed(conn, stats, "POST", "/auth/token", json={"email": email, "password": PASSWORD})
        if status == 200 and isinstance(body, dict):
            return str(body["access_token"])
        if status not in (429, 503, 0) or time.monotonic() >= deadline:
            return None
        await asyncio.sleep(random.uniform(0, min(8.0, 0.25 * 2**attempt)))
    return None


async def checkout(conn: ConnectionPool, stats: Stats, plan: Plan, token: str, deadline: float) -> None:
    items = [
        {"product_id": product, "quantity": random.randint(1, 2)}
        for product in random.sample(plan.product_ids, random.randint(1, 3))
    ]
    key = str(uuid.uuid4())
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    for _ in range(5):  # the same key every time: a retry can never place a second order
        status, body = await timed(
            conn, stats, "POST", "/orders", json={"items": items, "currency": "USD"}, headers=headers
        )
        if status in (201, 202) and isinstance(body, dict):
            stats.accepted_orders.add(str(body["id"]))
            return
        if status in INTENDED - {429} or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.5)


async def shopper(index: int, session: str | None, plan: Plan, stats: Stats, started: float) -> None:
    await asyncio.sleep(random.uniform(0, plan.ramp_seconds))
    deadline = started + plan.seconds
    conn = ConnectionPool(plan.url, max_connections=1, idle_seconds=IDLE_CONNECTION_SECONDS)
    try:
        token = session or await login(conn, stats, f"shopper{index}@example.com", deadline)
        if token is None:
            return
        auth = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < deadline:
            await asyncio.sleep(random.expovariate(1 / plan.think_seconds))
            if time.monotonic() >= deadline:
                break
            action = random.choices(ACTIONS, ACTION_WEIGHTS)[0]
            if action == "list":
                await timed(conn, stats, "GET", f"/products?limit=20&category={random.choice(CATEGORIES)}")
            elif action == "search":
                await timed(conn, stats, "GET", f"/products?q={random.choice(SEARCHES)}&limit=20")
            elif action == "product":
                await timed(conn, stats, "GET", f"/products/{random.choice(plan.product_ids)}")
            elif action == "checkout":
                await checkout(conn, stats, plan, token, deadline)
            else:
                await timed(conn, stats, "GET", "/orders?limit=10", headers=auth)
    finally:
        await conn.aclose()


CATEGORIES = sorted({p.category for p in generate_products(64)})
SEARCHES = ("lamp", "coffee", "wool", "steel", "blue", "travel", "desk", "garden")


async def run_load(plan: Plan, sessions: list[str | None]) -> Stats:
    stats = Stats()
    started = time.monotonic()
    await asyncio.gather(*(shopper(i, session, plan, stats, started) for i, session in enumerate(sessions)))
    return stats


def create_accounts(shop: ShopProcesses, users: int, logins: int) -> list[str | None]:
    """The accounts, and each user's session: None for the `logins` users who log in during the run; for the others
    a token issued before it (returning shoppers), signed with the users service's own key and settings."""
    settings = UsersSettings.model_validate(shop.environment("users"))
    password_hash = password_hasher(settings).hash(PASSWORD)
    rows = [(uuid.uuid4(), f"shopper{i}@example.com", f"Shopper {i}", password_hash) for i in range(users)]
    with admin_connection(shop) as conn, conn.cursor() as cursor:
        cursor.executemany("INSERT INTO users.users (id, email, name, password_hash) VALUES (%s, %s, %s, %s)", rows)
    signer = TokenSigner.from_settings(settings)
    return [None if i < logins else signer.issue(str(user_id)).token for i, (user_id, *_) in enumerate(rows)]


def settle_and_audit(shop: ShopProcesses, stats: Stats, seed_count: int, drain_seconds: float) -> dict[str, int]:
    with admin_connection(shop) as conn:
        deadline = time.monotonic() + drain_seconds
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM orders.orders WHERE status = ANY(%s)", (list(UNFINISHED),)
            ).fetchone()
            if row is None or row[0] == 0:
                break
            time.sleep(1)
        accepted = list(stats.accepted_orders)
        found = dict(
            conn.execute("SELECT id::text, status FROM orders.orders WHERE id::text = ANY(%s)", (accepted,)).fetchall()
        )
        lost = sum(1 for order in accepted if found.get(order) in (None, *UNFINISHED))
        completed = conn.execute("SELECT count(*) FROM orders.orders WHERE status = 'confirmed'").fetchone()
        seeded = {p.sku: p.stock for p in generate_products(seed_count)}
        taken = conn.execute(
            "SELECT p.sku, coalesce(sum(i.quantity) FILTER (WHERE r.status IN ('held', 'committed')), 0)"
            " FROM products.products p"
            " LEFT JOIN products.reservation_items i ON i.product_id = p.id"
            " LEFT JOIN products.reservations r ON r.order_id = i.order_id GROUP BY p.sku"
        ).fetchall()
        oversold = sum(1 for sku, quantity in taken if quantity > seeded.get(sku, 0))
        doubled = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM ("
                " SELECT reference FROM payments.provider_charges c"
                " WHERE c.status = 'captured' AND NOT EXISTS"
                "  (SELECT 1 FROM payments.provider_refunds r WHERE r.charge_id = c.id)"
                " GROUP BY reference HAVING count(*) > 1"
                "  OR bool_and(reference NOT IN (SELECT id::text FROM orders.orders WHERE status = 'confirmed'))) AS d"
            )
        ).fetchone()
    return {
        "orders_completed": int(completed[0]) if completed else 0,
        "orders_lost": lost,
        "oversold": oversold,
        "double_charged": int(doubled[0]) if doubled else 0,
    }


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--ramp-seconds", type=float, default=None, help="default: half of --seconds")
    parser.add_argument(
        "--think-seconds", type=float, default=5.0, help="mean pause between a user's actions (exponential)"
    )
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument(
        "--login-share",
        type=float,
        default=0.2,
        help="share of users who log in during the run (the rest arrive with a session)",
    )
    parser.add_argument("--drain-seconds", type=float, default=30.0)
    parser.add_argument("--verbose", action="store_true", help="status counts and failures on stderr")
    args = parser.parse_args(argv)
    if args.users < 1 or args.seconds <= 0:
        parser.error("--users must be 1 or more and --seconds more than 0")
    tag = uuid.uuid4().hex[:8]
    with (
        tempfile.TemporaryDirectory(prefix="shop-load-") as logs,
        ShopProcesses(
            database=f"shop_bench_{tag}",
            redis_prefix=f"shop-bench-{tag}",
            port=0,
            service_ports="free",
            log_dir=Path(logs),
            log_level="WARNING",
            service_env=one_task_pools(),
        ) as shop,
    ):
        try:
            shop.seed_products(args.products)
            sessions = create_accounts(shop, args.users, round(args.users * args.login_share))
            product_ids = product_ids_of(shop)
            plan = Plan(
                shop.url,
                args.users,
                args.seconds,
                args.ramp_seconds or args.seconds / 2,
                args.think_seconds,
                product_ids,
            )
            cpu_before = cpu_seconds(shop.pids())
            stats = asyncio.run(run_load(plan, sessions))
            cpu = {name: used - cpu_before.get(name, 0.0) for name, used in cpu_seconds(shop.pids()).items()}
            audit = settle_and_audit(shop, stats, args.products, args.drain_seconds)
        finally:
            with contextlib.suppress(Exception):
                shop.stop()
            drop_database(shop.database)
    if args.verbose:
        print(
            json.dumps(
                {
                    "statuses": dict(stats.statuses),
                    "refusals": dict(stats.refusals),
                    "failures": dict(stats.failures),
                    "cpu_ms_per_request": cpu_per_request(cpu, len(stats.latencies_ms)),
                    "routes": stats.route_percentiles(),
                }
            ),
            file=sys.stderr,
        )
    print(
        json.dumps(
            {
                "users": args.users,
                "requests": len(stats.latencies_ms) + sum(stats.failures.values()),
                "errors": stats.errors,
                "p50_ms": round(statistics.median(stats.latencies_ms), 1) if stats.latencies_ms else 0.0,
                "p99_ms": round(percentile(stats.latencies_ms, 0.99), 1),
                **audit,
            }
        )
    )
    return 0


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far (all its threads; /proc/<pid>/stat, Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            # Fields after the parenthesised command name: utime and stime are the 12th and 13th.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[name] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def cpu_per_request(cpu: dict[str, float], requests: int) -> dict[str, float]:
    """Each process's CPU during the run, in milliseconds per request the load generator made."""
    return {name: round(seconds * 1000 / max(requests, 1), 2) for name, seconds in sorted(cpu.items())}


def product_ids_of(shop: ShopProcesses) -> list[str]:
    with admin_connection(shop) as conn:
        return [row[0] for row in conn.execute("SELECT id::text FROM products.products").fetchall()]


def one_task_pools() -> dict[str, dict[str, str]]:
    """Here every service runs one process: its pool may be what the connection budget allows one task per service
    (the stack file's DB_POOL_MAX is sized for its 3 tasks each, and 3 processes do not fit on 2 cores)."""
    services = load_stack_config().services
    size = pool_budget(len(services), 1, DATABASE_MAX_CONNECTIONS)
    return {name: {"DB_POOL_MAX": str(size)} for name in services}


def admin_connection(shop: ShopProcesses) -> psycopg.Connection:
    """The local superuser on the benchmark's database (it reads every service's schema to audit it)."""
    return psycopg.connect(ADMIN_CONNINFO.replace("dbname=postgres", f"dbname={shop.database}"), autocommit=True)


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    raise SystemExit(main())
