"""Every policy of the pack, grouped by service. `ALL_POLICIES` is what the pack's `__main__.py` serves.

Modules here import each other relatively, so the package works both as `policy.rules` (tests, the offline
runner) and as the top-level `rules` the pack's `__main__.py` imports when the engine runs the pack directory.
`ALL_POLICIES` is assembled on first use (`catalog.py`): the offline runner imports only the cost estimator from
here, and every rule module (detect-secrets included) would otherwise load on the plan's critical path.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "ALL_POLICIES":
        from .catalog import ALL_POLICIES

        return ALL_POLICIES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
