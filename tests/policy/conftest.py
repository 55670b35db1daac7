from __future__ import annotations

from collections.abc import Iterator

import pytest

from runner.engine import PolicyPackProcess


@pytest.fixture(scope="session")
def pack() -> Iterator[PolicyPackProcess]:
    """The policy pack started once per test session, as the engine starts it."""
    with PolicyPackProcess() as running:
        yield running
