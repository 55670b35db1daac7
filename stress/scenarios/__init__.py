"""The six scenarios, by their command-line names. Each takes `short` (the test suite's seconds-long form) and
returns its `Result` row; each owns everything it starts and stops it, also when it fails."""

from __future__ import annotations

from collections.abc import Callable

from stress.report import Result
from stress.scenarios import (
    black_friday,
    database_failover,
    network_partition,
    security_incident,
    storage_exhaustion,
    worker_failure,
)

Scenario = Callable[[bool], Result]

SCENARIOS: dict[str, Scenario] = {
    "black-friday": black_friday.run,
    "worker-failure": worker_failure.run,
    "database-failover": database_failover.run,
    "storage-exhaustion": storage_exhaustion.run,
    "network-partition": network_partition.run,
    "security-incident": security_incident.run,
}
