"""`python -m services.api` with API_WORKERS > 1: one SO_REUSEPORT listener per process, supervised."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.api.server import reuse_port_socket
from services.common.settings import Settings
from services.fauxqs import free_port
from tests.services.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]


def server_processes(pid: int) -> list[int]:
    """The spawned API servers among the children (multiprocessing also starts a resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children if "spawn_main" in Path(f"/proc/{child}/cmdline").read_text()]


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def api(env: dict[str, str], settings: Settings) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.api"],
        cwd=REPO,
        env={**os.environ, **env, "PORT": str(port), "API_WORKERS": "2"},
        start_new_session=True,  # so cleanup can stop the whole process group
    )
    try:
        wait_until(lambda: healthy(port) and len(server_processes(process.pid)) == 2, timeout=30, what="2 servers")
        yield process, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_reuse_port_sockets_share_a_port() -> None:
    first = reuse_port_socket("127.0.0.1", 0)
    second = reuse_port_socket("127.0.0.1", first.getsockname()[1])
    first.listen()
    second.listen()
    assert first.getsockname() == second.getsockname()
    first.close()
    second.close()


def test_api_workers_serve_and_stop_on_sigterm(api: tuple[subprocess.Popen[bytes], int]) -> None:
    process, port = api
    assert all(healthy(port) for _ in range(10))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_a_dead_api_process_stops_the_task_with_an_error(api: tuple[subprocess.Popen[bytes], int]) -> None:
    """ECS then replaces the task, rather than it serving on at half capacity."""
    process, port = api
    os.kill(server_processes(process.pid)[0], signal.SIGKILL)
    assert process.wait(timeout=30) == 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
