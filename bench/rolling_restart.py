"""Benchmark: replace every API process behind a real reverse proxy under load, as an ECS deployment does, and
count what clients notice.

    uv run python bench/rolling_restart.py [--api 2] [--seconds 20] [--submitters 4] [--streams 4]
                                           [--interval 0.02] [--drain-seconds 2] [--rounds 1]

HAProxy (Debian's `haproxy`, `apt-get install -y haproxy`) plays the ALB, configured like the API's target group:
HTTP health checks of `/health` expecting 200 (every 1 s, healthy after 2, unhealthy after 2: the target group's
thresholds with its 30 s interval scaled down), round robin, and draining (no new requests to a draining server).
Behind it run `--api` API processes (each `python -m services.api`, one uvicorn process), against a throwaway
PostgreSQL database, a private Redis key prefix and fauxqs, as bench/submit_jobs.py sets them up.

While `--submitters` clients submit jobs steadily (each with an Idempotency-Key) and `--streams` clients follow a
job's server-sent events, every API process is replaced one by one, `--rounds` times, in ECS's order: the new
process starts, the proxy health-checks it until it is UP (the new task registered and healthy), then the old one
is set to drain, the proxy sends it nothing new for `--drain-seconds` (the deregistration delay), then ends the
connections still open to it, as the ALB does when the delay is over (the event streams, which outlive any delay),
it gets SIGTERM (stop timeout: the API answers what is in flight and exits) and it is taken out.

The workers start only after the load: until then the followed jobs stay queued, so their event streams stay open
across every replacement. Then every accepted job must reach a final status, and every stream its job's final
event, in version order (a stream that ends early reconnects with `Last-Event-ID`). Prints one JSON document:
`requests` (HTTP requests sent through the proxy), `failed` (those that got no answer or an unexpected status),
`reconnected_streams` (of which `cut_streams` were ended by the proxy, not by the API), `lost_jobs` (accepted but never final), `seconds` (the load phase), and details.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.common.db import connection_password, conninfo
from services.common.migrate import apply_migrations
from services.common.redis_client import delete_prefix, sync_client
from services.common.settings import Settings
from services.common.sqs import ensure_queues, sqs_client
from services.fauxqs import Fauxqs, free_port
from services.local import stop_processes
from stress.load import CSV
from stress.platform import LOCAL_DIR, completion, wait_for_api, wait_for_workers

BACKEND = "api"
ACCEPTED = frozenset({200, 201, 202})
FINAL = frozenset({"succeeded", "failed"})


def haproxy_config(port: int, slot_ports: list[int], active: int, admin_socket: Path) -> str:
    servers = "\n".join(
        f"    server s{index} 127.0.0.1:{slot} check{'' if index < active else ' disabled'}"
        for index, slot in enumerate(slot_ports)
    )
    return f"""global
    stats socket {admin_socket} mode 600 level admin
    maxconn 2000

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    # Like an ALB: a request the proxy could not even connect for goes to another target; nothing sent is retried.
    retries 2
    option redispatch
    retry-on conn-failure

frontend public
    bind 127.0.0.1:{port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
{servers}
"""


class Proxy:
    """A haproxy process and its runtime API (the admin socket)."""

    def __init__(self, directory: Path, port: int, slot_ports: list[int], active: int) -> None:
        self.socket = directory / "admin.sock"
        self.config = directory / "haproxy.cfg"
        self.config.write_text(haproxy_config(port, slot_ports, active, self.socket))
        self.log = (directory / "haproxy.log").open("wb")
        self.process = subprocess.Popen(
            ["haproxy", "-W", "-db", "-f", str(self.config)], stdout=self.log, stderr=subprocess.STDOUT
        )

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(self.socket))
            client.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := client.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def status(self, server: str) -> str:
        table = self.command("show stat").lstrip("# ")
        for row in csv.DictReader(io.StringIO(table)):
            if row["pxname"] == BACKEND and row["svname"] == server:
                return row["status"]
        raise KeyError(server)

    def wait_for(self, server: str, wanted: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while (current := self.status(server)) != wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{server} is {current}, not {wanted}, after {timeout} s")
            time.sleep(0.1)

    def wait_until_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("haproxy did not start")
            time.sleep(0.05)


@dataclass
class Load:
    port: int
    interval: float
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    reconnects: int = 0
    cut_streams: int = 0
    streams_finished: int = 0
    out_of_order: int = 0

    def fail(self, what: str) -> None:
        self.failures.append(what)

    async def submit(self, client: httpx.AsyncClient, key: str, priority: str = "normal") -> str | None:
        self.requests += 1
        body = {"type": "data.csv_summary", "priority": priority, "params": {"csv": CSV}}
        headers = {"Idempotency-Key": key, "X-Client-Id": f"rolling-{key[:4]}"}
        try:
            response = await client.post("/jobs", json=body, headers=headers)
        except httpx.HTTPError as exc:
            self.fail(f"POST /jobs: {type(exc).__name__}")
            return None
        if response.status_code not in ACCEPTED:
            self.fail(f"POST /jobs: {response.status_code}")
            return None
        job_id = str(response.json()["id"])
        self.accepted.append(job_id)
        return job_id

    async def submitter(self, index: int) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=30) as client:
            count = 0
            while not self.stop.is_set():
                await self.submit(client, f"s{index}-{count}-{uuid.uuid4().hex[:8]}")
                count += 1
                await asyncio.sleep(self.interval)

    async def follower(self, index: int) -> None:
        """Submit one job and follow its events until its final status, reconnecting with Last-Event-ID."""
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=None) as client:
            job_id = await self.submit(client, f"f{index}-{uuid.uuid4().hex}", priority="high")
            if job_id is None:
                return
            last_version = 0
            while True:
                headers = {"Last-Event-ID": str(last_version)} if last_version else {}
                self.requests += 1
                status = None
                streaming = False
                try:
                    async with client.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response:
                        if response.status_code != 200:
                            self.fail(f"GET events: {response.status_code}")
                        else:
                            streaming = True
                            async for line in response.aiter_lines():
                                if not line.startswith("data: "):
                                    continue
                                event = orjson.loads(line[6:])
                                if event["version"] <= last_version:
                                    self.out_of_order += 1
                                last_version, status = event["version"], event["status"]
                except httpx.HTTPError as exc:
                    if streaming:  # an answered stream cut by the proxy (the ALB at the end of the delay): resume
                        self.cut_streams += 1
                    else:
                        self.fail(f"GET events: {type(exc).__name__}")
                if status in FINAL:
                    self.streams_finished += 1
                    return
                self.reconnects += 1
                await asyncio.sleep(0.2)


def start_api(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "services.api"], env={**env, "PORT": str(port)})


def replace_all(
    proxy: Proxy,
    env: dict[str, str],
    slots: list[int],
    live: dict[int, subprocess.Popen[bytes]],
    drain: float,
    *,
    abrupt: bool = False,
) -> int:
    """Replace each live API process by a new one on a free slot, in ECS's order; `abrupt` instead kills the old
    one at once, undrained (the control: what a crash or a missing drain costs). Returns how many."""
    replaced = 0
    for old in sorted(live):
        new = next(index for index in range(len(slots)) if index not in live)
        live[new] = start_api(env, slots[new])
        # Registered, then healthy after `rise` health checks, as a new target; only then it gets requests.
        proxy.command(f"set server {BACKEND}/s{new} health down")
        proxy.command(f"set server {BACKEND}/s{new} state ready")
        proxy.wait_for(f"s{new}", "UP")
        process = live.pop(old)
        if abrupt:
            process.kill()
            process.wait(timeout=60)
            proxy.command(f"set server {BACKEND}/s{old} state maint")
            replaced += 1
            continue
        proxy.command(f"set server {BACKEND}/s{old} state drain")
        time.sleep(drain)  # the deregistration delay: no new requests, in-flight ones finish
        # The ALB's delay is over: it ends the target's connections that are still open (the long-lived event
        # streams), before ECS sends SIGTERM; the clients reconnect with Last-Event-ID.
        proxy.command(f"shutdown sessions server {BACKEND}/s{old}")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        proxy.command(f"set server {BACKEND}/s{old} state maint")
        replaced += 1
    return replaced


async def scenario(
    load: Load, args: argparse.Namespace, replace: Callable[[], int], start_workers: Callable[[], None]
) -> tuple[float, int]:
    """The load with the replacements during it; then the workers, and every stream to its job's final event.
    Returns the load phase's seconds and how many processes were replaced."""
    submitters = [asyncio.create_task(load.submitter(i)) for i in range(args.submitters)]
    followers = [asyncio.create_task(load.follower(i)) for i in range(args.streams)]
    started = time.perf_counter()
    await asyncio.sleep(1)  # streams open, load steady
    replaced = await asyncio.to_thread(replace)
    await asyncio.sleep(max(0.0, args.seconds - (time.perf_counter() - started)))
    load.stop.set()
    await asyncio.gather(*submitters)
    seconds = time.perf_counter() - started
    await asyncio.to_thread(start_workers)
    await asyncio.wait_for(asyncio.gather(*followers), timeout=args.timeout)
    return seconds, replaced


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", type=int, default=2, help="API processes behind the proxy (default 2)")
    parser.add_argument("--seconds", type=float, default=20, help="load phase at least this long (default 20)")
    parser.add_argument("--submitters", type=int, default=4, help="clients submitting jobs (default 4)")
    parser.add_argument("--streams", type=int, default=4, help="clients following a job's events (default 4)")
    parser.add_argument("--interval", type=float, default=0.02, help="pause between a client's submissions (0.02)")
    parser.add_argument("--drain-seconds", type=float, default=2, help="deregistration delay (default 2)")
    parser.add_argument("--rounds", type=int, default=1, help="replace every process this many times (default 1)")
    parser.add_argument(
        "--abrupt", action="store_true", help="control run: SIGKILL each old process at once, undrained"
    )
    parser.add_argument("--workers", type=int, default=1, help="workers started after the load (default 1)")
    parser.add_argument("--timeout", type=float, default=120, help="wait this long for every job to be final")
    args = parser.parse_args(argv)
    if shutil.which("haproxy") is None:
        raise SystemExit("haproxy is not installed: apt-get install -y haproxy (Debian), or brew install haproxy")

    tag = uuid.uuid4().hex[:10]
    database = f"cp_bench_{tag}"
    admin = Settings(DB_NAME="postgres")
    with psycopg.connect(conninfo(admin), autocommit=True, password=connection_password(admin)) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    processes: list[subprocess.Popen[bytes]] = []
    live: dict[int, subprocess.Popen[bytes]] = {}
    proxy: Proxy | None = None
    try:
        LOCAL_DIR.mkdir(exist_ok=True)
        with Fauxqs() as fauxqs, tempfile.TemporaryDirectory(prefix="cp-rolling-", dir=LOCAL_DIR) as storage:
            env = {
                "APP_ENV": "local",
                "LOG_LEVEL": "WARNING",
                "DB_NAME": database,
                "DB_POOL_MAX": "8",
                "DB_POOL_MIN": "2",
                "REDIS_KEY_PREFIX": f"cp-bench-{tag}:",
                "SQS_ENDPOINT_URL": fauxqs.endpoint_url,
                "STORAGE_PATH": storage,
                "API_WORKERS": "1",
                "RATE_LIMIT_PER_SECOND": "100000",
                "RATE_LIMIT_BURST": "100000",
                "IDLE_WAIT_SECONDS": "1",
                "SHUTDOWN_TIMEOUT_SECONDS": "10",
            }
            settings = Settings(**env)  # pyright: ignore[reportArgumentType]
            env |= ensure_queues(sqs_client(settings), f"rolling-{tag}", 5, 120)
            apply_migrations(settings)
            child_env = {**os.environ, **env}
            slots = [free_port() for _ in range(2 * args.api)]
            for index in range(args.api):
                live[index] = start_api(child_env, slots[index])
            for index in range(args.api):
                wait_for_api(slots[index])
            port = free_port()
            proxy = Proxy(Path(storage), port, slots, args.api)
            proxy.wait_until_ready()
            for index in range(args.api):
                proxy.wait_for(f"s{index}", "UP")

            load = Load(port, args.interval)

            def replace() -> int:
                assert proxy is not None
                return sum(
                    replace_all(proxy, child_env, slots, live, args.drain_seconds, abrupt=args.abrupt)
                    for _ in range(args.rounds)
                )

            def start_workers() -> None:  # the followed jobs now run to their final status
                for index in range(args.workers):
                    worker_env = {**child_env, "HEARTBEAT_FILE": f"{storage}/heartbeat-{index}"}
                    processes.append(subprocess.Popen([sys.executable, "-m", "services.worker"], env=worker_env))
                wait_for_workers([Path(storage) / f"heartbeat-{index}" for index in range(args.workers)])

            seconds, replaced = asyncio.run(scenario(load, args, replace, start_workers))
            with psycopg.connect(conninfo(settings), autocommit=True, password=connection_password(settings)) as conn:
                deadline = time.monotonic() + args.timeout
                state = completion(conn, load.accepted)
                while state["succeeded"] + state["failed"] < len(load.accepted) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    state = completion(conn, load.accepted)
            report = {
                "requests": load.requests,
                "failed": len(load.failures),
                "reconnected_streams": load.reconnects,
                "cut_streams": load.cut_streams,
                "lost_jobs": len(load.accepted) - state["succeeded"] - state["failed"],
                "seconds": round(seconds, 2),
                "accepted_jobs": len(load.accepted),
                "streams_finished": load.streams_finished,
                "streams": args.streams,
                "out_of_order_events": load.out_of_order,
                "replaced_processes": replaced,
                "drain_seconds": args.drain_seconds,
                "failures": sorted(set(load.failures))[:10],
            }
            stop_processes([*processes, *live.values()])
    finally:
        if proxy is not None:
            proxy.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proxy.process.wait(timeout=10)
            proxy.log.close()
        stop_processes([*processes, *live.values()])
        redis = sync_client(admin)
        delete_prefix(redis, f"cp-bench-{tag}:")
        redis.close()
        with psycopg.connect(conninfo(admin), autocommit=True, password=connection_password(admin)) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    return report


if __name__ == "__main__":
    # SIGTERM as Ctrl-C: unwind, so the finally in main stops the servers and drops the database.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    print(orjson.dumps(main(), option=orjson.OPT_INDENT_2).decode())
