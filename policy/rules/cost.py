"""`cost-budget`: the stack's estimated monthly cost (see `costing.py`) against a budget, in total and per type.

Advisory by default: a stack over budget is reported with its estimate, not blocked, unless the pack's config
raises the enforcement level. The estimate is computed from the resources the engine shows the pack, so the
policy works on any team's stack.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .base import ADVISORY, MEDIUM, Stack, StackFinding, option, stack_policy
from .costing import Assumptions, CostError, CostEstimate, estimate

DEFAULT_MAX_MONTHLY_USD = 125
"""About the seed's "~$2-4/day while running" upper bound (4 x 30.4)."""


def _biggest(cost: CostEstimate, count: int = 3) -> str:
    top = sorted(cost.resources, key=lambda r: -r.per_month)[:count]
    return ", ".join(f"{r.name} ${r.per_month:,.2f}" for r in top)


def _summary(cost: CostEstimate) -> str:
    unpriced = f"; {len(cost.unpriced)} resource(s) not priced" if cost.unpriced else ""
    return (
        f"estimated ${cost.per_month:,.2f}/month (${cost.per_day:,.2f}/day, {cost.region} list prices{unpriced}); "
        f"biggest: {_biggest(cost)}"
    )


def _type_caps(config: Mapping[str, Any]) -> tuple[dict[str, float], list[str]]:
    caps: dict[str, float] = {}
    problems: list[str] = []
    for type_, cap in (config.get("maxMonthlyUsdByType") or {}).items():
        if isinstance(cap, int | float) and not isinstance(cap, bool) and cap >= 0:
            caps[str(type_)] = float(cap)
        else:
            problems.append(f"config maxMonthlyUsdByType[{type_!r}]: {cap!r}; allowed: USD per month, a number >= 0")
    return caps, problems


def check_cost_budget(stack: Stack) -> Iterator[StackFinding]:
    caps, problems = _type_caps(stack.config)
    for problem in problems:
        yield problem, None
    try:
        assumptions = Assumptions.from_mapping(stack.config.get("assumptions") or {}, "config assumptions")
        cost = estimate(stack.resources, stack.config.get("region") or None, assumptions)
    except CostError as error:
        yield f"cost-budget cannot estimate: {error}", None
        return
    budget = float(stack.config["maxMonthlyUsd"])
    if cost.per_month > budget:
        yield f"{_summary(cost)}; over maxMonthlyUsd ${budget:,.2f}", None
    by_type = cost.by_type()
    for type_, cap in sorted(caps.items()):
        spent = by_type.get(type_, 0.0)
        if spent > cap:
            yield (
                f"{type_} estimated ${spent:,.2f}/month, over its maxMonthlyUsdByType cap ${cap:,.2f} ({_summary(cost)})",
                None,
            )


cost_budget = stack_policy(
    name="cost-budget",
    description="Keeps the stack's estimated monthly cost, priced from its resources, within a budget.",
    check=check_cost_budget,
    severity=MEDIUM,
    level=ADVISORY,
    remediation=(
        "Size down the biggest lines (Fargate Spot/ARM64, fewer NAT gateways, smaller instance classes, "
        "Container Insights mode), or raise maxMonthlyUsd / maxMonthlyUsdByType if the spend is intended."
    ),
    config=option(
        {
            "maxMonthlyUsd": {
                "type": "number",
                "minimum": 0,
                "description": "Budget for the whole stack, USD per month at list prices.",
                "default": DEFAULT_MAX_MONTHLY_USD,
            },
            "maxMonthlyUsdByType": {
                "type": "object",
                "description": 'Optional caps per resource type token, e.g. {"aws:ecs/service:Service": 50}.',
                "default": {},
            },
            "region": {
                "type": "string",
                "description": "Price table region; empty: inferred from ARNs in the resources, else us-east-1.",
                "default": "",
            },
            "assumptions": {
                "type": "object",
                "description": "Usage assumptions overriding the defaults (keys as in docs/cost.md).",
                "default": {},
            },
        }
    ),
)

POLICIES = [cost_budget]
