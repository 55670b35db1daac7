"""The calls ECS makes before a task starts (tests/iam/task_start.py: the image pull, `secrets`, the awslogs driver,
EFS with IAM authorization), as each stack's planned task definitions need them, evaluated as the planned execution
role (the task role for EFS) under the boundary CI gives it. A denied call means a task that never starts. The AWS
documents these calls are taken from are cited in tests/iam/task_start.py:
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html (image pull, awslogs,
"Secrets Manager or Systems Manager permissions"), https://docs.aws.amazon.com/AmazonECR/latest/userguide/
pull-through-cache-iam.html, https://docs.aws.amazon.com/AmazonECS/latest/developerguide/efs-volumes.html."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from functools import cache

from runner.records import ResourceRecord
from tests.iam.contract import STACKS, Decision, IamRequest, PlanIndex, evaluate, explain, names_any, plan_for
from tests.iam.task_start import task_start_requests


@cache
def planned_requests() -> tuple[IamRequest, ...]:
    return tuple(request for stack in STACKS for request in task_start_requests(plan_for(stack)))


def decide(requests: Iterable[IamRequest]) -> list[Decision]:
    return evaluate(list(requests))


def role_without(request: IamRequest, actions: set[str]) -> IamRequest:
    policies = tuple(p.without(actions) for p in request.principal.policies)
    return replace(request, principal=replace(request.principal, policies=policies))


def boundary_without(request: IamRequest, actions: set[str]) -> IamRequest:
    boundary = request.principal.boundary
    assert boundary is not None
    return replace(request, principal=replace(request.principal, boundary=boundary.without(actions)))


def test_every_call_ecs_makes_to_start_the_planned_tasks_is_allowed():
    requests = planned_requests()
    covered = {(r.stack, r.action) for r in requests}
    # What the stacks plan: EFS with IAM authorization in the job platform's stacks; in the shop a generated secret
    # under the service's own key (current and AWSPREVIOUS), the collector through the pull-through cache, and
    # Service Connect proxies logging with the execution role.
    for stack in ("dev", "staging", "prod", "dev-lean"):
        assert {(stack, "elasticfilesystem:ClientMount"), (stack, "secretsmanager:GetSecretValue")} <= covered
    assert {
        ("shop", action)
        for action in ("kms:Decrypt", "ecr:BatchImportUpstreamImage", "ecr:CreateRepository", "logs:PutLogEvents")
    } <= covered
    assert any(r.call.resource.value.endswith(":AWSPREVIOUS:") for r in requests if r.stack == "shop")
    assert any(r.call.resource.value.endswith("/service-connect") for r in requests if r.stack == "shop")
    assert all(r.principal.boundary is not None for r in requests), "evaluated without the boundary CI gives roles"
    assert all(r.resource_policy for r in requests if r.action == "kms:Decrypt"), "the key policy must count"

    denied = [explain(d) for d in decide(requests) if d.result != "Allowed"]
    assert not denied, f"{len(denied)} call(s) ECS makes to start a task would fail:\n\n" + "\n\n".join(denied)


def shop_without_secret_reads() -> PlanIndex:
    """A copy of the shop's plan whose execution roles' secret-read policies lost their statements."""
    index = plan_for("shop")

    def emptied(record: ResourceRecord) -> ResourceRecord:
        if (
            record.type != "aws:iam/rolePolicy:RolePolicy"
            or "secretsmanager:GetSecretValue" not in record.inputs["policy"]
        ):
            return record
        document = json.loads(record.inputs["policy"])
        statements = [s for s in document["Statement"] if not names_any(s, {"secretsmanager:GetSecretValue"})]
        return replace(record, inputs={**record.inputs, "policy": json.dumps({**document, "Statement": statements})})

    return PlanIndex(replace(index.plan, resources=[emptied(r) for r in index.plan.resources]))


def test_the_check_fails_when_a_grant_ecs_needs_is_missing():
    requests = planned_requests()

    def of(stack: str, action: str) -> list[IamRequest]:
        return [r for r in requests if r.stack == stack and r.action == action]

    secret_reads = [r for r in task_start_requests(shop_without_secret_reads()) if r.action.startswith("secrets")]
    variants = {
        # The plan copy without the execution roles' secret reads: no secret can be injected.
        "secret read removed from the plan": secret_reads,
        "key grant removed from the role": [role_without(r, {"kms:Decrypt"}) for r in of("shop", "kms:Decrypt")],
        "pull-through import removed from the role": [
            role_without(r, {"ecr:BatchImportUpstreamImage"}) for r in of("shop", "ecr:BatchImportUpstreamImage")
        ],
        "secrets removed from the boundary": [
            boundary_without(r, {"secretsmanager:GetSecretValue"}) for r in of("dev", "secretsmanager:GetSecretValue")
        ],
        "mount grant removed from the task role": [
            role_without(r, {"elasticfilesystem:ClientMount"}) for r in of("prod", "elasticfilesystem:ClientMount")
        ],
        "another access point": [
            replace(
                r,
                context={
                    **r.context,
                    "elasticfilesystem:AccessPointArn": f"{r.context['elasticfilesystem:AccessPointArn']}0",
                },
            )
            for r in of("prod", "elasticfilesystem:ClientWrite")
        ],
    }
    assert all(variants.values()), {name: len(v) for name, v in variants.items()}
    decisions = iter(decide(r for variant in variants.values() for r in variant))
    results = {name: {next(decisions).result for _ in variant} for name, variant in variants.items()}
    assert results == {name: {"ImplicitlyDenied"} for name in variants}
