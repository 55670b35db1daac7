"""What stays inside one environment beyond names: cross-account promotion, the state backend, alarms and scaling
targets by tag, the boundary's keys and database users. Decisions from iam-simulate (tests/iam/simulator.py)."""

from __future__ import annotations

import json

import pytest

from bootstrap.github_oidc.policies import deploy_permissions, permissions_boundary, preview_permissions
from bootstrap.github_oidc.settings import BootstrapSettings, PromotionSource
from components.scanning import repository_pull_policy
from tests.ci.iam_trust import Request, decisions
from tests.ci.test_bootstrap_scoping import (
    ACCOUNT,
    EVERYTHING,
    KEY_POLICY,
    PLATFORM_ROLE,
    arn,
    boundary_arn,
    deploy_role,
    in_region,
    tagged,
)

DEV_ACCOUNT = "210987654321"
STATE_BUCKET = "acme-pulumi-state"
DEV_KEY = "arn:aws:kms:eu-west-1:123456789012:key/dev-secrets"
PROD_KEY = "arn:aws:kms:eu-west-1:123456789012:key/prod-secrets"


def settings(**overrides) -> BootstrapSettings:
    return BootstrapSettings(
        github_org="acme", github_repo="platform", allowed_regions=("eu-west-1",), bucket_prefix="jobs-", **overrides
    )


def decide(config: BootstrapSettings, environment: str, requests: list[Request]) -> list[str]:
    return decisions(
        deploy_role(environment),
        deploy_permissions(config, ACCOUNT, environment, boundary_arn(environment)),
        requests,
    )


# --- Promotion from another account ---


def test_a_staging_account_promotes_from_dev_s_account_through_the_repository_policy():
    staging_only = settings(environments=("staging",), promote_from=PromotionSource(DEV_ACCOUNT, "jobs-dev"))
    dev_repo = f"arn:aws:ecr:eu-west-1:{DEV_ACCOUNT}:repository/jobs-dev-api"
    granted = json.loads(repository_pull_policy([deploy_role("staging")]))
    pull = [
        Request(action, dev_repo, in_region(), resource_policy=granted, resource_account=DEV_ACCOUNT)
        for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
    ]
    assert decide(staging_only, "staging", pull) == ["Allowed"] * 3
    # Without the source's repository policy, or on anything but pulls, or another prefix of that account: refused.
    assert decide(
        staging_only,
        "staging",
        [
            Request("ecr:BatchGetImage", dev_repo, in_region(), resource_account=DEV_ACCOUNT),
            Request("ecr:PutImage", dev_repo, in_region(), resource_policy=granted, resource_account=DEV_ACCOUNT),
            Request(
                "ecr:BatchGetImage",
                f"arn:aws:ecr:eu-west-1:{DEV_ACCOUNT}:repository/other-team-api",
                in_region(),
                resource_policy=json.loads(repository_pull_policy([deploy_role("staging")])),
                resource_account=DEV_ACCOUNT,
            ),
        ],
    ) == ["ImplicitlyDenied", "ImplicitlyDenied", "ImplicitlyDenied"]


def test_without_promote_from_the_first_environment_reads_no_other_registry():
    staging_only = settings(environments=("staging",))
    dev_repo = f"arn:aws:ecr:eu-west-1:{DEV_ACCOUNT}:repository/jobs-dev-api"
    granted = json.loads(repository_pull_policy([deploy_role("staging")]))
    assert decide(
        staging_only,
        "staging",
        [Request("ecr:BatchGetImage", dev_repo, in_region(), resource_policy=granted, resource_account=DEV_ACCOUNT)],
    ) == ["ImplicitlyDenied"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (("12345", "jobs-dev"), "promoteFrom.account must be a 12-digit AWS account id"),
        (("210987654321", "jobs-dev-"), "promoteFrom.prefix must be the previous environment's"),
    ],
)
def test_bad_promotion_sources_are_refused(source: tuple[str, str], message: str):
    with pytest.raises(ValueError, match=message):
        PromotionSource(*source)


# --- Self-managed state: each environment's stack only, and its own secrets key ---


def state(key: str) -> str:
    return f"arn:aws:s3:::{STATE_BUCKET}/.pulumi/{key}"


def test_each_deploy_role_writes_only_its_own_stack_s_state_and_uses_only_its_own_secrets_key():
    config = settings(state_bucket=STATE_BUCKET, secrets_kms_key_arns={"dev": DEV_KEY, "prod": PROD_KEY})
    own = [
        Request("s3:PutObject", state("stacks/container-platform/dev.json")),
        Request("s3:GetObject", state("stacks/container-platform/dev.json.bak")),
        Request("s3:PutObject", state("history/container-platform/dev/dev-1700000000.history.json")),
        Request("s3:PutObject", state("backups/container-platform/dev/dev.1700000000.json")),
        Request("s3:PutObject", state("locks/container-platform/dev/2b1c.json")),
        Request("s3:DeleteObject", state("locks/container-platform/dev/2b1c.json")),
        Request("s3:GetObject", state("meta.yaml")),
        Request("kms:Encrypt", DEV_KEY, in_region(), KEY_POLICY),
    ]
    prods = [
        Request("s3:GetObject", state("stacks/container-platform/prod.json")),
        Request("s3:PutObject", state("stacks/container-platform/prod.json")),
        Request("s3:PutObject", state("history/container-platform/prod/prod-1.history.json")),
        Request("s3:DeleteObject", state("locks/container-platform/prod/2b1c.json")),
        Request("s3:PutObject", state("stacks/container-platform/dev-lean.json")),
        Request("s3:PutObject", state("meta.yaml")),
        Request("kms:Decrypt", PROD_KEY, in_region(), KEY_POLICY),
    ]
    assert decide(config, "dev", own) == ["Allowed"] * len(own)
    assert decide(config, "dev", prods) == ["ImplicitlyDenied"] * len(prods)
    # The preview role decrypts every environment's secrets (it previews each stack).
    preview = {s["Sid"]: s for s in preview_permissions(config, ACCOUNT)["Statement"]}
    assert preview["DecryptStackSecrets"]["Resource"] == [DEV_KEY, PROD_KEY]


def test_secrets_keys_of_unknown_environments_are_refused():
    with pytest.raises(ValueError, match=r"secretsKmsKeyArns: 'qa' is not one of environments \(dev, staging, prod\)"):
        settings(secrets_kms_key_arns={"qa": DEV_KEY})


# --- Alarms and scalable targets: by the environment tag ---

ALARM = arn("cloudwatch", "alarm:api-cpu-high-7d1e2f")
TARGET = arn("application-autoscaling", "scalable-target/0ec1a2b3c4d5e6f7a8b9c0d1e2f3a4b5")
DEV_TOPIC = {"cloudwatch:AlarmActions": [arn("sns", "jobs-dev-alerts")]}


def test_dev_creates_and_changes_its_own_alarms_and_scalable_targets():
    requests = [
        Request(
            "cloudwatch:PutMetricAlarm",
            ALARM,
            in_region(**{"aws:RequestTag/environment": "dev", "aws:TagKeys": ["environment"]}, **DEV_TOPIC),
        ),
        Request("cloudwatch:PutMetricAlarm", ALARM, tagged("dev", **DEV_TOPIC)),
        Request("cloudwatch:DeleteAlarms", ALARM, tagged("dev")),
        Request(
            "application-autoscaling:RegisterScalableTarget",
            TARGET,
            in_region(**{"aws:RequestTag/environment": "dev", "aws:TagKeys": ["environment"]}),
        ),
        Request("application-autoscaling:PutScalingPolicy", TARGET, tagged("dev")),
        Request("application-autoscaling:DeregisterScalableTarget", TARGET, tagged("dev")),
    ]
    assert decide(settings(), "dev", requests) == ["Allowed"] * len(requests)


def test_dev_cannot_touch_untagged_alarms_or_scalable_targets_nor_create_them_untagged():
    requests = [
        Request("cloudwatch:PutMetricAlarm", ALARM, in_region(**DEV_TOPIC)),
        Request("cloudwatch:DeleteAlarms", ALARM, in_region()),
        Request("application-autoscaling:RegisterScalableTarget", TARGET, in_region()),
        Request("application-autoscaling:PutScalingPolicy", TARGET, in_region()),
        Request("application-autoscaling:DeregisterScalableTarget", TARGET, tagged("prod")),
    ]
    assert "Allowed" not in decide(settings(), "dev", requests)


# --- The boundary: keys by tag (or AWS managed), database users by name ---


def bounded(config: BootstrapSettings, requests: list[Request]) -> list[str]:
    return decisions(PLATFORM_ROLE, {"everything": EVERYTHING}, requests, permissions_boundary(config, ACCOUNT, "dev"))


def test_the_boundary_uses_only_keys_tagged_with_its_environment_or_aws_managed_ones():
    key = arn("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab")
    assert bounded(
        settings(),
        [
            Request("kms:Decrypt", key, tagged("dev"), KEY_POLICY),
            Request("kms:Decrypt", key, in_region(**{"kms:ResourceAliases": ["alias/aws/secretsmanager"]}), KEY_POLICY),
            Request("kms:Decrypt", key, in_region(), KEY_POLICY),
            Request("kms:Decrypt", key, in_region(**{"kms:ResourceAliases": ["alias/someone-else"]}), KEY_POLICY),
        ],
    ) == ["Allowed", "Allowed", "ImplicitlyDenied", "ImplicitlyDenied"]


def test_the_boundary_connects_to_databases_only_as_the_application_users():
    user = "arn:aws:rds-db:eu-west-1:123456789012:dbuser:db-ABCDEFGHIJKLMNOP/{}"
    assert bounded(
        settings(),
        [
            Request("rds-db:connect", user.format("app"), in_region()),
            Request("rds-db:connect", user.format("dbadmin"), in_region()),
        ],
    ) == ["Allowed", "ImplicitlyDenied"]
    assert bounded(settings(database_users=("svc",)), [Request("rds-db:connect", user.format("svc"), in_region())]) == [
        "Allowed"
    ]


def test_the_boundary_lets_services_send_email_only_through_ses_identities():
    identity = "arn:aws:ses:eu-west-1:123456789012:identity/shop.example.org"
    assert bounded(
        settings(),
        [
            Request("ses:SendEmail", identity, in_region()),
            Request("ses:SendRawEmail", identity, in_region()),
            Request("ses:SendEmail", identity, {"aws:RequestedRegion": "us-east-1"}),
            Request("ses:CreateEmailIdentity", identity, in_region()),
        ],
    ) == ["Allowed", "Allowed", "ImplicitlyDenied", "ImplicitlyDenied"]


# --- Images pulled through the account's cache (the tracing collector) ---


def test_the_boundary_lets_execution_roles_pull_through_the_cache_and_nothing_else_there():
    """Every platform role carries the boundary; without this statement no traced task could pull its collector."""
    config = settings()
    boundary = permissions_boundary(config, ACCOUNT, "dev")
    role = "arn:aws:iam::123456789012:role/container-platform/dev/jobs-dev-orders-exec-role"
    grant = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}],
    }
    cached = "arn:aws:ecr:eu-west-1:123456789012:repository/ecr-public/aws-observability/aws-otel-collector"
    region = {"aws:RequestedRegion": "eu-west-1"}
    requests = [
        Request("ecr:BatchImportUpstreamImage", cached, region),
        Request("ecr:CreateRepository", cached, region),
        Request("ecr:BatchGetImage", cached, region),
        Request("ecr:GetDownloadUrlForLayer", cached, region),
        Request("ecr:PutImage", cached, region),
        Request("ecr:BatchGetImage", "arn:aws:ecr:eu-west-1:123456789012:repository/other-team/app", region),
    ]
    assert decisions(role, {"grant": grant}, requests, boundary) == [
        "Allowed",
        "Allowed",
        "Allowed",
        "Allowed",
        "ImplicitlyDenied",
        "ImplicitlyDenied",
    ]


def test_the_boundary_names_the_platform_s_cache_prefix():
    from bootstrap.github_oidc.boundary import PULL_THROUGH_CACHE_PREFIX as BOOTSTRAP_PREFIX
    from components.tracing import PULL_THROUGH_CACHE_PREFIX

    assert BOOTSTRAP_PREFIX == PULL_THROUGH_CACHE_PREFIX


# --- Blue/green: the role ECS shifts load balancer traffic with ---


def test_the_boundary_lets_ecs_shift_traffic_on_its_environments_load_balancer_only():
    """The traffic-shift role (components/web_service.py) carries the boundary: without this statement ECS could not
    reweight the listener rules or register the new revision's targets."""
    rule = arn(
        "elasticloadbalancing", "listener-rule/app/jobs-dev-alb/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee"
    )
    group = arn("elasticloadbalancing", "targetgroup/api1a2b/6d0ecf831eec9f09")
    listener = arn("elasticloadbalancing", "listener/app/jobs-dev-alb/50dc6c495c0c9188/f2f7dc8efc522ab2")
    assert bounded(
        settings(),
        [
            Request("elasticloadbalancing:ModifyRule", rule, tagged("dev")),
            Request("elasticloadbalancing:RegisterTargets", group, tagged("dev")),
            Request("elasticloadbalancing:DeregisterTargets", group, tagged("dev")),
            Request("elasticloadbalancing:ModifyListener", listener, tagged("dev")),
            Request("elasticloadbalancing:DescribeTargetHealth", "*", in_region()),
            Request("elasticloadbalancing:ModifyRule", rule, tagged("prod")),
            Request("elasticloadbalancing:DeleteListener", listener, tagged("dev")),
        ],
    ) == ["Allowed"] * 5 + ["ExplicitlyDenied", "ImplicitlyDenied"]
