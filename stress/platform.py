"""The job platform as `./platform local` runs it (fauxqs, the API, N workers, PostgreSQL, Redis and a storage
directory), each part in its own throwaway form: a fresh database, a private Redis key prefix, fresh queues, its
own storage directory, and per-process endpoints so a scenario can put proxies between any two parts.

Also the measurements every scenario shares: what became of the accepted jobs, read from the database
(`outcome`), and whether any job completed twice or had its result rewritten after completion (`duplicates`)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow

from services.common.db import connect
from services.common.migrate import apply_migrations
from services.common.redis_client import delete_prefix, sync_client
from services.common.settings import Settings
from services.common.sqs import ensure_queues, sqs_client
from services.common.storage import RESULTS, Storage
from services.fauxqs import Fauxqs, free_port
from services.local import stop_processes
from stress.servers import ADMIN_DSN, throwaway_database, wait_until
from stress.writes import ResultWrites

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_DIR = REPO_ROOT / ".local"


def wait_for_api(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("API did not start")


def wait_for_workers(heartbeats: list[Path], timeout: float = 60) -> None:
    """Long-running workers are warm in production: start measuring once each has begun polling."""
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in heartbeats):
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not start")
        time.sleep(0.1)


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds a TCP socket listening on `port` (from /proc: its fds and the socket table)."""
    try:
        inodes = {os.readlink(fd).removeprefix("socket:[").rstrip("]") for fd in Path(f"/proc/{pid}/fd").iterdir()}
        table = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in table:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:  # 0A: LISTEN
            return True
    return False


def completion(conn: psycopg.Connection[Any], ids: list[str] | None = None) -> dict[str, int]:
    """Final counts of these jobs; without ids, of every job (the throwaway database holds only ours),
    which is the cheap form for polling: an id list of 10,000 costs PostgreSQL more than the count."""
    where, params = ("WHERE id = ANY(%s::uuid[])", (ids,)) if ids is not None else ("", ())
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded,"  # noqa: S608 - literal fragments
        f" count(*) FILTER (WHERE status = 'failed') AS failed FROM jobs {where}",
        params,
    ).fetchone()
    assert row is not None
    return {"succeeded": row[0], "failed": row[1]} if isinstance(row, tuple) else dict(row)


@dataclass(frozen=True)
class Endpoints:
    """Where one process finds its dependencies (a proxy's port where a scenario cuts the link)."""

    db_port: int = 5432
    redis_port: int = 6379
    sqs_url: str | None = None
    """None: the platform's fauxqs."""

    def env(self, fauxqs_url: str) -> dict[str, str]:
        return {
            "DB_PORT": str(self.db_port),
            "REDIS_PORT": str(self.redis_port),
            "SQS_ENDPOINT_URL": self.sqs_url or fauxqs_url,
        }


@dataclass
class PlatformConfig:
    name: str
    """Scenario name: names the database, queues, key prefix and the log directory."""
    admin_dsn: str = ADMIN_DSN
    """Server the throwaway database is made on."""
    api: Endpoints = field(default_factory=Endpoints)
    worker: Endpoints = field(default_factory=Endpoints)
    storage: Path | None = None
    """Storage directory (a scenario's small filesystem); None: a fresh directory under .local/."""
    env: dict[str, str] = field(default_factory=dict)
    """Overrides of the environment contract for every process."""


@dataclass(frozen=True)
class Outcome:
    succeeded: int
    failed: int
    lost: int
    """Accepted (202/200) but not in a final status, or not in the database at all."""


class LocalPlatform:
    """Start with `with LocalPlatform(config) as platform:`; everything it made is gone afterwards."""

    def __init__(self, config: PlatformConfig) -> None:
        self.config = config
        self.tag = f"{config.name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        self.database = f"cp_stress_{self.tag}"
        self.logs = LOCAL_DIR / "stress" / config.name
        self.api_port = free_port()
        self.workers: list[subprocess.Popen[bytes]] = []
        self.api: subprocess.Popen[bytes] | None = None
        self._stack = contextlib.ExitStack()
        self._started = 0
        self._lock = threading.Lock()  # replacements start from timer threads

    # --- Lifecycle ---

    def __enter__(self) -> LocalPlatform:
        try:
            self._enter()
        except BaseException:
            self._stack.close()
            raise
        return self

    def _enter(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for old in self.logs.glob("*.log"):
            old.unlink()
        self._stack.enter_context(throwaway_database(self.database, self.config.admin_dsn))
        self._stack.callback(self._delete_redis_keys)
        self.fauxqs = self._stack.enter_context(Fauxqs())
        if self.config.storage is None:
            LOCAL_DIR.mkdir(exist_ok=True)
            # Not under /tmp: file creation there costs ~15x the CPU of the work tree's disk on this machine.
            self.storage = Path(self._stack.enter_context(_temporary_directory(LOCAL_DIR)))
        else:
            self.storage = self.config.storage
        Storage(self.storage).ensure_layout()
        self.result_writes = self._stack.enter_context(ResultWrites(self.storage / RESULTS))
        admin = conninfo_to_dict(self.config.admin_dsn)
        self.base_env = {
            "APP_ENV": "local",
            "LOG_LEVEL": "WARNING",
            "DB_HOST": str(admin.get("host", "127.0.0.1")),
            "DB_USER": str(admin.get("user", "postgres")),
            "DB_NAME": self.database,
            "DB_POOL_MAX": "16",
            "DB_POOL_MIN": "4",
            "DB_POOL_TIMEOUT_SECONDS": "2",
            "REDIS_KEY_PREFIX": f"cp-stress-{self.tag}:",
            "STORAGE_PATH": str(self.storage),
            "PORT": str(self.api_port),
            "RATE_LIMIT_PER_SECOND": "100000",
            "RATE_LIMIT_BURST": "100000",
            "IDLE_WAIT_SECONDS": "1",
            "API_WORKERS": "1",
        } | self.config.env
        direct = Endpoints(db_port=int(str(admin.get("port", 5432)))).env(self.fauxqs.endpoint_url)
        probe = Settings(**(self.base_env | direct))  # pyright: ignore[reportArgumentType]
        self.base_env |= ensure_queues(
            sqs_client(probe),
            f"stress-{self.tag.replace('_', '-')}",
            probe.MAX_RECEIVES,
            probe.VISIBILITY_TIMEOUT_SECONDS,
        )
        self.direct_settings = Settings(**(self.base_env | direct))  # pyright: ignore[reportArgumentType]
        apply_migrations(self.direct_settings)
        self._stack.callback(self._stop_all)

    def __exit__(self, *_: object) -> None:
        self._stack.close()

    def _stop_all(self) -> None:
        # Everything is measured by now and all state is thrown away: no graceful stop needed (it cost ~2 s).
        stop_processes([*self.workers, *([self.api] if self.api else [])], grace=0)

    def _delete_redis_keys(self) -> None:
        client = sync_client(Settings())
        try:
            delete_prefix(client, f"cp-stress-{self.tag}:")
        finally:
            client.close()

    # --- Processes ---

    def _spawn(self, module: str, env: dict[str, str], log_name: str, nice: int = 0) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{log_name}.log").open("ab")
        argv = [sys.executable, "-m", module]
        if nice:
            argv = ["nice", "-n", str(nice), *argv]
        with log:
            return subprocess.Popen(  # noqa: S603 - this interpreter and our own modules
                argv,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                start_new_session=True,  # a Ctrl-C reaches only the runner, which stops everything in order
            )

    def start(self, workers: int, nice: int = 0) -> None:
        """Start the API and `workers` workers together; return once the API answers and every worker polls."""
        env = self.base_env | self.config.api.env(self.fauxqs.endpoint_url)
        self.api = self._spawn("services.api", env, "api")
        first = self._started
        self.start_workers(workers, wait=False, nice=nice)
        # A free port may be taken by another program before the API binds it: wait for OUR process to listen.
        api = self.api
        wait_until(lambda: api.poll() is not None or listens(api.pid, self.api_port), timeout=60,
                   what=f"the API to listen on {self.api_port}", interval=0.1)  # fmt: skip
        if api.poll() is not None:
            raise RuntimeError(f"the API exited with {api.returncode}; see {self.logs / 'api.log'}")
        wait_for_api(self.api_port)
        wait_for_workers([self.logs / f"heartbeat-{index}" for index in range(first, first + workers)])

    def start_worker(self, wait: bool = True, nice: int = 0) -> subprocess.Popen[bytes]:
        return self.start_workers(1, wait, nice)[0]

    def start_workers(self, count: int, wait: bool = True, nice: int = 0) -> list[subprocess.Popen[bytes]]:
        """Start `count` workers together; with `wait`, return once each polls its queues."""
        with self._lock:
            indexes = range(self._started, self._started + count)
            self._started += count
        started, heartbeats = [], []
        for index in indexes:
            heartbeat = self.logs / f"heartbeat-{index}"
            heartbeat.unlink(missing_ok=True)
            env = self.base_env | self.config.worker.env(self.fauxqs.endpoint_url) | {"HEARTBEAT_FILE": str(heartbeat)}
            started.append(self._spawn("services.worker", env, f"worker-{index}", nice))
            heartbeats.append(heartbeat)
        with self._lock:
            self.workers.extend(started)
        if wait:
            wait_for_workers(heartbeats)
        return started

    def running_workers(self) -> list[subprocess.Popen[bytes]]:
        return [worker for worker in self.workers if worker.poll() is None]

    def kill_random_worker(self) -> subprocess.Popen[bytes]:
        with self._lock:
            victim = random.choice(self.running_workers())  # noqa: S311 - chaos, not cryptography
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=5)
        return victim

    # --- Measurements ---

    def connect(self) -> psycopg.Connection[DictRow]:
        return connect(self.direct_settings)

    def outcome(self, ids: list[str]) -> Outcome:
        with self.connect() as conn:
            state = completion(conn, ids)
        return Outcome(state["succeeded"], state["failed"], len(set(ids)) - state["succeeded"] - state["failed"])

    def wait_for_jobs(self, count: int, timeout: float) -> float:
        """Wait until `count` jobs are final (or `timeout`); returns when that happened (perf_counter)."""
        with self.connect() as conn:
            deadline = time.perf_counter() + timeout
            while time.perf_counter() < deadline:
                state = completion(conn)
                if state["succeeded"] + state["failed"] >= count:
                    break
                time.sleep(0.1)
        return time.perf_counter()

    def unfinished(self) -> int:
        """Jobs accepted so far and not yet final."""
        with self.connect() as conn:
            row = conn.execute("SELECT count(*) AS n FROM jobs WHERE status IN ('queued', 'running')").fetchone()
        return row["n"] if row else 0

    def completions_since(self, moment: datetime, until: datetime | None = None) -> int:
        """Jobs that succeeded after `moment` (and before `until`), by the database's clock (this machine's)."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM job_transitions WHERE to_status = 'succeeded' AND at > %s"
                " AND (%s::timestamptz IS NULL OR at < %s)",
                (moment, until, until),
            ).fetchone()
        return row["n"] if row else 0

    def duplicates(self) -> Duplicates:
        """Jobs done twice, measured: completions in the audit trail, result writes in the kernel's record."""
        with self.connect() as conn:
            twice = conn.execute(
                "SELECT count(*) AS n FROM (SELECT job_id FROM job_transitions"
                " WHERE to_status IN ('succeeded', 'failed') GROUP BY job_id HAVING count(*) > 1) d"
            ).fetchone()
        return Duplicates(
            completed_twice=twice["n"] if twice else 0,
            results_written_twice=self.result_writes.rewritten(),
            writes_unmeasured=self.result_writes.overflowed,
            results_seen=len(self.result_writes.counts),
        )


@dataclass(frozen=True)
class Duplicates:
    completed_twice: int
    """Jobs with more than one final transition (succeeded or failed) in job_transitions."""
    results_written_twice: int
    """Result files written more than once (inotify on results/)."""
    writes_unmeasured: bool
    """The kernel's event queue overflowed: some writes were not seen."""
    results_seen: int
    """Result files written at least once (at least the succeeded jobs: proof the watch saw them)."""

    @property
    def total(self) -> int:
        return self.completed_twice + self.results_written_twice


@contextlib.contextmanager
def _temporary_directory(parent: Path) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="cp-stress-", dir=parent) as path:
        yield path
