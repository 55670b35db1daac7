"""Container entry point: `python -m services.api` serves on 0.0.0.0:$PORT (see services.api.server)."""

from __future__ import annotations

import sys

from services.api.server import main

if __name__ == "__main__":
    sys.exit(main())
