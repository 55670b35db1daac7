"""Catalog reads from PostgreSQL: one product, products by id, and pages of a listing or a search.

Listings are ordered by (name, id), searches by (relevance, id), both paged by keyset: the opaque cursor holds
the sort key of the last row shown, so a page never repeats or skips a row that existed when the first page was
read, however many rows are inserted meanwhile. A cursor is bound to its query (q and category): used with
another it is refused rather than silently paging through something else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from psycopg import AsyncConnection, sql
from pydantic import BaseModel, Field

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class Product(BaseModel):
    id: UUID
    sku: str
    name: str
    description: str
    category: str
    price_cents: int = Field(ge=0, description="Unit price in the currency's minor unit.")
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 code.")
    available: int = Field(ge=0, description="Units in stock and not held by a reservation.")


class ProductPage(BaseModel):
    items: list[Product]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ProductRow:
    """A product as stored: its JSON (what the API and the cache serve) and the stock version it reflects."""

    id: UUID
    version: int
    json: bytes


@dataclass(frozen=True, slots=True)
class PageQuery:
    q: str | None
    category: str | None
    cursor: str | None
    limit: int

    @property
    def scope(self) -> str:
        """What a cursor is bound to: the query without its position."""
        return hashlib.sha256(f"{self.q}\x00{self.category}".encode()).hexdigest()[:12]

    @property
    def cache_id(self) -> str:
        """Identifies the page among all pages (a cache key part)."""
        return hashlib.sha256(f"{self.scope}\x00{self.cursor}\x00{self.limit}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[ProductRow]
    next_cursor: str | None


_COLUMNS = sql.SQL("""p.id, p.sku, p.name, p.description, p.category, p.price_cents, p.currency,
       coalesce(s.available, 0) AS available, coalesce(s.version, 0) AS version""")

_BY_IDS = sql.SQL(
    "SELECT {columns} FROM products p LEFT JOIN stock s ON s.product_id = p.id WHERE p.id = ANY(%(ids)s)"
).format(columns=_COLUMNS)

# Four statements rather than one with optional predicates: each keeps a plan that uses its index. The first page
# of a listing starts after ('', nil uuid), below every row (names are never empty), so the index bounds the scan
# of every page.
_LIST = sql.SQL("""SELECT {columns}, p.name AS sort_key FROM products p LEFT JOIN stock s ON s.product_id = p.id
WHERE (p.name, p.id) > (%(after_key)s::text, %(after_id)s::uuid) {category}
ORDER BY p.name, p.id LIMIT %(limit)s""")

# websearch_to_tsquery accepts any text (quotes, `or`, `-word`) without syntax errors.
_SEARCH = sql.SQL("""SELECT * FROM (
    SELECT {columns}, ts_rank(p.search, query) AS sort_key
    FROM products p LEFT JOIN stock s ON s.product_id = p.id,
         websearch_to_tsquery('english', %(q)s) AS query
    WHERE p.search @@ query {category}
) AS matches
WHERE (sort_key, id) < (%(after_key)s::real, %(after_id)s::uuid)
ORDER BY sort_key DESC, id DESC LIMIT %(limit)s""")

_CATEGORY = sql.SQL("AND p.category = %(category)s")
_STATEMENTS = {
    (search, by_category): (_SEARCH if search else _LIST).format(
        columns=_COLUMNS, category=_CATEGORY if by_category else sql.SQL("")
    )
    for search in (False, True)
    for by_category in (False, True)
}

NIL_UUID = UUID(int=0)
# Above every relevance (ts_rank is finite), so the first page of a search needs no predicate of its own.
_FIRST_SEARCH_KEY = float("inf")

_PRODUCT_FIELDS = ("id", "sku", "name", "description", "category", "price_cents", "currency", "available")


def product_row(row: dict[str, Any]) -> ProductRow:
    body = {name: row[name] for name in _PRODUCT_FIELDS}
    body["currency"] = body["currency"].strip()  # char(3)
    return ProductRow(row["id"], row["version"], orjson.dumps(body))


def encode_cursor(query: PageQuery, sort_key: str | float, product_id: UUID) -> str:
    payload = orjson.dumps([query.scope, sort_key, str(product_id)])
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(query: PageQuery) -> tuple[str | float, UUID] | None:
    """(sort key, id) of the last row of the previous page, or None for the first page."""
    if query.cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(query.cursor + "=" * (-len(query.cursor) % 4))
        scope, sort_key, product_id = orjson.loads(raw)
        after = UUID(product_id)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError) as error:
        raise InvalidCursor("cursor is not valid; pass the next_cursor of a previous page unchanged") from error
    expected_type = float if query.q is not None else str
    if scope != query.scope or not isinstance(sort_key, expected_type) or isinstance(sort_key, bool):
        raise InvalidCursor("cursor belongs to a different query; use it with the same q and category")
    return sort_key, after


async def fetch_page(conn: AsyncConnection[Any], query: PageQuery) -> Page:
    """One page (a single round trip): its products and the cursor of the next one."""
    after_key, after_id = decode_cursor(query) or (_FIRST_SEARCH_KEY if query.q is not None else "", NIL_UUID)
    params = {
        "q": query.q,
        "category": query.category,
        "after_key": after_key,
        "after_id": after_id,
        "limit": query.limit + 1,
    }
    statement = _STATEMENTS[(query.q is not None, query.category is not None)]
    rows = await (await conn.execute(statement, params)).fetchall()
    shown = rows[: query.limit]
    next_cursor = None
    if len(rows) > query.limit:
        last = shown[-1]
        next_cursor = encode_cursor(query, last["sort_key"], last["id"])
    return Page([product_row(row) for row in shown], next_cursor)


async def fetch_products(conn: AsyncConnection[Any], ids: list[UUID]) -> dict[UUID, ProductRow]:
    rows = await (await conn.execute(_BY_IDS, {"ids": ids})).fetchall()
    return {row["id"]: product_row(row) for row in rows}
