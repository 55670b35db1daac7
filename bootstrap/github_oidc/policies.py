"""IAM policy documents for the GitHub OIDC roles, as plain dicts (pure functions, unit-tested directly).

Preview role: metadata reads only (Describe/List/Get-configuration on the platform's services), no
data-plane reads (no object bodies, secret values, parameters, messages or log events). Narrower than
AWS's `ReadOnlyAccess`, which also reads S3 objects and more. A plain `pulumi preview` reads the stack
state and runs data-source invokes, which fit. `--refresh` does not: refreshing a Lambda function or a secret
version reads its code or value, which this role deliberately cannot; refresh from the deploy role.

Deploy roles: the services the platform creates, in the allowed regions; IAM only for roles under the
platform's IAM path that carry the permissions boundary; S3 only for buckets with the platform prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .settings import GITHUB_OIDC_HOST, STS_AUDIENCE, BootstrapSettings

PolicyDocument = dict[str, Any]
Statement = dict[str, Any]

# Services whose roles the platform passes, and whose service-linked roles its resources create.
PASS_ROLE_SERVICES = (
    "application-autoscaling.amazonaws.com",
    "codebuild.amazonaws.com",
    "ecs-tasks.amazonaws.com",
    "events.amazonaws.com",
    "lambda.amazonaws.com",
    "monitoring.rds.amazonaws.com",
    "vpc-flow-logs.amazonaws.com",
)
SERVICE_LINKED_ROLE_SERVICES = (
    "ecs.amazonaws.com",
    "ecs.application-autoscaling.amazonaws.com",
    "elasticache.amazonaws.com",
    "elasticfilesystem.amazonaws.com",
    "elasticloadbalancing.amazonaws.com",
    "inspector2.amazonaws.com",
    "rds.amazonaws.com",
)

# Actions that read data rather than configuration; the preview role must never be granted these.
DATA_READ_ACTIONS = (
    "s3:GetObject",
    "secretsmanager:GetSecretValue",
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:GetParametersByPath",
    "sqs:ReceiveMessage",
    "logs:GetLogEvents",
    "logs:FilterLogEvents",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "lambda:GetFunction",
    "kms:Decrypt",
)

_PREVIEW_READ_ACTIONS = (
    "application-autoscaling:Describe*",
    "application-autoscaling:ListTagsForResource",
    "cloudwatch:Describe*",
    "cloudwatch:GetDashboard",
    "cloudwatch:ListDashboards",
    "cloudwatch:ListTagsForResource",
    "codebuild:BatchGetProjects",
    "codebuild:ListProjects",
    "ec2:Describe*",
    "ecr:DescribeRepositories",
    # pulumi-docker asks for a registry login during preview; the preview role cannot pull (no BatchGetImage).
    "ecr:GetAuthorizationToken",
    "ecr:GetLifecyclePolicy",
    "ecr:GetRegistryScanningConfiguration",
    "ecr:GetRepositoryPolicy",
    "ecr:ListTagsForResource",
    "ecs:Describe*",
    "ecs:List*",
    "elasticache:Describe*",
    "elasticache:ListTagsForResource",
    "elasticfilesystem:Describe*",
    "elasticloadbalancing:Describe*",
    "events:Describe*",
    "events:List*",
    "iam:GetOpenIDConnectProvider",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListPolicyVersions",
    "iam:ListRolePolicies",
    "iam:ListRoleTags",
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListAliases",
    "kms:ListResourceTags",
    "lambda:GetFunctionConfiguration",
    "lambda:GetPolicy",
    "lambda:ListFunctions",
    "lambda:ListTags",
    "lambda:ListVersionsByFunction",
    "logs:DescribeLogGroups",
    "logs:DescribeMetricFilters",
    "logs:DescribeSubscriptionFilters",
    "logs:ListTagsForResource",
    "rds:Describe*",
    "rds:ListTagsForResource",
    "route53:GetHostedZone",
    "route53:ListHostedZones",
    "route53:ListHostedZonesByName",
    "route53:ListTagsForResource",
    "s3:GetBucket*",
    "s3:GetEncryptionConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:ListAllMyBuckets",
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetResourcePolicy",
    "secretsmanager:ListSecrets",
    "servicediscovery:Get*",
    "servicediscovery:List*",
    "sns:GetSubscriptionAttributes",
    "sns:GetTopicAttributes",
    "sns:ListSubscriptionsByTopic",
    "sns:ListTagsForResource",
    "sns:ListTopics",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ListDeadLetterSourceQueues",
    "sqs:ListQueueTags",
    "sqs:ListQueues",
    "ssm:DescribeParameters",
    "ssm:ListTagsForResource",
    "sts:GetCallerIdentity",
    "tag:GetResources",
)

_EC2_NETWORK_ACTIONS = (
    "ec2:Describe*",
    "ec2:*Vpc*",
    "ec2:*Subnet*",
    "ec2:*SecurityGroup*",
    "ec2:*Route*",
    "ec2:*InternetGateway*",
    "ec2:*NatGateway*",
    "ec2:*NetworkAcl*",
    "ec2:*NetworkInterface*",
    "ec2:*PrefixList*",
    "ec2:*DhcpOptions*",
    "ec2:*FlowLogs",
    "ec2:AllocateAddress",
    "ec2:AssociateAddress",
    "ec2:DisassociateAddress",
    "ec2:ReleaseAddress",
    "ec2:CreateTags",
    "ec2:DeleteTags",
)
_CLOUD_MAP_DNS_ACTIONS = (
    "route53:AssociateVPCWithHostedZone",
    "route53:ChangeResourceRecordSets",
    "route53:ChangeTagsForResource",
    "route53:CreateHostedZone",
    "route53:DeleteHostedZone",
    "route53:DisassociateVPCFromHostedZone",
    "route53:GetChange",
    "route53:GetHostedZone",
    "route53:ListHostedZonesByName",
    "route53:ListResourceRecordSets",
    "route53:ListTagsForResource",
)
_SSM_PARAMETER_ACTIONS = (
    "ssm:AddTagsToResource",
    "ssm:DeleteParameter",
    "ssm:DeleteParameters",
    "ssm:DescribeParameters",
    "ssm:GetParameter",
    "ssm:GetParameterHistory",
    "ssm:GetParameters",
    "ssm:ListTagsForResource",
    "ssm:PutParameter",
    "ssm:RemoveTagsFromResource",
)
_KMS_KEY_ACTIONS = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:CreateKey",
    "kms:Decrypt",
    "kms:DeleteAlias",
    "kms:Describe*",
    "kms:DisableKeyRotation",
    "kms:EnableKeyRotation",
    "kms:Encrypt",
    "kms:GenerateDataKey*",
    "kms:Get*",
    "kms:List*",
    "kms:PutKeyPolicy",
    "kms:ReEncrypt*",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)
_KMS_GRANT_ACTIONS = ("kms:CreateGrant", "kms:ListGrants", "kms:RetireGrant", "kms:RevokeGrant")

# Roles the platform creates must set the boundary on every one of these calls.
_BOUNDED_ROLE_ACTIONS = (
    "iam:AttachRolePolicy",
    "iam:CreateRole",
    "iam:DeleteRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy",
)
_ROLE_LIFECYCLE_ACTIONS = (
    "iam:DeleteRole",
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:ListRolePolicies",
    "iam:ListRoleTags",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateRole",
    "iam:UpdateRoleDescription",
)
_MANAGED_POLICY_ACTIONS = (
    "iam:CreatePolicy",
    "iam:CreatePolicyVersion",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
    "iam:ListPolicyVersions",
    "iam:TagPolicy",
    "iam:UntagPolicy",
)

# What a role the platform creates may ever do (the permissions boundary): data-plane work only.
_BOUNDARY_ACTIONS = (
    "cloudwatch:PutMetricData",
    "ec2:AssignPrivateIpAddresses",
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:Describe*",
    "ec2:UnassignPrivateIpAddresses",
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImageScanFindings",
    "ecr:DescribeImages",
    "ecr:GetAuthorizationToken",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
    "codeconnections:GetConnection",
    "codeconnections:GetConnectionToken",
    "codeconnections:UseConnection",
    "ecs:RunTask",
    "ecs:DescribeServices",
    "ecs:DescribeTasks",
    "ecs:UpdateService",
    "elasticache:Connect",
    "elasticfilesystem:ClientMount",
    "elasticfilesystem:ClientRootAccess",
    "elasticfilesystem:ClientWrite",
    "events:PutEvents",
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey*",
    "lambda:InvokeFunction",
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:PutRetentionPolicy",
    "rds-db:connect",
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "sns:Publish",
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
)


@dataclass(frozen=True)
class AwsAccount:
    """Where the policies apply: ARN partition and account id."""

    partition: str
    account_id: str

    def iam_arn(self, resource: str) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:{resource}"

    def s3_arn(self, resource: str) -> str:
        return f"arn:{self.partition}:s3:::{resource}"


# --- Trust ---


def preview_subjects(settings: BootstrapSettings) -> list[str]:
    """`sub` claims allowed to assume the preview role: pull requests and the listed branches."""
    repo = f"repo:{settings.repository}"
    return [
        f"{repo}:pull_request",
        *(f"{repo}:ref:refs/heads/{branch}" for branch in settings.preview_branches),
    ]


def deploy_subjects(settings: BootstrapSettings, environment: str) -> list[str]:
    """`sub` claim allowed to assume one environment's deploy role: jobs in that GitHub environment only."""
    return [f"repo:{settings.repository}:environment:{environment}"]


def github_trust_policy(provider_arn: str, subjects: Sequence[str]) -> PolicyDocument:
    """Trust GitHub's OIDC tokens for STS with exactly these subjects (no wildcards)."""
    return _document(
        {
            "Sid": "GitHubActionsOidc",
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE,
                    f"{GITHUB_OIDC_HOST}:sub": sorted(subjects),
                }
            },
        }
    )


# --- Preview role ---


def preview_permissions(settings: BootstrapSettings, account: AwsAccount) -> PolicyDocument:
    """Metadata reads on the platform's services, plus the Pulumi state backend if self-managed."""
    statements = [_allow("ReadPlatformConfiguration", _PREVIEW_READ_ACTIONS, "*")]
    if settings.state_bucket:
        bucket = account.s3_arn(settings.state_bucket)
        statements += [
            _allow("ListStateBucket", ("s3:ListBucket", "s3:GetBucketLocation"), bucket),
            _allow("ReadState", ("s3:GetObject",), f"{bucket}/.pulumi/*"),
            _allow("TakeStateLock", ("s3:PutObject", "s3:DeleteObject"), f"{bucket}/.pulumi/locks/*"),
        ]
    if settings.secrets_kms_key_arn:
        statements.append(_allow("DecryptStackSecrets", ("kms:Decrypt",), settings.secrets_kms_key_arn))
    return _document(*statements)


# --- Deploy roles ---


def deploy_permissions(
    settings: BootstrapSettings, account: AwsAccount, boundary_arn: str
) -> dict[str, PolicyDocument]:
    """The deploy roles' permissions, split into managed policies that each stay under IAM's size limit."""
    return {
        "compute": _document(*_compute_statements(settings)),
        "data": _document(*_data_statements(settings, account)),
        "operations": _document(*_operations_statements(settings)),
        "iam": _document(*_iam_statements(settings, account, boundary_arn)),
    }


def _compute_statements(settings: BootstrapSettings) -> list[Statement]:
    return [
        _regional("Ecs", ("ecs:*",), settings),
        _regional("VpcNetworking", _EC2_NETWORK_ACTIONS, settings),
        _regional("LoadBalancing", ("elasticloadbalancing:*",), settings),
        _regional("Ecr", ("ecr:*",), settings),
        # Registry-level enhanced scanning (prod's continuous scanning) turns Amazon Inspector on.
        _regional(
            "Inspector",
            ("inspector2:BatchGetAccountStatus", "inspector2:Enable", "inspector2:ListAccountPermissions"),
            settings,
        ),
        _regional("Efs", ("elasticfilesystem:*",), settings),
        _regional("ApplicationAutoScaling", ("application-autoscaling:*",), settings),
        _regional("CloudMap", ("servicediscovery:*",), settings),
        # Route 53 is global: Cloud Map's private DNS namespaces create hosted zones through it.
        _allow("CloudMapPrivateDns", _CLOUD_MAP_DNS_ACTIONS, "*"),
    ]


def _data_statements(settings: BootstrapSettings, account: AwsAccount) -> list[Statement]:
    buckets = account.s3_arn(f"{settings.bucket_prefix}*")
    statements = [
        _regional("Rds", ("rds:*",), settings),
        _regional("ElastiCache", ("elasticache:*",), settings),
        _regional("Sqs", ("sqs:*",), settings),
        _regional("Sns", ("sns:*",), settings),
        _regional("SecretsManager", ("secretsmanager:*",), settings),
        _regional("SsmParameters", _SSM_PARAMETER_ACTIONS, settings),
        _regional("KmsKeys", _KMS_KEY_ACTIONS, settings),
        _regional(
            "KmsGrantsForAwsServices",
            _KMS_GRANT_ACTIONS,
            settings,
            extra_condition={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
        _allow("PlatformBuckets", ("s3:*",), [buckets, f"{buckets}/*"]),
        _allow("ListBuckets", ("s3:ListAllMyBuckets", "s3:GetBucketLocation"), "*"),
    ]
    statements += _state_statements(settings, account)
    return statements


def _state_statements(settings: BootstrapSettings, account: AwsAccount) -> list[Statement]:
    statements: list[Statement] = []
    if settings.state_bucket:
        bucket = account.s3_arn(settings.state_bucket)
        statements += [
            _allow("ListStateBucket", ("s3:ListBucket", "s3:GetBucketLocation", "s3:GetBucketVersioning"), bucket),
            _allow("WriteState", ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"), f"{bucket}/*"),
        ]
    if settings.secrets_kms_key_arn:
        statements.append(
            _allow(
                "StackSecrets",
                ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"),
                settings.secrets_kms_key_arn,
            )
        )
    return statements


def _operations_statements(settings: BootstrapSettings) -> list[Statement]:
    return [
        _regional("CloudWatch", ("cloudwatch:*",), settings),
        _regional("Logs", ("logs:*",), settings),
        _regional("Events", ("events:*",), settings),
        _regional("Lambda", ("lambda:*",), settings),
        _regional("CodeBuild", ("codebuild:*",), settings),
        _allow("WhoAmI", ("sts:GetCallerIdentity", "tag:GetResources"), "*"),
    ]


def _iam_statements(settings: BootstrapSettings, account: AwsAccount, boundary_arn: str) -> list[Statement]:
    platform_roles = account.iam_arn(f"role{settings.iam_path}*")
    return [
        {
            **_allow("CreatePlatformRolesWithBoundary", _BOUNDED_ROLE_ACTIONS, platform_roles),
            "Condition": {"StringEquals": {"iam:PermissionsBoundary": boundary_arn}},
        },
        _allow("ManagePlatformRoles", _ROLE_LIFECYCLE_ACTIONS, platform_roles),
        {
            **_allow("PassPlatformRoles", ("iam:PassRole",), platform_roles),
            "Condition": {"StringEquals": {"iam:PassedToService": list(PASS_ROLE_SERVICES)}},
        },
        _allow("ManagePlatformPolicies", _MANAGED_POLICY_ACTIONS, account.iam_arn(f"policy{settings.iam_path}*")),
        _allow(
            "ReadAwsManagedPolicies",
            ("iam:GetPolicy", "iam:GetPolicyVersion"),
            f"arn:{account.partition}:iam::aws:policy/*",
        ),
        {
            **_allow(
                "ServiceLinkedRoles",
                ("iam:CreateServiceLinkedRole",),
                account.iam_arn("role/aws-service-role/*"),
            ),
            "Condition": {"StringEquals": {"iam:AWSServiceName": list(SERVICE_LINKED_ROLE_SERVICES)}},
        },
        {
            "Sid": "ProtectBootstrap",
            "Effect": "Deny",
            "Action": "iam:*",
            "Resource": [
                account.iam_arn(f"role{settings.ci_iam_path}*"),
                account.iam_arn(f"policy{settings.ci_iam_path}*"),
                account.iam_arn(f"oidc-provider/{GITHUB_OIDC_HOST}"),
            ],
        },
        {
            "Sid": "KeepBoundaries",
            "Effect": "Deny",
            "Action": "iam:DeleteRolePermissionsBoundary",
            "Resource": "*",
        },
    ]


def permissions_boundary(settings: BootstrapSettings, account: AwsAccount) -> PolicyDocument:
    """Ceiling for every role the platform creates: data-plane calls, its buckets, passing its roles."""
    buckets = account.s3_arn(f"{settings.bucket_prefix}*")
    return _document(
        _allow("PlatformDataPlane", _BOUNDARY_ACTIONS, "*"),
        _allow("PlatformBuckets", ("s3:*",), [buckets, f"{buckets}/*"]),
        _allow("PassPlatformRoles", ("iam:PassRole",), account.iam_arn(f"role{settings.iam_path}*")),
    )


# --- Helpers ---


def _document(*statements: Statement) -> PolicyDocument:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _allow(sid: str, actions: Iterable[str], resource: str | list[str]) -> Statement:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resource}


def _regional(
    sid: str,
    actions: Iterable[str],
    settings: BootstrapSettings,
    extra_condition: Mapping[str, Any] | None = None,
) -> Statement:
    condition: dict[str, Any] = {"StringEquals": {"aws:RequestedRegion": list(settings.allowed_regions)}}
    condition.update(extra_condition or {})
    return {**_allow(sid, actions, "*"), "Condition": condition}
