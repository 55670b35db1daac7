"""Local runner: fauxqs + the API + N workers against the local PostgreSQL and Redis.

    uv run python -m services.local --workers 2 [--port 8080] [--api-workers 1]

Creates the database (DB_NAME, default cp_local) if missing, the queues and DLQ with a redrive policy,
then runs everything as child processes until Ctrl-C or SIGTERM, and stops them all (SIGTERM, then
SIGKILL after a grace period). Any variable of the environment contract may be overridden in the shell.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from psycopg import sql

from services.common.db import connect
from services.common.settings import Settings
from services.common.sqs import ensure_queues, sqs_client
from services.fauxqs import Fauxqs

STOP_GRACE_SECONDS = 15.0
CONSOLE_DIST = Path(__file__).resolve().parents[1] / "web" / "dist"


def ensure_database(settings: Settings) -> None:
    with connect(settings, dbname="postgres") as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.DB_NAME,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.DB_NAME)))


def local_env(endpoint_url: str, port: int, overrides: dict[str, str]) -> dict[str, str]:
    env = {
        "APP_ENV": "local",
        "PORT": str(port),
        "SQS_ENDPOINT_URL": endpoint_url,
        "STORAGE_PATH": os.path.abspath(".local/storage"),
        "HEARTBEAT_FILE": os.path.abspath(".local/worker-heartbeat"),
        "REDIS_KEY_PREFIX": "cp-local:",
        **overrides,
    }
    settings = Settings(**env)  # pyright: ignore[reportArgumentType] - validated from strings like the env
    queues = ensure_queues(sqs_client(settings), "cp-local", settings.MAX_RECEIVES, settings.VISIBILITY_TIMEOUT_SECONDS)
    return {**env, **queues}


def _contract_overrides() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name in Settings.model_fields}


def start_processes(env: dict[str, str], workers: int, api_workers: int) -> list[subprocess.Popen[bytes]]:
    """Start the API and the workers (each worker with its own heartbeat file)."""
    child_env = {**os.environ, **env, "API_WORKERS": str(api_workers)}
    launches: list[tuple[Sequence[str], dict[str, str]]] = [([sys.executable, "-m", "services.api"], child_env)]
    for index in range(workers):
        worker_env = {**child_env, "HEARTBEAT_FILE": f"{env['HEARTBEAT_FILE']}-{index}"}
        launches.append(([sys.executable, "-m", "services.worker"], worker_env))
    # Fixed argv: this interpreter and our own modules.
    # Own sessions: a Ctrl-C reaches only this runner, which then stops the children in order.
    return [subprocess.Popen(argv, env=child, start_new_session=True) for argv, child in launches]  # noqa: S603


def stop_processes(processes: list[subprocess.Popen[bytes]], grace: float = STOP_GRACE_SECONDS) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def start_console(api_port: int, port: int) -> subprocess.Popen[bytes] | None:
    """The web console (services/console.py) in front of the API, as CloudFront serves it; None when not built."""
    if not (CONSOLE_DIST / "index.html").is_file():
        return None
    argv = [sys.executable, "-m", "services.console", "--api", f"http://127.0.0.1:{api_port}", "--port", str(port)]
    return subprocess.Popen(argv, start_new_session=True)  # noqa: S603 - this interpreter and our own module


def console_banner(console: subprocess.Popen[bytes] | None, port: int) -> str:
    if console is None:
        return "no web console (build it: npm --prefix web ci && npm --prefix web run build)"
    return f"web console on http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--port", type=int, default=8080, help="API port on 127.0.0.1 (default 8080)")
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    parser.add_argument(
        "--console-port", type=int, default=8000, help="web console port, when web/dist is built (default 8000)"
    )
    args = parser.parse_args(argv)
    if args.workers < 0 or args.api_workers < 1:
        parser.error("--workers must be >= 0 and --api-workers >= 1")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    overrides = _contract_overrides()
    ensure_database(Settings(**overrides))  # pyright: ignore[reportArgumentType]
    os.makedirs(".local/storage", exist_ok=True)
    with Fauxqs() as fauxqs:
        env = local_env(fauxqs.endpoint_url, args.port, overrides)
        processes = start_processes(env, args.workers, args.api_workers)
        console = start_console(args.port, args.console_port)
        if console is not None:
            processes.append(console)
        banner = (
            f"API on http://127.0.0.1:{args.port} (docs at /docs), {args.workers} worker(s),"
            f" SQS endpoint {fauxqs.endpoint_url}, {console_banner(console, args.console_port)}. Ctrl-C stops everything."
        )
        print(banner, flush=True)  # noqa: T201
        try:
            while not stop.is_set():
                if any(process.poll() is not None for process in processes):
                    print("a child process exited; stopping everything", file=sys.stderr)  # noqa: T201
                    break
                stop.wait(0.5)
        finally:
            stop_processes(processes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
