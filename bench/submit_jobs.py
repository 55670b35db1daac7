"""Benchmark: submit N jobs over HTTP and measure acceptance and end-to-end completion.

    uv run python bench/submit_jobs.py [--jobs 10000] [--concurrency 64] [--api-workers 1] [--workers 2]
                                       [--worker-nice 10]

Everything runs locally and is torn down at the end: fauxqs on a free port, a throwaway PostgreSQL
database (cp_bench_<random>, dropped afterwards), a private Redis key prefix, the API (uvicorn) and the
workers as subprocesses. Workers run during submission, as in production. The client is a minimal
keep-alive HTTP/1.1 client on uvloop (one connection per concurrent submitter) so that it costs less
CPU than the server it measures. Prints one JSON document, with the CPU each part used per job.

Everything shares this machine's two cores, while in AWS the API and the workers are separate ECS
services with CPU of their own (and PostgreSQL, Redis and SQS are managed services). `--worker-nice`
(default 10) lets the API's process win the cores when both want them, as its own task would;
`--worker-nice 0` gives every process an equal share. The API runs `--api-workers` processes
(default 1, as a dev or staging task does; the program gives prod's 2-vCPU tasks 2).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import psycopg
import uvloop
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.common.db import connection_password, conninfo
from services.common.migrate import apply_migrations
from services.common.redis_client import delete_prefix, sync_client
from services.common.settings import Settings
from services.common.sqs import ensure_queues, sqs_client
from services.fauxqs import Fauxqs, free_port
from services.local import stop_processes
from stress.load import percentile, submit_all
from stress.platform import completion, wait_for_api, wait_for_workers

LOCAL_DIR = Path(__file__).resolve().parent.parent / ".local"


def cpu_probe_ms() -> float:
    """CPU time of a fixed pure-Python workload. This virtual machine's speed drifts (three times this
    workload took 241-376 ms on an idle machine within a minute), so the probe says how fast it was."""
    started = time.process_time()
    for number in range(100_000):
        hashlib.sha256(str(number).encode()).hexdigest()
    return round((time.process_time() - started) * 1000, 1)


def _proc_stats() -> dict[int, tuple[str, int, float]]:
    """pid -> (command name, parent pid, CPU seconds used by it and its reaped children)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[str, int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name, _, rest = (entry / "stat").read_text().partition(" (")[2].rpartition(")")
        except OSError:
            continue  # exited meanwhile
        fields = rest.split()
        # utime + stime, plus cutime + cstime: the CPU of children that exited (PostgreSQL backends)
        used = sum(int(value) for value in fields[11:15]) / ticks
        stats[int(entry.name)] = (name, int(fields[1]), used)
    return stats


def server_roots(command: str) -> list[int]:
    """The top processes named `command` (the postmaster, not its backends): shared servers we measure."""
    stats = _proc_stats()
    return [
        pid
        for pid, (name, parent, _) in stats.items()
        if name == command and stats.get(parent, ("", 0, 0.0))[0] != command
    ]


def cpu_seconds(roots: list[int], stats: dict[int, tuple[str, int, float]]) -> float:
    """CPU seconds used so far by these processes and all their descendants (the API's spawned servers)."""
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, pending = 0.0, list(roots)
    while pending:
        pid = pending.pop()
        total += stats.get(pid, ("", 0, 0.0))[2]
        pending.extend(children.get(pid, []))
    return total


def machine_seconds() -> tuple[float, float, float]:
    """(busy, steal, total) CPU seconds of the whole machine since boot, from /proc/stat. Steal is time
    the hypervisor gave our virtual CPUs to someone else: when it is high, every figure here suffers."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / ticks, values[7] / ticks, sum(values) / ticks


class CpuWindow:
    """CPU used by each group of processes, and by the whole machine, between `start()` and `stop()`."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self._groups = groups

    def _used(self) -> dict[str, float]:
        stats = _proc_stats()  # one snapshot for every group
        return {name: cpu_seconds(pids, stats) for name, pids in self._groups.items()}

    def start(self) -> None:
        self._begin = self._used()
        self._client = time.process_time()  # this process alone: the load generator
        self._machine = machine_seconds()

    def stop(self, jobs: int, seconds: float) -> dict[str, float]:
        used = {name: value - self._begin[name] for name, value in self._used().items()}
        used["client"] = time.process_time() - self._client
        busy, steal, total = (now - then for now, then in zip(machine_seconds(), self._machine, strict=True))
        report = {f"{name}_ms_per_job": round(value * 1000 / max(1, jobs), 3) for name, value in used.items()}
        report |= {f"{name}_cores": round(value / seconds, 2) for name, value in used.items()}
        report["machine_busy_percent"] = round(100 * busy / total, 1)
        report["machine_steal_percent"] = round(100 * steal / total, 1)
        return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180.0, help="give up waiting for completion after this")
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=10,
        choices=range(20),
        metavar="0..19",
        help="run the workers at this niceness (in AWS they are separate tasks with CPU of their own)",
    )
    args = parser.parse_args()

    # SIGTERM as Ctrl-C: unwind, so the finally below stops the servers and drops the database.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    probe_ms = cpu_probe_ms()
    tag = uuid.uuid4().hex[:10]
    database = f"cp_bench_{tag}"
    admin = Settings(DB_NAME="postgres")
    with psycopg.connect(conninfo(admin), autocommit=True, password=connection_password(admin)) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # Not under /tmp: creating a file there costs ~0.44 ms of CPU on this machine against ~0.03 ms in the
        # work tree (same ext4 device), which is a sandbox artefact, not what EFS or a task's volume costs.
        LOCAL_DIR.mkdir(exist_ok=True)
        with Fauxqs() as fauxqs, tempfile.TemporaryDirectory(prefix="cp-bench-", dir=LOCAL_DIR) as storage:
            port = free_port()
            env = {
                "APP_ENV": "local",
                "LOG_LEVEL": "WARNING",
                "DB_NAME": database,
                "DB_POOL_MAX": "16",
                "DB_POOL_MIN": "10",  # the API's group commit runs up to 8 inserts at once
                "REDIS_KEY_PREFIX": f"cp-bench-{tag}:",
                "SQS_ENDPOINT_URL": fauxqs.endpoint_url,
                "STORAGE_PATH": storage,
                "PORT": str(port),
                "API_WORKERS": str(args.api_workers),
                "RATE_LIMIT_PER_SECOND": "100000",
                "RATE_LIMIT_BURST": "100000",
                "IDLE_WAIT_SECONDS": "1",
            }
            settings = Settings(**env)  # pyright: ignore[reportArgumentType]
            env |= ensure_queues(sqs_client(settings), f"bench-{tag}", 5, 120)
            apply_migrations(settings)
            child_env = {**os.environ, **env}
            processes.append(subprocess.Popen([sys.executable, "-m", "services.api"], env=child_env))
            for index in range(args.workers):
                worker_env = {**child_env, "HEARTBEAT_FILE": f"{storage}/heartbeat-{index}", "DB_POOL_MIN": "2"}
                processes.append(
                    subprocess.Popen(
                        ["nice", "-n", str(args.worker_nice), sys.executable, "-m", "services.worker"], env=worker_env
                    )
                )
            wait_for_api(port)
            wait_for_workers([Path(storage) / f"heartbeat-{index}" for index in range(args.workers)])

            cpu = CpuWindow(
                {
                    "api": [processes[0].pid],
                    "workers": [process.pid for process in processes[1:]],
                    "postgres": server_roots("postgres"),
                    "redis": server_roots("redis-server"),
                    "fauxqs": [fauxqs.pid],
                }
            )
            cpu.start()
            started = time.perf_counter()
            submitters, submit_seconds = uvloop.run(submit_all(port, args.jobs, args.concurrency))
            cpu_during_submit = cpu.stop(args.jobs, submit_seconds)
            ids = [job_id for s in submitters for job_id in s.accepted]
            latencies = [latency for s in submitters for latency in s.latencies]
            rejected: dict[int, int] = {}
            for s in submitters:
                for status, count in s.rejected.items():
                    rejected[status] = rejected.get(status, 0) + count

            with psycopg.connect(conninfo(settings), autocommit=True, password=connection_password(settings)) as conn:
                state = completion(conn)
                while state["succeeded"] + state["failed"] < len(ids) and time.perf_counter() - started < args.timeout:
                    time.sleep(0.2)
                    state = completion(conn)
                end_to_end = time.perf_counter() - started
                cpu_until_done = cpu.stop(args.jobs, end_to_end)
                state = completion(conn, ids)
                duplicated = conn.execute(
                    "SELECT count(*) FROM (SELECT job_id FROM job_transitions WHERE to_status = 'succeeded'"
                    " GROUP BY job_id HAVING count(*) > 1) d"
                ).fetchone()
            report = {
                "jobs": args.jobs,
                "concurrency": args.concurrency,
                "api_workers": args.api_workers,
                "workers": args.workers,
                "worker_nice": args.worker_nice,
                "accepted": len(ids),
                "rejected_by_status": rejected,
                "submit_seconds": round(submit_seconds, 3),
                "accepted_jobs_per_second": round(len(ids) / submit_seconds, 1),
                "submit_latency_ms": {
                    "p50": round(statistics.median(latencies) * 1000, 2),
                    "p99": round(percentile(latencies, 0.99) * 1000, 2),
                    "max": round(max(latencies) * 1000, 2),
                },
                "cpu_during_submit": cpu_during_submit,
                "cpu_until_done": cpu_until_done,
                "end_to_end_seconds": round(end_to_end, 3),
                "succeeded": state["succeeded"],
                "failed": state["failed"],
                "lost": len(ids) - state["succeeded"] - state["failed"],
                "duplicated": (duplicated[0] if duplicated else 0) + len(ids) - len(set(ids)),
                "cpu_count": os.cpu_count(),
                "cpu_probe_ms": probe_ms,
            }
            print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
            stop_processes(processes)  # before fauxqs goes away, so workers shut down cleanly
    finally:
        stop_processes(processes)
        redis = sync_client(admin)
        delete_prefix(redis, f"cp-bench-{tag}:")
        redis.close()
        with psycopg.connect(conninfo(admin), autocommit=True, password=connection_password(admin)) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
