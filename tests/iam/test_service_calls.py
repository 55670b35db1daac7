"""Calls AWS services make with the plan's roles: EventBridge Scheduler stopping and starting the database outside
office hours (components/office_hours.py), as the role the plan gives the schedule, under the permissions boundary
CI gives that role. Decisions from iam-simulate, as in the IAM contract."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.iam.contract import STACKS, IamRequest, evaluate, explain, plan_for, scheduled_requests

RDS_ACTIONS = {"rds:StartDBInstance", "rds:StopDBInstance"}


def test_the_scheduler_may_stop_and_start_the_database_as_the_planned_role():
    requests = [request for stack in STACKS for request in scheduled_requests(plan_for(stack))]
    assert {(r.stack, r.action) for r in requests} >= {("dev-lean", action) for action in RDS_ACTIONS}
    lean = [r for r in requests if r.stack == "dev-lean"]
    assert all(r.principal.boundary is not None for r in lean), "evaluated without the boundary CI gives the role"

    def variant(request: IamRequest, **changes: Any) -> IamRequest:
        return replace(request, principal=replace(request.principal, **changes))

    # The check can fail: without the role's RDS statement, with a boundary lacking the RDS actions, or on a
    # database tagged with another environment.
    no_grant = [variant(r, policies=tuple(p.without(RDS_ACTIONS) for p in r.principal.policies)) for r in lean]
    no_boundary_grant = [
        variant(r, boundary=r.principal.boundary.without(RDS_ACTIONS)) for r in lean if r.principal.boundary
    ]
    other_environment = [replace(r, resource_tags={**r.resource_tags, "environment": "prod"}) for r in lean]
    decisions = evaluate([*requests, *no_grant, *no_boundary_grant, *other_environment])
    planned, rest = decisions[: len(requests)], decisions[len(requests) :]
    denied = [explain(d) for d in planned if d.result != "Allowed"]
    assert not denied, f"{len(denied)} scheduled call(s) would fail:\n\n" + "\n\n".join(denied)
    assert [d.result for d in rest] == ["ImplicitlyDenied"] * (2 * len(lean)) + ["ExplicitlyDenied"] * len(lean)
