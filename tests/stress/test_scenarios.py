"""The six stress scenarios in their short forms (seconds each): real processes killed, a real PostgreSQL of
our own crashed and moved, a real tmpfs filled, real links black-holed. The full forms are `./platform stress`."""

from __future__ import annotations

from stress.report import Result
from stress.scenarios import SCENARIOS


def run_short(name: str) -> Result:
    result = SCENARIOS[name](True)
    assert result.problems == [], result.notes
    assert result.lost == 0
    assert result.duplicated == 0
    assert result.errors_5xx == 0
    return result


def test_black_friday_completes_every_job() -> None:
    result = run_short("black-friday")
    assert result.succeeded == result.accepted == result.jobs == 200


def test_worker_failure_loses_nothing_and_completes_nothing_twice() -> None:
    result = run_short("worker-failure")
    assert result.succeeded == result.accepted == result.jobs
    assert result.recovery_seconds is not None


def test_database_failover_answers_503_then_completes_every_accepted_job() -> None:
    result = run_short("database-failover")
    assert result.succeeded == result.accepted == result.jobs
    assert any("503x" in note for note in result.notes)
    assert result.recovery_seconds is not None


def test_storage_exhaustion_answers_507_and_recovers() -> None:
    result = run_short("storage-exhaustion")
    assert result.succeeded + result.failed_as_designed == result.accepted == result.jobs
    assert any("[507] with Retry-After" in note for note in result.notes)


def test_network_partition_keeps_latency_bounded_and_recovers() -> None:
    result = run_short("network-partition")
    assert result.succeeded == result.accepted == result.jobs
    assert result.recovery_seconds is not None
