"""Shared test helpers: bounded waiting, draining a worker, sample inputs. The servers and links tests may break
(a cuttable proxy, a throwaway redis-server, a throwaway database) live in stress/servers.py, shared with
`./platform stress`."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from services.worker.runner import Worker
from stress.servers import ADMIN_DSN, RedisServer, TcpProxy, throwaway_database, wait_until

__all__ = [
    "ADMIN_DSN",
    "RedisServer",
    "TcpProxy",
    "drain",
    "job_status",
    "png_bytes",
    "throwaway_database",
    "upload",
    "wait_until",
]


def drain(worker: Worker, done: Callable[[], bool], timeout: float = 15.0) -> None:
    """Run the worker's receive/process cycle in this thread until `done()` (bounded)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"worker did not finish within {timeout}s")
        worker.process_batch(worker.receive())


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def job_status(client: Any, job_id: str) -> str:
    return client.get(f"/jobs/{job_id}").json()["status"]


def upload(client: Any, data: bytes, content_type: str, filename: str | None = None) -> str:
    params = {"filename": filename} if filename else {}
    response = client.post("/files", content=data, headers={"Content-Type": content_type}, params=params)
    assert response.status_code == 201, response.text
    return response.json()["id"]
