"""IAM policy documents for the GitHub OIDC roles, as plain dicts (pure functions, unit-tested directly).

Preview role: metadata reads only (Describe/List/Get-configuration on the platform's services), no
data-plane reads (no object bodies, secret values, parameters, messages or log events). Narrower than
AWS's `ReadOnlyAccess`, which also reads S3 objects and more. A plain `pulumi preview` reads the stack
state and runs data-source invokes, which fit. `--refresh` does not: refreshing a Lambda function or a secret
version reads its code or value, which this role deliberately cannot; refresh from the deploy role.

Trust: the repository's OIDC subject template includes the workflow (`job_workflow_ref`), so a deploy role admits
only its GitHub environment's jobs in the deploy workflow at the deploy ref.

Deploy roles and the permissions boundary, one per environment: deploy.py and boundary.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .boundary import permissions_boundary
from .deploy import DEPLOY_POLICY_GROUPS, PASS_ROLE_SERVICES, SERVICE_LINKED_ROLE_SERVICES, deploy_permissions
from .scope import AwsAccount, Statement
from .settings import GITHUB_OIDC_HOST, STS_AUDIENCE, BootstrapSettings

__all__ = [
    "DATA_READ_ACTIONS",
    "DEPLOY_POLICY_GROUPS",
    "PASS_ROLE_SERVICES",
    "SERVICE_LINKED_ROLE_SERVICES",
    "AwsAccount",
    "PolicyDocument",
    "deploy_permissions",
    "deploy_subjects",
    "github_trust_policy",
    "permissions_boundary",
    "preview_permissions",
    "preview_subjects",
]

PolicyDocument = dict[str, Any]

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

# --- Trust ---


def preview_subjects(settings: BootstrapSettings) -> list[str]:
    """`sub` claims allowed to assume the preview role: the preview workflow, run for a pull request (any number,
    hence the one `*`) or from one of the listed branches. The repository's subject template must include
    `job_workflow_ref` (docs/bootstrap.md)."""
    repo = settings.repository
    workflow = f"{repo}/{settings.preview_workflow}"
    return [
        f"repo:{repo}:pull_request:job_workflow_ref:{workflow}@refs/pull/*/merge",
        *(
            f"repo:{repo}:ref:refs/heads/{branch}:job_workflow_ref:{workflow}@refs/heads/{branch}"
            for branch in settings.preview_branches
        ),
    ]


def deploy_subjects(settings: BootstrapSettings, environment: str) -> list[str]:
    """`sub` claim allowed to assume one environment's deploy role: a job in that GitHub environment, defined in
    the deploy workflow at the deploy ref. Subject template: `["repo", "context", "job_workflow_ref"]`."""
    repo = settings.repository
    return [
        f"repo:{repo}:environment:{environment}:job_workflow_ref:{repo}/{settings.deploy_workflow}@{settings.deploy_ref}"
    ]


def github_trust_policy(provider_arn: str, subjects: Sequence[str]) -> PolicyDocument:
    """Trust GitHub's OIDC tokens for STS with these subjects: exact matches, and `StringLike` only for the
    subjects that hold a `*` (a pull request number)."""
    exact = sorted(s for s in subjects if "*" not in s)
    patterns = sorted(s for s in subjects if "*" in s)
    statements = [
        _trust_statement(sid, provider_arn, operator, chosen)
        for sid, operator, chosen in (
            ("GitHubActionsOidc", "StringEquals", exact),
            ("GitHubActionsOidcPullRequests", "StringLike", patterns),
        )
        if chosen
    ]
    return _document(*statements)


def _trust_statement(sid: str, provider_arn: str, operator: str, subjects: list[str]) -> Statement:
    condition: dict[str, Any] = {"StringEquals": {f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE}}
    condition.setdefault(operator, {})[f"{GITHUB_OIDC_HOST}:sub"] = subjects
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": condition,
    }


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
    if settings.secrets_keys():
        statements.append(_allow("DecryptStackSecrets", ("kms:Decrypt",), settings.secrets_keys()))
    return _document(*statements)


# --- Helpers ---


def _document(*statements: Statement) -> PolicyDocument:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _allow(sid: str, actions: Iterable[str], resource: str | list[str]) -> Statement:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resource}
