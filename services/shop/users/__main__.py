"""`python -m services.shop.users`: read the settings, apply the migrations, serve on $PORT (8081)."""

from __future__ import annotations

from services.shop.common.app import run
from services.shop.common.settings import load_settings
from services.shop.users.app import create_app
from services.shop.users.settings import UsersSettings


def main() -> None:
    settings = load_settings(UsersSettings)
    # The app applies the migrations at start-up, before it opens its pool (create_service_app's lifespan).
    run(create_app(settings), settings)


if __name__ == "__main__":
    main()
