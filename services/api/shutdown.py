"""Graceful shutdown: what the API does between SIGTERM and exiting.

ECS first deregisters a stopping task from its target group and waits the deregistration delay (the ALB sends it
no new requests, in-flight ones finish), then sends SIGTERM, and SIGKILL after the container's stop timeout; the
program sets both, and `SHUTDOWN_TIMEOUT_SECONDS` (5 s less than the stop timeout), from one value. On SIGTERM
uvicorn stops accepting connections, closes idle keep-alive connections and answers in-flight requests with
`Connection: close`; the server-sent event streams, which would otherwise stay open until the timeout and be cut,
end within a second on their own (`draining()`), so clients reconnect at once, to another task, with the
`Last-Event-ID` they last saw.
"""

from __future__ import annotations

import threading
from types import FrameType

import uvicorn

_draining = threading.Event()


def draining() -> bool:
    """True once this process received SIGTERM (or SIGINT)."""
    return _draining.is_set()


class DrainingServer(uvicorn.Server):
    """uvicorn's server that also tells the application it is shutting down."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        _draining.set()
        super().handle_exit(sig, frame)
