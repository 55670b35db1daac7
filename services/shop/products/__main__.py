"""`python -m services.shop.products`: load settings, migrate (at start-up, in the app's lifespan), serve."""

from __future__ import annotations

from services.shop.common.app import run
from services.shop.common.settings import load_settings
from services.shop.products.app import create_app
from services.shop.products.settings import ProductsSettings


def main() -> None:
    settings = load_settings(ProductsSettings)
    run(create_app(settings), settings)


if __name__ == "__main__":
    main()
