"""A realistic catalog for local runs and the load benchmark: `python -m services.shop.products.seed --count 1000`.

Deterministic for a given `--seed`: product i always gets the same SKU, name, price and initial stock, so seeding
twice adds nothing (SKUs are unique) and benchmark runs are comparable. Uses the service's own settings (DB_*,
REDIS_*), applies its migrations first, and marks every cached page stale afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from services.shop.common.database import apply_service_migrations, open_service_pool
from services.shop.common.settings import load_settings
from services.shop.products.app import MIGRATIONS_DIR, redis_client
from services.shop.products.cache import CatalogCache
from services.shop.products.settings import ProductsSettings

MAX_COUNT = 1_000_000
_BATCH = 1000

# category: (price range in cents, products, features a description mentions)
_CATEGORIES: dict[str, tuple[tuple[int, int], tuple[str, ...], tuple[str, ...]]] = {
    "electronics": (
        (1_999, 89_999),
        (
            "Wireless Headphones",
            "Bluetooth Speaker",
            "USB-C Charger",
            "Mechanical Keyboard",
            "Gaming Mouse",
            "4K Monitor",
            "Smartwatch",
            "Action Camera",
            "Power Bank",
            "Noise-Cancelling Earbuds",
        ),
        ("long battery life", "fast charging", "low latency", "aluminium body", "water resistant"),
    ),
    "books": (
        (799, 4_999),
        (
            "Cookbook",
            "Mystery Novel",
            "Science Fiction Anthology",
            "Travel Guide",
            "Field Guide to Birds",
            "History of Rome",
            "Poetry Collection",
            "Programming Handbook",
            "Graphic Novel",
            "Biography",
        ),
        ("hardcover", "illustrated", "annotated edition", "large print", "signed by the author"),
    ),
    "kitchen": (
        (999, 29_999),
        (
            "Chef's Knife",
            "Cast Iron Skillet",
            "Espresso Machine",
            "Stand Mixer",
            "Cutting Board",
            "Dutch Oven",
            "French Press",
            "Spice Grinder",
            "Rice Cooker",
            "Kettle",
        ),
        ("dishwasher safe", "stainless steel", "non-stick coating", "oven safe", "ergonomic handle"),
    ),
    "garden": (
        (499, 19_999),
        (
            "Pruning Shears",
            "Garden Hose",
            "Raised Bed Kit",
            "Watering Can",
            "Compost Bin",
            "Seed Starter Tray",
            "Bird Feeder",
            "Wheelbarrow",
            "Solar Path Light",
            "Trowel",
        ),
        ("weatherproof", "rust resistant", "UV stabilised", "recycled plastic", "frost hardy"),
    ),
    "toys": (
        (599, 14_999),
        (
            "Building Blocks",
            "Puzzle",
            "Board Game",
            "Plush Bear",
            "Remote Control Car",
            "Kite",
            "Train Set",
            "Science Kit",
            "Doll House",
            "Card Game",
        ),
        ("ages 6 and up", "non-toxic paint", "family friendly", "educational", "batteries included"),
    ),
    "sports": (
        (999, 49_999),
        (
            "Yoga Mat",
            "Running Shoes",
            "Tennis Racket",
            "Cycling Helmet",
            "Dumbbell Set",
            "Climbing Rope",
            "Football",
            "Water Bottle",
            "Jump Rope",
            "Hiking Backpack",
        ),
        ("lightweight", "breathable", "shock absorbing", "anti-slip grip", "reflective details"),
    ),
    "clothing": (
        (1_499, 19_999),
        (
            "Rain Jacket",
            "Wool Sweater",
            "Denim Jeans",
            "Linen Shirt",
            "Running Shorts",
            "Winter Gloves",
            "Beanie",
            "Hoodie",
            "Chino Trousers",
            "Socks Three-Pack",
        ),
        ("organic cotton", "merino wool", "machine washable", "slim fit", "windproof"),
    ),
    "beauty": (
        (499, 9_999),
        (
            "Face Serum",
            "Shampoo",
            "Hand Cream",
            "Lip Balm",
            "Sunscreen SPF 50",
            "Body Lotion",
            "Beard Oil",
            "Clay Mask",
            "Perfume",
            "Hair Brush",
        ),
        ("fragrance free", "vegan", "for sensitive skin", "travel size", "dermatologist tested"),
    ),
}
_BRANDS = ("Acme", "Northwind", "Contoso", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Soylent", "Tyrell")
_EDITIONS = ("", " Pro", " Lite", " Max", " Mini", " Classic", " Eco", " Plus", " II", " Travel")


@dataclass(frozen=True, slots=True)
class NewProduct:
    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    stock: int
    currency: str = "USD"


def generate_products(count: int, *, seed: int = 18, start: int = 0) -> list[NewProduct]:
    """Products `start` .. `start + count - 1` of the deterministic catalog."""
    categories = sorted(_CATEGORIES)
    products = []
    for index in range(start, start + count):
        rng = random.Random(seed * 1_000_003 + index)  # noqa: S311 - sample data, not security
        category = categories[index % len(categories)]
        (low, high), nouns, features = _CATEGORIES[category]
        noun, brand = rng.choice(nouns), rng.choice(_BRANDS)
        picked = rng.sample(features, 2)
        products.append(
            NewProduct(
                sku=f"{category[:3].upper()}-{index:06d}",
                name=f"{brand} {noun}{rng.choice(_EDITIONS)}",
                description=f"{noun} by {brand}: {picked[0]}, {picked[1]}.",
                category=category,
                price_cents=rng.randrange(low, high) // 100 * 100 + 99,
                stock=rng.randint(50, 500),
            )
        )
    return products


_INSERT = """
WITH created AS (
    INSERT INTO products (sku, name, description, category, price_cents, currency)
    SELECT * FROM unnest(%(sku)s::text[], %(name)s::text[], %(description)s::text[], %(category)s::text[],
                         %(price)s::integer[], %(currency)s::text[])
    ON CONFLICT (sku) DO NOTHING
    RETURNING id, sku
)
INSERT INTO stock (product_id, available)
SELECT created.id, wanted.available
FROM created JOIN unnest(%(sku)s::text[], %(stock)s::integer[]) AS wanted (sku, available) USING (sku)
RETURNING product_id
"""


async def insert_products(conn: AsyncConnection[Any], products: Sequence[NewProduct]) -> list[UUID]:
    """Create the products with their initial stock (one statement per thousand); SKUs that exist are skipped.
    Returns the ids created. The caller bumps the cache's catalog version (CatalogCache.bump_catalog_version)."""
    created: list[UUID] = []
    for offset in range(0, len(products), _BATCH):
        batch = products[offset : offset + _BATCH]
        params = {
            "sku": [p.sku for p in batch],
            "name": [p.name for p in batch],
            "description": [p.description for p in batch],
            "category": [p.category for p in batch],
            "price": [p.price_cents for p in batch],
            "currency": [p.currency for p in batch],
            "stock": [p.stock for p in batch],
        }
        rows = await (await conn.execute(_INSERT, params)).fetchall()
        created += [row["product_id"] for row in rows]
    return created


async def seed(settings: ProductsSettings, count: int, rng_seed: int) -> int:
    """Migrate, create the first `count` products of the catalog, mark cached pages stale; return how many were new."""
    await asyncio.to_thread(apply_service_migrations, settings, MIGRATIONS_DIR)
    pool = await open_service_pool(settings)
    try:
        async with pool.connection() as conn, conn.transaction():
            created = await insert_products(conn, generate_products(count, seed=rng_seed))
    finally:
        await pool.close()
    redis = redis_client(settings)
    try:
        cache = CatalogCache(
            redis, settings.REDIS_KEY_PREFIX, settings.CACHE_FRESH_SECONDS, settings.CACHE_STALE_SECONDS
        )
        await cache.bump_catalog_version()
    finally:
        await redis.aclose()
    return len(created)


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"--count must be between 1 and {MAX_COUNT}, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.shop.products.seed", description=__doc__)
    parser.add_argument("--count", type=_count, default=1000, help="products in the catalog (default 1000)")
    parser.add_argument("--seed", type=int, default=18, help="the catalog's random seed (default 18)")
    args = parser.parse_args(argv)
    settings = load_settings(ProductsSettings)
    created = asyncio.run(seed(settings, args.count, args.seed))
    sys.stdout.write(f"catalog has its first {args.count} products ({created} created now)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
