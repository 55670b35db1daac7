"""The permissions boundary: the ceiling of every role a platform stack creates, one per environment.

Data-plane calls only, and where a call names a resource, only the environment's own: its secrets and parameters
(`<prefix>/...`, `<prefix>-...`), queues, topics, buckets, repositories, functions, task definitions on its cluster;
KMS keys and any other resource tagged with another environment are denied. Everything in the allowed regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .scope import AwsAccount, Statement
from .settings import BootstrapSettings

PolicyDocument = dict[str, Any]

# Calls that name no resource of one environment (network interfaces of a Lambda in the VPC, the registry token,
# metrics, traces, ECS Exec channels, log writes) or name it only by id: EFS file systems, cache connections. The tag
# deny below keeps other environments' tagged resources out.
_ANY_RESOURCE_ACTIONS = (
    "cloudwatch:PutMetricData",
    "codeconnections:GetConnection",
    "codeconnections:GetConnectionToken",
    "codeconnections:UseConnection",
    "ec2:AssignPrivateIpAddresses",
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:Describe*",
    "ec2:UnassignPrivateIpAddresses",
    "ecr:GetAuthorizationToken",
    "elasticache:Connect",
    # ClientMount, ClientRootAccess, ClientWrite (the service's only Client* actions).
    "elasticfilesystem:Client*",
    # Blue/green: the role ECS shifts traffic with (components/web_service.py) reweights the service's listener
    # rules and registers its targets (target group names carry no environment prefix: the tag deny below).
    "elasticloadbalancing:*Targets",  # RegisterTargets, DeregisterTargets
    "elasticloadbalancing:Describe*",
    "elasticloadbalancing:ModifyListener",
    "elasticloadbalancing:ModifyRule",
    "events:PutEvents",
    # The scan alert function reads the finding behind an Inspector event.
    "inspector2:BatchGetFindingDetails",
    "inspector2:ListFindings",
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:PutRetentionPolicy",
    # Create/Open Control/Data Channel (ECS Exec): the service's only actions. Compact forms keep the boundary
    # under IAM's 6,144-character limit for a managed policy.
    "ssmmessages:*Channel",
    "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
)
_KMS_ACTIONS = ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*")
_ECR_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImageScanFindings",
    "ecr:DescribeImages",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
)
_SQS_ACTIONS = (
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
)
_ECR_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
# Must match components/tracing.py's PULL_THROUGH_CACHE_PREFIX (the bootstrap program does not import the platform).
PULL_THROUGH_CACHE_PREFIX = "ecr-public"
_SECRET_ACTIONS = ("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue")
_RDS_SECRET_TAG = "aws:ResourceTag/aws:rds:primaryDBInstanceArn"


def permissions_boundary(
    settings: BootstrapSettings, account: AwsAccount, environment: str | None = None
) -> PolicyDocument:
    """The boundary of one environment's roles; without `environment`, one boundary for all of `environments`."""
    environments = (environment,) if environment else settings.environments
    prefixes = [settings.name_prefix(env) for env in environments]
    region = {"StringEquals": {"aws:RequestedRegion": list(settings.allowed_regions)}}
    key = settings.environment_tag_key

    def arns(service: str, *patterns: str) -> list[str]:
        return sorted(account.arn(service, pattern.format(p=prefix)) for prefix in prefixes for pattern in patterns)

    def allow(sid: str, actions: Sequence[str], resources: str | list[str], **condition: Any) -> Statement:
        return {
            "Sid": sid,
            "Effect": "Allow",
            "Action": sorted(actions),
            "Resource": resources,
            "Condition": {**region, **condition},
        }

    buckets = [account.s3_arn(f"{prefix}-*") for prefix in prefixes]
    return {
        "Version": "2012-10-17",
        "Statement": [
            allow("DataPlane", _ANY_RESOURCE_ACTIONS, "*"),
            # Customer managed keys only with this environment's tag (the platform's keys carry it through the
            # provider's default tags); AWS managed keys (`alias/aws/<service>`, a reserved prefix) are used through
            # their service, whose key policy admits only this account's callers via that service.
            allow(
                "EnvironmentKeys",
                _KMS_ACTIONS,
                account.arn("kms", "key/*"),
                StringEquals={**region["StringEquals"], f"aws:ResourceTag/{key}": list(environments)},
            ),
            allow(
                "AwsManagedKeys",
                _KMS_ACTIONS,
                account.arn("kms", "key/*"),
                **{"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/aws/*"}},
            ),
            # IAM database authentication names the instance by its resource id (unknown here): any instance of the
            # account, but only as the platform's application users (`DatabaseArgs.app_username`).
            allow(
                "DatabaseUsers",
                ("rds-db:connect",),
                sorted(account.arn("rds-db", f"dbuser:*/{user}") for user in settings.database_users),
            ),
            allow("Repositories", _ECR_ACTIONS, arns("ecr", "repository/{p}-*")),
            # The account's pull-through cache of public.ecr.aws (components/registry_cache.py): pulling an image
            # through it (the tracing collector) imports it and creates its cached repository on first use.
            allow(
                "PullThroughCache",
                (*_ECR_PULL_ACTIONS, "ecr:BatchImportUpstreamImage", "ecr:CreateRepository"),
                account.arn("ecr", f"repository/{PULL_THROUGH_CACHE_PREFIX}/*"),
            ),
            allow(
                "RunTasks",
                ("ecs:RunTask",),
                arns("ecs", "task-definition/{p}-*"),
                ArnLike={"ecs:cluster": arns("ecs", "cluster/{p}")},
            ),
            # Office hours: EventBridge Scheduler stops and starts the environment's database as the role it is given.
            # One statement with the ECS services' (each action applies only to its own service's ARNs) keeps the
            # boundary under the size limit.
            allow(
                "ServicesAndDatabase",
                (
                    "ecs:DescribeServices",
                    "ecs:DescribeTasks",
                    "ecs:UpdateService",
                    "rds:StartDBInstance",
                    "rds:StopDBInstance",
                ),
                arns("ecs", "service/{p}/*", "task/{p}/*") + arns("rds", "db:{p}-*"),
            ),
            allow("InvokeFunctions", ("lambda:InvokeFunction",), arns("lambda", "function:{p}-*")),
            # The NAT instance attaches its fixed network interface at boot and turns off its source/destination
            # check: only interfaces tagged with this environment (the instance it attaches to is its own).
            allow(
                "NatInterfaces",
                ("ec2:AttachNetworkInterface", "ec2:ModifyNetworkInterfaceAttribute"),
                account.arn("ec2", "network-interface/*"),
                StringEquals={**region["StringEquals"], f"aws:ResourceTag/{key}": list(environments)},
            ),
            allow("NatInstance", ("ec2:AttachNetworkInterface",), account.arn("ec2", "instance/*")),
            allow(
                "Secrets",
                _SECRET_ACTIONS,
                [
                    *arns("secretsmanager", "secret:{p}/*", "secret:{p}-*"),
                    account.arn("secretsmanager", "secret:rds!*"),
                ],
            ),
            allow(
                "Parameters",
                ("ssm:GetParameter", "ssm:GetParameters"),
                arns("ssm", "parameter/{p}/*", "parameter/{p}-*"),
            ),
            allow("Queues", _SQS_ACTIONS, arns("sqs", "{p}-*")),
            allow("Topics", ("sns:Publish",), arns("sns", "{p}-*")),
            # Services with `email` send as one address of a verified SES identity (their own grant adds the
            # ses:FromAddress condition); identities are verified out of band, so any of the account's may be named.
            allow("Email", ("ses:SendEmail", "ses:SendRawEmail"), account.arn("ses", "identity/*")),
            allow("Buckets", ("s3:*",), sorted([*buckets, *(f"{b}/*" for b in buckets)])),
            {
                "Sid": "PassOwnRoles",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": sorted(account.iam_arn(f"role{settings.role_path(env)}*") for env in environments),
            },
            {
                "Sid": "OtherEnvironmentsResources",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {
                    "Null": {f"aws:ResourceTag/{key}": "false"},
                    "StringNotEquals": {f"aws:ResourceTag/{key}": list(environments)},
                },
            },
            # The master user secret RDS manages (`rds!db-...`) is tagged with its instance's ARN.
            {
                "Sid": "OtherEnvironmentsDatabaseSecrets",
                "Effect": "Deny",
                "Action": list(_SECRET_ACTIONS),
                "Resource": account.arn("secretsmanager", "secret:rds!*"),
                "Condition": {
                    "Null": {_RDS_SECRET_TAG: "false"},
                    "StringNotLike": {_RDS_SECRET_TAG: arns("rds", "db:{p}-*")},
                },
            },
        ],
    }
