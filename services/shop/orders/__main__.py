"""`python -m services.shop.orders`: read the settings, then serve on PORT (migrations run at start-up)."""

from __future__ import annotations

from services.shop.common.app import run
from services.shop.common.settings import load_settings
from services.shop.orders.app import create_app
from services.shop.orders.settings import OrdersSettings


def main() -> None:
    settings = load_settings(OrdersSettings)
    run(create_app(settings), settings)


if __name__ == "__main__":
    main()
