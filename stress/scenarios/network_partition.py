"""Network partition: proxies of ours sit on three links, API->Redis, worker->SQS and worker->PostgreSQL. Each is
partitioned in turn, then all three together: no byte crosses, open connections hang and new ones never reach the
other side, as with a black-holed route or a broken security group (no reset arrives). Submissions keep coming
throughout. Expected: every accepted job completes exactly once, acceptance latency stays bounded (the API does
not wait on Redis beyond its timeout), and work resumes when each link heals.

A worker stuck mid-query on a black-holed PostgreSQL link waits until the link heals; for a partition longer than
HEARTBEAT_MAX_AGE_SECONDS its health check fails and ECS replaces the task."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from stress.load import Retrying, percentile
from stress.platform import Endpoints, LocalPlatform, PlatformConfig
from stress.report import Load, Result, fill
from stress.servers import TcpProxy, wait_until

LATENCY_BOUND_SECONDS = 2.0  # the API's p99 latency alarm threshold (monitoring.py: p99_latency_alarm_seconds)


@dataclass
class Phase:
    name: str
    links: list[TcpProxy]
    start: float = 0.0
    end: float = 0.0
    recovery: float = 0.0


def run(short: bool) -> Result:
    cut_seconds, gap_seconds, rate, visibility = (0.8, 0.4, 30.0, 3) if short else (10.0, 6.0, 30.0, 20)
    result = Result("network-partition")
    redis, sqs, postgres = TcpProxy(6379), TcpProxy(0), TcpProxy(5432)
    with LocalPlatform(PlatformConfig("network-partition", env={"VISIBILITY_TIMEOUT_SECONDS": str(visibility)})) as p:
        sqs.target = ("127.0.0.1", p.fauxqs.port)
        for proxy in (redis, sqs, postgres):
            proxy.start()
        try:
            p.config.api = Endpoints(redis_port=redis.port)
            p.config.worker = Endpoints(db_port=postgres.port, sqs_url=f"http://127.0.0.1:{sqs.port}")
            p.start(2)
            phases = [
                Phase("api-redis", [redis]),
                Phase("worker-sqs", [sqs]),
                Phase("worker-postgres", [postgres]),
                Phase("all", [redis, sqs, postgres]),
            ]
            jobs = round(rate * (gap_seconds + len(phases) * (cut_seconds + gap_seconds)))
            load = Load(p.api_port, jobs, 8, Retrying(pace_per_second=rate), key_prefix="np")
            for phase in phases:
                time.sleep(gap_seconds)
                _partition(p, phase, cut_seconds, visibility)
            load.join(timeout=300)
            p.wait_for_jobs(len(load.accepted), timeout=visibility * 6 + 60)
            fill(result, load, p.outcome(load.accepted), p.duplicates())
        finally:
            for proxy in (redis, sqs, postgres):
                proxy.heal()
                proxy.stop()
    degraded = [
        seconds for first, seconds in load.acceptances() if any(phase.start <= first <= phase.end for phase in phases)
    ]
    worst = percentile(degraded, 0.99) if degraded else 0.0
    result.recovery_seconds = round(max(phase.recovery for phase in phases), 1)
    result.notes.append(
        f"each link cut {cut_seconds:.0f} s; acceptance while cut: p99 {worst * 1000:.0f} ms,"
        f" max {max(degraded, default=0) * 1000:.0f} ms over {len(degraded)} jobs; completions resumed after healing: "
        + ", ".join(f"{phase.name} {phase.recovery:.1f} s" for phase in phases)
    )
    result.expect_clean()
    result.expect(worst <= LATENCY_BOUND_SECONDS, f"p99 acceptance {worst:.1f} s while degraded")
    result.expect(result.succeeded == result.accepted == load.jobs, "not every job was accepted and succeeded")
    return result


def _partition(platform: LocalPlatform, phase: Phase, seconds: float, visibility: int) -> None:
    phase.start = time.perf_counter()
    for link in phase.links:
        link.partition()
    time.sleep(seconds)
    for link in phase.links:
        link.heal()
    phase.end, healed_at = time.perf_counter(), datetime.now(UTC)
    # Nothing unfinished: nothing was held up (possible only if the load had already ended).
    wait_until(lambda: platform.completions_since(healed_at) > 0 or platform.unfinished() == 0,
               timeout=visibility * 4 + 60, what=f"a job to complete after healing {phase.name}", interval=0.1)  # fmt: skip
    phase.recovery = time.perf_counter() - phase.end
