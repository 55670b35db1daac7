"""Container entry point: `python -m services.shop.notifications` (migrations run as the app starts)."""

from __future__ import annotations

import sys

from services.shop.common.app import run
from services.shop.common.settings import load_settings
from services.shop.notifications.app import create_app
from services.shop.notifications.settings import NotificationsSettings


def main() -> int:
    settings = load_settings(NotificationsSettings)
    run(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
