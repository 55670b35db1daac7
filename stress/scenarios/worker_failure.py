"""Worker failure: workers are SIGKILLed at random, one every 1-3 s, through the whole submission and until the
chaos window ends; ECS's part is played by starting a replacement a moment after each kill. A killed worker's
messages come back after the visibility timeout and its running job's lease expires with it, so the timeout is
shortened here (prod: 120 s) to keep the run bounded. Nothing may be lost and nothing completed twice."""

from __future__ import annotations

import random
import threading
import time

from stress.load import Retrying
from stress.platform import LocalPlatform, PlatformConfig
from stress.report import Load, Result, fill

REPLACEMENT_DELAY_SECONDS = 0.5  # ECS takes tens of seconds to place and start a task; the order is what matters


def run(short: bool) -> Result:
    jobs, rate, workers, visibility = (80, 40.0, 2, 3) if short else (3000, 60.0, 3, 10)
    chaos_seconds = 2.5 if short else 60.0
    result = Result("worker-failure")
    config = PlatformConfig("worker-failure", env={"VISIBILITY_TIMEOUT_SECONDS": str(visibility)})
    with LocalPlatform(config) as platform:
        platform.start(workers)
        started = time.perf_counter()
        load = Load(platform.api_port, jobs, 8, Retrying(pace_per_second=rate), key_prefix="wf")
        kills, last_kill, backlog = 0, started, 0
        while time.perf_counter() - started < chaos_seconds:
            time.sleep(random.uniform(1.0, 3.0) if not short else random.uniform(0.8, 1.5))  # noqa: S311
            platform.kill_random_worker()
            kills, last_kill = kills + 1, time.perf_counter()
            backlog = platform.unfinished()
            threading.Timer(REPLACEMENT_DELAY_SECONDS, platform.start_worker, kwargs={"wait": False}).start()
        load.join(timeout=300)
        time.sleep(REPLACEMENT_DELAY_SECONDS + 0.1)  # the last replacement has been started
        finished = platform.wait_for_jobs(len(load.accepted), timeout=visibility * 6 + 60)
        fill(result, load, platform.outcome(load.accepted), platform.duplicates())
        with platform.connect() as conn:
            row = conn.execute("SELECT count(*) AS n FROM jobs WHERE attempts > 1").fetchone()
        retried = row["n"] if row else 0
    result.recovery_seconds = round(finished - last_kill, 1)
    result.notes.append(
        f"{kills} SIGKILLs, {len(platform.workers)} worker processes in all; {retried} job(s) ran again after a kill;"
        f" visibility timeout {visibility} s; recovery: last kill to every job final ({backlog} unfinished then)"
    )
    result.expect_clean()
    result.expect(kills >= (2 if short else 20), f"only {kills} kills")
    result.expect(result.succeeded == result.accepted == jobs, "not every job was accepted and succeeded")
    return result
