"""`python -m services.api` with API_WORKERS > 1: one SO_REUSEPORT listener per process, supervised."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
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


def test_sigterm_ends_event_streams_and_exits_before_the_stop_timeout(env: dict[str, str], settings: Settings) -> None:
    """ECS sends SIGTERM after the deregistration delay and SIGKILL after the stop timeout: an open event stream
    ends cleanly within a second or two (the client reconnects elsewhere with Last-Event-ID) instead of holding
    the process until SIGKILL, and the process exits well before the stop timeout."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.api"],
        cwd=REPO,
        env={**os.environ, **env, "PORT": str(port), "API_WORKERS": "1", "SHUTDOWN_TIMEOUT_SECONDS": "25"},
        start_new_session=True,
    )
    try:
        wait_until(lambda: healthy(port), timeout=30, what="the API")
        body = b'{"type": "data.csv_summary", "params": {"csv": "a\\n1\\n"}}'
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/jobs",
            data=body,
            headers={"Content-Type": "application/json", "X-Client-Id": "shutdown-test"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            job_id = json.loads(response.read())["id"]
        # No worker runs: the job stays queued, so only the shutdown can end its stream.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/jobs/{job_id}/events", timeout=30) as stream:
            first = stream.readline()
            assert first == b"id: 1\n"
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            rest = stream.read()  # returns when the server ends the response (chunked terminator), not on a reset
        ended_after = time.monotonic() - started
        assert b"queued" in rest
        assert ended_after < 5, f"the stream stayed open {ended_after:.1f} s after SIGTERM"
        # After its graceful shutdown uvicorn re-raises SIGTERM, the conventional end of a process stopped by it.
        assert process.wait(timeout=25) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 10
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
