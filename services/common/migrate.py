"""Apply the SQL files in `migrations/` once, in name order, under a PostgreSQL advisory lock.

Every API and worker task calls this at start-up; the lock makes concurrent start-ups safe and the
`schema_migrations` table makes it idempotent. One-off use: `uv run python -m services.common.migrate`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from psycopg import sql

from services.common.db import connect
from services.common.logging import configure_logging
from services.common.settings import Settings, load_settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary constant shared by every process of this service ("cpmigrat" as ASCII-ish digits).
_ADVISORY_LOCK_ID = 4_242_001

log = logging.getLogger(__name__)


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS_DIR.glob("*.sql"))


def apply_migrations(settings: Settings) -> list[str]:
    """Apply pending migrations; return the names applied by this call."""
    applied: list[str] = []
    # The services' own role and credential path: in AWS the app role, which owns what it creates.
    with connect(settings) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["name"] for row in conn.execute("SELECT name FROM schema_migrations")}
            for path in migration_files():
                if path.name in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.SQL(path.read_text()))  # pyright: ignore[reportArgumentType] - packaged SQL
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
                log.info("applied migration", extra={"migration": path.name})
                applied.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_ID,))
    return applied


def main() -> None:
    settings = load_settings()
    configure_logging("migrate", settings.LOG_LEVEL)
    apply_migrations(settings)


if __name__ == "__main__":
    main()
