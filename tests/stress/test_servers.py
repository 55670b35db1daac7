"""The proxy's partition: bytes are held, not dropped, and flow again when the link heals."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from stress.servers import TcpProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def test_partition_holds_bytes_on_open_and_new_connections_until_heal(echo_port: int) -> None:
    proxy = TcpProxy(echo_port)
    proxy.start()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=0.3) as before:
            before.sendall(b"one")
            assert before.recv(16) == b"one"
            proxy.partition()
            before.sendall(b"two")
            with pytest.raises(TimeoutError):
                before.recv(16)
            late = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.3)  # accepted, never forwarded
            late.sendall(b"three")
            with pytest.raises(TimeoutError):
                late.recv(16)
            proxy.heal()
            before.settimeout(5)
            late.settimeout(5)
            assert before.recv(16) == b"two"
            assert late.recv(16) == b"three"
            late.close()
    finally:
        proxy.stop()


def test_retarget_drops_open_connections_and_serves_the_new_backend(echo_port: int) -> None:
    proxy = TcpProxy(1)  # nothing listens on port 1
    proxy.start()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=1) as refused:
            assert refused.recv(16) == b""  # the backend is unreachable: the proxy closes the connection
        proxy.retarget(echo_port)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=1) as moved:
            moved.sendall(b"ok")
            assert moved.recv(16) == b"ok"
    finally:
        proxy.stop()
