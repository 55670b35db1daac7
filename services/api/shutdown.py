"""Graceful shutdown: what the API does between SIGTERM and exiting.

ECS first deregisters a stopping task from its target group and waits the deregistration delay (the ALB sends it
no new requests, in-flight ones finish), then sends SIGTERM, and SIGKILL after the container's stop timeout; the
program sets both, and `SHUTDOWN_TIMEOUT_SECONDS` (5 s less than the stop timeout), from one value. On SIGTERM
uvicorn stops accepting connections, closes idle keep-alive connections and answers in-flight requests with
`Connection: close`. Event streams behind the ALB were already ended when the delay was over (they outlive it);
any stream still held here (opened straight to the task, or through a proxy that keeps draining connections) ends
within a second on its own (`draining()`) instead of being cut at SIGKILL. Either way clients reconnect, to another
task, with the `Last-Event-ID` they last saw.
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
