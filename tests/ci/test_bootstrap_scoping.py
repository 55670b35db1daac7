"""One account, three doors: each deploy role and each permissions boundary reaches only its own environment.

Every decision comes from iam-simulate (tests/iam/simulate.mjs), given the ARNs the platform's stacks create
(`<applicationName>-<env>...` names, `<iamPath><env>/` roles) and, for ARNs that hold only an id, the environment
tag every resource carries.
"""

from __future__ import annotations

import pytest

from bootstrap.github_oidc.policies import AwsAccount, deploy_permissions, permissions_boundary
from bootstrap.github_oidc.settings import BootstrapSettings
from tests.ci.iam_trust import Request, decisions

ACCOUNT = AwsAccount(partition="aws", account_id="123456789012")
REGION = "eu-west-1"
ENVIRONMENTS = ("dev", "staging", "prod")
SETTINGS = BootstrapSettings(
    github_org="acme", github_repo="platform", allowed_regions=(REGION,), bucket_prefix="jobs-"
)


# The default key policy: the account delegates the key's use to IAM policies (what the platform's keys do).
KEY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"}
    ],
}


def boundary_arn(environment: str) -> str:
    return f"arn:aws:iam::123456789012:policy/container-platform-ci/github-oidc-boundary-{environment}"


def deploy_role(environment: str) -> str:
    return f"arn:aws:iam::123456789012:role/container-platform-ci/github-oidc-deploy-{environment}"


def decide(environment: str, requests: list[Request]) -> list[str]:
    policies = deploy_permissions(SETTINGS, ACCOUNT, environment, boundary_arn(environment))
    return decisions(deploy_role(environment), policies, requests)


def arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:123456789012:{resource}"


def in_region(**context: str | list[str]) -> dict[str, str | list[str]]:
    return {"aws:RequestedRegion": REGION, **context}


def tagged(environment: str, **context: str | list[str]) -> dict[str, str | list[str]]:
    return in_region(**{"aws:ResourceTag/environment": environment}, **context)


def owned_by(env: str) -> list[Request]:
    """What a deploy changes in environment `env`'s stack: one mutating call per service, on the ARNs (and tags)
    that stack's resources have."""
    p = f"jobs-{env}"
    return [
        Request("ecs:UpdateService", arn("ecs", f"service/{p}/{p}-api"), in_region()),
        Request("ecs:DeleteCluster", arn("ecs", f"cluster/{p}"), in_region()),
        Request("ecs:RegisterTaskDefinition", arn("ecs", f"task-definition/{p}-api:7"), in_region()),
        Request(
            "elasticloadbalancing:ModifyListener",
            arn("elasticloadbalancing", f"listener/app/{p}-alb/50dc6c495c0c9188/f2f7dc8efc522ab2"),
            in_region(),
        ),
        Request(
            "elasticloadbalancing:ModifyTargetGroup",
            arn("elasticloadbalancing", "targetgroup/api2024/73e2d6bc24d8a067"),
            tagged(env),
        ),
        Request("rds:ModifyDBInstance", arn("rds", f"db:{p}-postgres"), in_region()),
        Request("rds:ModifyDBParameterGroup", arn("rds", "pg:database-params-1234567"), tagged(env)),
        Request("elasticache:ModifyReplicationGroup", arn("elasticache", f"replicationgroup:{p}-cache"), in_region()),
        Request(
            "elasticfilesystem:DeleteFileSystem", arn("elasticfilesystem", "file-system/fs-0123456789"), tagged(env)
        ),
        Request("s3:PutBucketPolicy", f"arn:aws:s3:::{p}-alb-logs-20240101", in_region()),
        Request("sqs:SetQueueAttributes", arn("sqs", f"{p}-worker-high"), in_region()),
        Request("sns:SetTopicAttributes", arn("sns", f"{p}-alerts"), in_region()),
        Request(
            "secretsmanager:PutSecretValue", arn("secretsmanager", f"secret:{p}/cache-auth-token-1-AbCdEf"), in_region()
        ),
        Request("ssm:PutParameter", arn("ssm", f"parameter/{p}/feature-flags"), in_region()),
        Request(
            "kms:ScheduleKeyDeletion", arn("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab"), tagged(env), KEY_POLICY
        ),
        Request("kms:UpdateAlias", arn("kms", f"alias/{p}-platform"), in_region(), KEY_POLICY),
        Request("lambda:UpdateFunctionCode", arn("lambda", f"function:{p}-scan-alerts"), in_region()),
        Request("codebuild:UpdateProject", arn("codebuild", f"project/{p}-images"), in_region()),
        Request("ecr:PutLifecyclePolicy", arn("ecr", f"repository/{p}-api"), in_region()),
        Request("logs:DeleteLogGroup", arn("logs", f"log-group:/ecs/{p}/api"), in_region()),
        Request("events:PutTargets", arn("events", f"rule/{p}-image-scan-complete"), in_region()),
        Request("cloudwatch:PutDashboard", f"arn:aws:cloudwatch::123456789012:dashboard/{p}-database", in_region()),
        Request("ec2:AuthorizeSecurityGroupIngress", arn("ec2", "security-group/sg-0123456789abcdef0"), tagged(env)),
        Request("ec2:DeleteVpc", arn("ec2", "vpc/vpc-0123456789abcdef0"), tagged(env)),
        Request("servicediscovery:DeleteNamespace", arn("servicediscovery", "namespace/ns-abcdef"), tagged(env)),
        Request(
            "iam:UpdateAssumeRolePolicy",
            f"arn:aws:iam::123456789012:role/container-platform/{env}/{p}-api-task-role-1234567",
        ),
        Request(
            "iam:PutRolePolicy",
            f"arn:aws:iam::123456789012:role/container-platform/{env}/{p}-api-task-role-1234567",
            {"iam:PermissionsBoundary": boundary_arn(env)},
        ),
        Request(
            "iam:PassRole",
            f"arn:aws:iam::123456789012:role/container-platform/{env}/{p}-api-exec-role-1234567",
            {"iam:PassedToService": "ecs-tasks.amazonaws.com"},
        ),
    ]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_deploy_role_changes_its_own_environment(environment: str):
    requests = owned_by(environment)
    results = decide(environment, requests)
    refused = [
        (r.action, r.resource, result) for r, result in zip(requests, results, strict=True) if result != "Allowed"
    ]
    assert not refused, refused


@pytest.mark.parametrize(
    ("role", "target"),
    [(role, target) for role in ENVIRONMENTS for target in ENVIRONMENTS if role != target],
)
def test_no_deploy_role_changes_another_environment(role: str, target: str):
    requests = owned_by(target)
    results = decide(role, requests)
    allowed = [(r.action, r.resource) for r, result in zip(requests, results, strict=True) if result == "Allowed"]
    assert not allowed, f"the {role} deploy role may change {target}: {allowed}"
    assert not [result for result in results if result.startswith("Error")], results


def test_dev_cannot_add_to_prod_network_or_claim_prod_resources():
    prod_vpc = arn("ec2", "vpc/vpc-0prod")
    requests = [
        # a new subnet, tagged dev, in prod's VPC: the VPC is checked by its own tag
        Request("ec2:CreateSubnet", prod_vpc, tagged("prod", **{"aws:RequestTag/environment": "dev"})),
        # retagging a prod resource as dev
        Request("ec2:CreateTags", prod_vpc, tagged("prod", **{"aws:RequestTag/environment": "dev"})),
        # creating a resource tagged prod
        Request("ec2:CreateVpc", arn("ec2", "vpc/*"), in_region(**{"aws:RequestTag/environment": "prod"})),
        # removing the environment tag from its own resource (to make it look unowned)
        Request("ec2:DeleteTags", arn("ec2", "vpc/vpc-0dev"), tagged("dev", **{"aws:TagKeys": ["environment"]})),
        # Route 53 records of prod's Cloud Map domain
        Request(
            "route53:ChangeResourceRecordSets",
            "arn:aws:route53:::hostedzone/Z0PROD",
            {"route53:ChangeResourceRecordSetsNormalizedRecordNames": ["api.jobs-prod.local"]},
        ),
        # the account-wide registry scanning configuration belongs to prod's stack
        Request("ecr:PutRegistryScanningConfiguration", "*", in_region()),
        # a region that is not allowed
        Request(
            "sqs:CreateQueue", "arn:aws:sqs:us-west-2:123456789012:jobs-dev-x", {"aws:RequestedRegion": "us-west-2"}
        ),
    ]
    results = decide("dev", requests)
    assert all(result in ("ExplicitlyDenied", "ImplicitlyDenied") for result in results), list(
        zip([r.action for r in requests], results, strict=True)
    )


def test_dev_creates_its_own_network_with_its_tag():
    requests = [
        Request("ec2:CreateVpc", arn("ec2", "vpc/*"), in_region(**{"aws:RequestTag/environment": "dev"})),
        Request("ec2:CreateSubnet", arn("ec2", "subnet/*"), in_region(**{"aws:RequestTag/environment": "dev"})),
        Request("ec2:CreateSubnet", arn("ec2", "vpc/vpc-0dev"), tagged("dev", **{"aws:RequestTag/environment": "dev"})),
        Request("ec2:CreateTags", arn("ec2", "subnet/subnet-0new"), in_region(**{"aws:RequestTag/environment": "dev"})),
        Request(
            "route53:ChangeResourceRecordSets",
            "arn:aws:route53:::hostedzone/Z0DEV",
            {"route53:ChangeResourceRecordSetsNormalizedRecordNames": ["api.jobs-dev.local"]},
        ),
    ]
    assert decide("dev", requests) == ["Allowed"] * len(requests)


def test_roles_only_under_the_own_path_with_the_own_boundary():
    own = "arn:aws:iam::123456789012:role/container-platform/dev/jobs-dev-new-role"
    results = decide(
        "dev",
        [
            Request("iam:CreateRole", own, {"iam:PermissionsBoundary": boundary_arn("dev")}),
            Request("iam:CreateRole", own, {}),
            Request("iam:CreateRole", own, {"iam:PermissionsBoundary": boundary_arn("prod")}),
            Request(
                "iam:CreateRole",
                "arn:aws:iam::123456789012:role/container-platform/prod/x",
                {"iam:PermissionsBoundary": boundary_arn("dev")},
            ),
            Request("iam:UpdateAssumeRolePolicy", "arn:aws:iam::123456789012:role/admin"),
            Request("iam:UpdateAssumeRolePolicy", deploy_role("prod")),
            Request("iam:CreatePolicyVersion", boundary_arn("dev")),
            Request("iam:DeleteRolePermissionsBoundary", own),
        ],
    )
    assert results[0] == "Allowed"
    assert results[1:3] == ["ExplicitlyDenied"] * 2  # without the boundary, or with another environment's
    assert results[3] == "ImplicitlyDenied"  # another environment's path
    assert results[4:] == ["ExplicitlyDenied"] * 4


def test_promotion_reads_the_previous_environments_images_only():
    pull = "ecr:BatchGetImage"
    dev_repo, staging_repo = arn("ecr", "repository/jobs-dev-api"), arn("ecr", "repository/jobs-staging-api")
    assert decide(
        "staging", [Request(pull, dev_repo, tagged("dev")), Request("ecr:PutImage", dev_repo, in_region())]
    ) == [
        "Allowed",
        "ImplicitlyDenied",
    ]
    assert decide("prod", [Request(pull, staging_repo, in_region()), Request(pull, dev_repo, in_region())]) == [
        "Allowed",
        "ImplicitlyDenied",
    ]
    assert decide("dev", [Request(pull, staging_repo, in_region())]) == ["ImplicitlyDenied"]
    assert decide("prod", [Request("ecr:PutRegistryScanningConfiguration", "*", in_region())]) == ["Allowed"]


# --- The permissions boundary: the ceiling of every role a stack creates ---

EVERYTHING = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
PLATFORM_ROLE = "arn:aws:iam::123456789012:role/container-platform/dev/jobs-dev-worker-task-role-1234567"


def bounded(environment: str, requests: list[Request]) -> list[str]:
    """A platform role that grants itself everything, capped by the environment's boundary."""
    return decisions(
        PLATFORM_ROLE, {"everything": EVERYTHING}, requests, permissions_boundary(SETTINGS, ACCOUNT, environment)
    )


def data_plane(env: str) -> list[Request]:
    p = f"jobs-{env}"
    return [
        Request(
            "secretsmanager:GetSecretValue", arn("secretsmanager", f"secret:{p}/cache-auth-token-1-AbCdEf"), in_region()
        ),
        Request(
            "secretsmanager:GetSecretValue",
            arn("secretsmanager", "secret:rds!db-0f6a1b2c-AbCdEf"),
            in_region(**{"aws:ResourceTag/aws:rds:primaryDBInstanceArn": arn("rds", f"db:{p}-postgres")}),
        ),
        Request("ssm:GetParameter", arn("ssm", f"parameter/{p}/feature-flags"), in_region()),
        Request("kms:Decrypt", arn("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab"), tagged(env), KEY_POLICY),
        Request("sqs:SendMessage", arn("sqs", f"{p}-worker-high"), in_region()),
        Request(
            "ecs:RunTask",
            arn("ecs", f"task-definition/{p}-worker:3"),
            in_region(**{"ecs:cluster": arn("ecs", f"cluster/{p}")}),
        ),
        Request("lambda:InvokeFunction", arn("lambda", f"function:{p}-db-roles"), in_region()),
        Request("s3:PutObject", f"arn:aws:s3:::{p}-scan-reports-1/report.json", in_region()),
    ]


def test_the_boundary_allows_the_own_environments_data_plane():
    requests = data_plane("dev")
    results = bounded("dev", requests)
    assert results == ["Allowed"] * len(requests), list(zip([r.action for r in requests], results, strict=True))


@pytest.mark.parametrize("other", ["staging", "prod"])
def test_the_boundary_refuses_another_environments_data(other: str):
    requests = data_plane(other)
    results = bounded("dev", requests)
    assert "Allowed" not in results, list(zip([r.resource for r in requests], results, strict=True))


def test_the_boundary_refuses_other_regions_accounts_clusters_and_iam():
    requests = [
        Request(
            "sqs:SendMessage",
            "arn:aws:sqs:us-west-2:123456789012:jobs-dev-worker-high",
            {"aws:RequestedRegion": "us-west-2"},
        ),
        Request("kms:Decrypt", "arn:aws:kms:eu-west-1:999999999999:key/1234abcd", in_region(), KEY_POLICY),
        Request(
            "ecs:RunTask",
            arn("ecs", "task-definition/jobs-dev-worker:3"),
            in_region(**{"ecs:cluster": arn("ecs", "cluster/jobs-prod")}),
        ),
        Request("iam:CreateRole", "arn:aws:iam::123456789012:role/container-platform/dev/escalate"),
        Request("iam:PassRole", "arn:aws:iam::123456789012:role/container-platform/prod/jobs-prod-api-task-role-1"),
    ]
    assert "Allowed" not in bounded("dev", requests)


# --- The NAT instance (dev-lean): launch templates, Auto Scaling groups, instance profiles, its boundary ---


def test_dev_launches_only_from_its_own_templates_and_groups():
    own_template, prod_template = arn("ec2", "launch-template/lt-0dev"), arn("ec2", "launch-template/lt-0prod")
    from_template = {"ec2:LaunchTemplate": own_template}
    group = arn("autoscaling", "autoScalingGroup:*:autoScalingGroupName/network-nat-1a2b3c4")
    dev_profile = "arn:aws:iam::123456789012:instance-profile/container-platform/dev/network-nat-profile-1a2b3c4"
    prod_profile = "arn:aws:iam::123456789012:instance-profile/container-platform/prod/network-nat-profile-1a2b3c4"
    requests = [
        Request("ec2:RunInstances", own_template, tagged("dev")),
        Request("ec2:RunInstances", arn("ec2", "instance/*"), in_region(**from_template)),
        Request("autoscaling:CreateAutoScalingGroup", group, in_region(**{"aws:RequestTag/environment": "dev"})),
        Request("autoscaling:UpdateAutoScalingGroup", group, tagged("dev")),
        Request("iam:CreateInstanceProfile", dev_profile),
        # refused: another environment's template, an instance without a template, an untagged or prod group, a
        # profile outside the environment's path
        Request("ec2:RunInstances", prod_template, tagged("prod")),
        Request("ec2:RunInstances", arn("ec2", "instance/*"), in_region()),
        Request("autoscaling:CreateAutoScalingGroup", group, in_region()),
        Request("autoscaling:UpdateAutoScalingGroup", group, tagged("prod")),
        Request("iam:CreateInstanceProfile", prod_profile),
    ]
    results = decide("dev", requests)
    assert results[:5] == ["Allowed"] * 5, list(zip([r.action for r in requests], results, strict=True))
    assert "Allowed" not in results[5:], list(zip([r.resource for r in requests[5:]], results[5:], strict=True))


def test_the_boundary_lets_the_nat_instance_attach_only_its_environments_interface():
    interface = arn("ec2", "network-interface/eni-0123456789abcdef0")
    requests = [
        Request("ec2:AttachNetworkInterface", interface, tagged("dev")),
        Request("ec2:AttachNetworkInterface", arn("ec2", "instance/i-0123456789abcdef0"), in_region()),
        Request("ec2:ModifyNetworkInterfaceAttribute", interface, tagged("dev")),
        Request("ec2:AttachNetworkInterface", interface, tagged("prod")),
        Request("ec2:ModifyNetworkInterfaceAttribute", interface, in_region()),
    ]
    assert bounded("dev", requests)[:3] == ["Allowed"] * 3
    assert "Allowed" not in bounded("dev", requests)[3:]
