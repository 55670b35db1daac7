"""Black Friday: 10,000 jobs as fast as the API takes them (the seed: in 5 minutes), workers running meanwhile;
every job completes. The workers run at nice 10, as bench/submit_jobs.py explains: in AWS they are tasks with CPU
of their own, here they share two cores with the API."""

from __future__ import annotations

import statistics
import time

from stress.load import Retrying, percentile
from stress.platform import LocalPlatform, PlatformConfig
from stress.report import Load, Result, fill

SEED_SECONDS = 300.0  # the seed's "10,000 jobs in 5 minutes"


def run(short: bool) -> Result:
    jobs, concurrency = (200, 16) if short else (10_000, 64)
    result = Result("black-friday")
    with LocalPlatform(PlatformConfig("black-friday", env={"DB_POOL_MIN": "10"})) as platform:
        platform.start(2, nice=10)
        started = time.perf_counter()
        load = Load(platform.api_port, jobs, concurrency, Retrying(), key_prefix="bf")
        load.join(timeout=SEED_SECONDS)
        finished = platform.wait_for_jobs(len(load.accepted), timeout=SEED_SECONDS)
        fill(result, load, platform.outcome(load.accepted), platform.duplicates())
    latencies = [seconds for _, seconds in load.acceptances()]
    end_to_end = finished - started
    result.notes.append(
        f"accepted {len(latencies) / load.seconds:.0f} jobs/s, submit p50 {statistics.median(latencies) * 1000:.1f} ms"
        f" p99 {percentile(latencies, 0.99) * 1000:.1f} ms; all final after {end_to_end:.1f} s"
    )
    result.expect_clean()
    result.expect(result.succeeded == result.accepted == jobs, "not every job was accepted and succeeded")
    result.expect(end_to_end <= SEED_SECONDS, f"took {end_to_end:.0f} s, over the seed's {SEED_SECONDS:.0f} s")
    return result
