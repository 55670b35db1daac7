"""Serve the API on 0.0.0.0:$PORT with $API_WORKERS processes (`python -m services.api`).

With more than one process, each one listens on its own `SO_REUSEPORT` socket so the kernel spreads
connections evenly. uvicorn's own multi-process mode shares one listening socket, and one process then
accepts a whole burst of keep-alive connections (measured: one process at 70% CPU, the other at 2%).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

from services.api.shutdown import DrainingServer
from services.common.settings import load_settings

log = logging.getLogger("services.api")


def server_config(port: int, shutdown_timeout: float) -> uvicorn.Config:
    return uvicorn.Config(
        "services.api.app:create_app",
        factory=True,
        host="0.0.0.0",  # noqa: S104 - inside the task; the security group and ALB decide who reaches it
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,  # our JSON logging is configured by create_app
        access_log=False,  # the ALB writes access logs; one log call per request costs throughput here
        proxy_headers=True,
        # In-flight requests get this long after SIGTERM; ECS's SIGKILL comes later (the program sets both).
        timeout_graceful_shutdown=max(1, round(shutdown_timeout)),
    )


def reuse_port_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve_one(port: int, shutdown_timeout: float) -> None:
    """One server process with its own listening socket (the target of each spawned process)."""
    config = server_config(port, shutdown_timeout)
    DrainingServer(config).run(sockets=[reuse_port_socket(config.host, config.port)])


def serve_many(port: int, workers: int, shutdown_timeout: float) -> int:
    """Run `workers` server processes until SIGTERM/SIGINT. If one dies on its own, stop the rest and exit
    non-zero so the orchestrator (ECS) replaces the task instead of running it at reduced capacity."""
    context = multiprocessing.get_context("spawn")
    processes: list[BaseProcess] = [
        context.Process(target=serve_one, args=(port, shutdown_timeout), name=f"api-{index}")
        for index in range(workers)
    ]
    stopping = False

    def forward(_signum: int, _frame: FrameType | None) -> None:
        # Always SIGTERM: after a Ctrl-C that reached the whole process group, a second SIGINT would make
        # uvicorn skip its graceful shutdown, while a SIGTERM does not.
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for process in processes:
        process.start()
    if stopping:  # a signal arrived while the processes were being started
        forward(signal.SIGTERM, None)
    wait([process.sentinel for process in processes])
    crashed = not stopping
    if crashed:
        log.error("an API process exited unexpectedly; stopping the others", extra={"workers": workers})
        forward(signal.SIGTERM, None)
    for process in processes:
        process.join()
    return 1 if crashed else 0


def main() -> int:
    settings = load_settings()
    raw_workers = os.environ.get("API_WORKERS", "1")
    if not raw_workers.isdigit() or int(raw_workers) < 1:
        raise SystemExit(f"API_WORKERS must be a positive integer (processes per task), got {raw_workers!r}")
    workers = int(raw_workers)
    if workers == 1:
        DrainingServer(server_config(settings.PORT, settings.SHUTDOWN_TIMEOUT_SECONDS)).run()
        return 0
    return serve_many(settings.PORT, workers, settings.SHUTDOWN_TIMEOUT_SECONDS)
