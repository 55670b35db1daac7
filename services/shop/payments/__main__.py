"""`python -m services.shop.payments`: read the settings, apply the migrations, serve on $PORT (8084)."""

from __future__ import annotations

from services.shop.common.app import run
from services.shop.common.settings import load_settings
from services.shop.payments.app import create_app
from services.shop.payments.settings import PaymentsSettings


def main() -> None:
    settings = load_settings(PaymentsSettings)
    # The app applies the migrations at start-up, before it opens its pool (create_service_app's lifespan).
    run(create_app(settings), settings)


if __name__ == "__main__":
    main()
