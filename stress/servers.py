"""Servers and links a test or a stress scenario owns and may break: a cuttable TCP proxy, a throwaway
redis-server, a throwaway PostgreSQL cluster (initdb + postgres on a free port), a throwaway database on the
shared server and a small tmpfs. Nothing here touches the machine's shared PostgreSQL or Redis processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from services.fauxqs import free_port

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@contextlib.contextmanager
def throwaway_database(name: str, admin_dsn: str = ADMIN_DSN) -> Iterator[str]:
    """Database `name` on the server of `admin_dsn` for the duration; dropped (connections and all) afterwards."""
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class TcpProxy:
    """A loopback TCP proxy we can cut: `stop()` closes the listener and every open connection (the
    backends see a dropped client, the clients a dropped server), `start()` serves again on the same port.

    `partition()` models a network partition instead: connections stay open but no byte crosses, and new
    connections are accepted but never reach the backend (clients run into their own timeouts); `heal()`
    lets the held bytes through again. `retarget(port)` points the proxy at another backend and drops every
    open connection, as a DNS name moving to a new primary does."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the blocked accept(); close() alone would leave the socket accepting.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        self.drop_connections()

    def drop_connections(self) -> None:
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def partition(self) -> None:
        self._open.clear()

    def heal(self) -> None:
        self._open.set()

    def retarget(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.drop_connections()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        with self._lock:
            self._sockets.append(client)
        self._open.wait()  # partitioned: the client waits, as a SYN into a black hole would
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets.append(upstream)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self._open.wait()  # partitioned: hold the bytes until the link heals
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A throwaway redis-server on a free port, no persistence; killable without touching the shared one."""

    def __init__(self) -> None:
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],  # noqa: S607
            stdout=subprocess.DEVNULL,
        )
        wait_until(lambda: _answers_ping(self.port), timeout=10, what="the throwaway redis-server")

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=5)


def _postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (looked in PATH and /usr/lib/postgresql/*/bin)")
    return str(found)


def _as_postgres_user(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI and this machine run as root, a developer does not.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PostgresServer:
    """A throwaway PostgreSQL cluster of our own (trust auth on loopback), which we may crash and restart
    on another port: the data directory plays the Multi-AZ instance's synchronously replicated volume."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="cp-stress-pg-"))
        self.data = self._dir / "data"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            shutil.chown(self._dir, "postgres", "postgres")
        subprocess.run(  # noqa: S603 - fixed argv
            _as_postgres_user(
                [_postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    @property
    def admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def start(self, port: int | None = None) -> None:
        """Start (or restart after a crash, with crash recovery) on `port`, a free one by default."""
        self.port = port or free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self._dir),
            "max_connections": "200",
            "shared_buffers": "32MB",
            "synchronous_commit": "on",  # what a Multi-AZ standby has is what was committed
        }
        argv = [_postgres_bin("postgres"), "-D", str(self.data), "-p", str(self.port)]
        argv += [part for name, value in settings.items() for part in ("-c", f"{name}={value}")]
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv
            _as_postgres_user(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        process = self._process

        def accepting() -> bool:
            if process.poll() is not None:  # e.g. another program took the port first
                raise RuntimeError(f"PostgreSQL exited with {process.returncode} starting on port {self.port}")
            try:
                with psycopg.connect(self.admin_dsn, connect_timeout=1):
                    return True
            except psycopg.OperationalError:
                return False

        wait_until(accepting, timeout=30, what=f"the throwaway PostgreSQL on port {self.port}", interval=0.1)

    def crash(self) -> None:
        """SIGKILL the postmaster, as an instance lost with its AZ: no shutdown checkpoint, backends die too."""
        if self._process is not None and self._process.poll() is None:
            # runuser forwards nothing on SIGKILL: signal the postmaster itself (its pid is in the pid file).
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 9)
            self._process.wait(timeout=10)
            wait_until(lambda: not _has_backends(self.data), timeout=10, what="the crashed backends to exit")

    def destroy(self) -> None:
        self.crash()
        shutil.rmtree(self._dir, ignore_errors=True)


def _has_backends(data: Path) -> bool:
    """Whether any process still holds the data directory's shared memory (a backend outliving its postmaster)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "cwd") == str(data):
                    return True
    return False


@contextlib.contextmanager
def small_filesystem(size_bytes: int) -> Iterator[Path]:
    """A tmpfs of `size_bytes` mounted on a new directory (needs CAP_SYS_ADMIN: root, or root inside
    `unshare --user --map-root-user --mount`); unmounted and removed afterwards."""
    mount_point = Path(tempfile.mkdtemp(prefix="cp-stress-fs-"))
    try:
        subprocess.run(  # noqa: S603
            ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0777", "cp-stress", str(mount_point)],  # noqa: S607
            check=True,
            stderr=subprocess.PIPE,
        )
        try:
            yield mount_point
        finally:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)  # noqa: S603, S607
    finally:
        with contextlib.suppress(OSError):
            mount_point.rmdir()
