"""Database failover: the services reach PostgreSQL through one name (a proxy playing the RDS endpoint's DNS
name). Mid-run the primary dies (SIGKILL of our own throwaway server: its connections die with it), stays down a
while, and comes back on another port with the same data (a Multi-AZ standby has every committed transaction),
where the name now points. While it is down the API answers 503 with Retry-After and the client retries with the
same Idempotency-Key; afterwards every accepted job completes. Recovery: from the new primary accepting
connections until the API accepts and the workers complete jobs again."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from stress.load import Retrying
from stress.platform import Endpoints, LocalPlatform, PlatformConfig
from stress.report import Load, Result, fill
from stress.servers import PostgresServer, TcpProxy, wait_until


def run(short: bool) -> Result:
    jobs, rate, down_seconds, visibility = (80, 40.0, 1.5, 3) if short else (2400, 40.0, 20.0, 20)
    result = Result("database-failover")
    server = PostgresServer()
    server.start()
    name = TcpProxy(server.port)  # the endpoint's DNS name
    name.start()
    try:
        config = PlatformConfig(
            "database-failover",
            admin_dsn=f"host=127.0.0.1 port={name.port} user=postgres dbname=postgres",
            api=Endpoints(db_port=name.port),
            worker=Endpoints(db_port=name.port),
            env={"VISIBILITY_TIMEOUT_SECONDS": str(visibility)},
        )
        with LocalPlatform(config) as platform:
            platform.start(2)
            load = Load(platform.api_port, jobs, 8, Retrying(pace_per_second=rate), key_prefix="df")
            time.sleep(jobs / rate / 3)
            server.crash()
            crashed = time.perf_counter()
            time.sleep(down_seconds)
            old_port = server.port
            server.start()  # crash recovery on a new port: the promoted standby
            name.retarget(server.port)
            back, back_at = time.perf_counter(), datetime.now(UTC)
            wait_until(lambda: platform.completions_since(back_at) > 0, timeout=visibility * 4 + 60,
                       what="a job to complete after the failover", interval=0.1)  # fmt: skip
            completing = time.perf_counter()
            load.join(timeout=300)
            platform.wait_for_jobs(len(load.accepted), timeout=visibility * 6 + 60)
            fill(result, load, platform.outcome(load.accepted), platform.duplicates())
    finally:
        name.stop()
        server.destroy()
    accepting = min((first + seconds for first, seconds in load.acceptances() if first + seconds > back), default=back)
    result.recovery_seconds = round(max(accepting, completing) - back, 1)
    refused = [first for first, seconds in load.acceptances() if first < back and first + seconds > crashed]
    result.notes.append(
        f"primary down {down_seconds:.0f} s (port {old_port} -> {server.port} behind port {name.port});"
        f" {len(refused)} job(s) accepted only after retries across the outage;"
        f" API accepting {accepting - back:.1f} s and workers completing {completing - back:.1f} s after the primary"
    )
    result.expect_clean()
    result.expect(load.answers().get(503, 0) > 0, "no 503 while the database was down")
    result.expect(result.succeeded == result.accepted == jobs, "not every job was accepted and succeeded")
    return result
