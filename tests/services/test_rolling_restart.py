"""A short run of bench/rolling_restart.py: the API replaced behind HAProxy under load, in ECS's order, with
nothing failed or lost. The benchmark's own figures (several longer runs) are in docs/deployments.md."""

from __future__ import annotations

import os
import shutil

import pytest

from bench import rolling_restart


@pytest.fixture(scope="module", autouse=True)
def haproxy() -> None:
    if shutil.which("haproxy") is not None:
        return
    reason = "haproxy is not installed (Debian: apt-get install -y haproxy; .ci/run installs it when run as root)"
    if os.environ.get("PLATFORM_REQUIRE_HAPROXY") == "1":
        pytest.fail(f"PLATFORM_REQUIRE_HAPROXY=1 but {reason}")
    pytest.skip(reason)


def test_replacing_the_api_under_load_fails_no_request_and_loses_no_job() -> None:
    # GIVEN one API process behind the proxy, two clients submitting and two following a job's events
    # WHEN it is replaced (new one healthy first, then the old one drained and stopped)
    report = rolling_restart.main(
        [
            "--api",
            "1",
            "--seconds",
            "3",
            "--submitters",
            "2",
            "--interval",
            "0.1",
            "--streams",
            "2",
            "--drain-seconds",
            "0.5",
        ]
    )
    # THEN every request was answered, every accepted job finished, every stream reached its job's final event
    assert report["replaced_processes"] == 1
    assert report["requests"] > 40
    assert (report["failed"], report["failures"]) == (0, [])
    assert report["lost_jobs"] == 0
    assert report["streams_finished"] == report["streams"] == 2
    # The one process held both streams: the proxy ended each at the end of the delay, as the ALB does, and each
    # continued on the new process from its Last-Event-ID.
    assert report["cut_streams"] == 2
    assert report["reconnected_streams"] >= 2
    assert report["out_of_order_events"] == 0
