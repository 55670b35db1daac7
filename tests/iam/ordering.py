"""The contract evaluates what the rest of the session recorded, so its tests run after every other test."""

from __future__ import annotations

from typing import Any

CONTRACT_MODULE = "tests/iam/test_contract.py"


def run_contract_last(items: list[Any]) -> None:
    items.sort(key=lambda item: item.nodeid.startswith(CONTRACT_MODULE))  # stable: keeps each group's order
