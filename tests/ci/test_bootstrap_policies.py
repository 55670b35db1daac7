"""The bootstrap's IAM documents: trust by exact subject, least privilege, inside IAM's size limits."""

from __future__ import annotations

import json
import re

import pytest

from bootstrap.github_oidc.policies import (
    DATA_READ_ACTIONS,
    DEPLOY_POLICY_GROUPS,
    AwsAccount,
    deploy_permissions,
    deploy_subjects,
    github_trust_policy,
    permissions_boundary,
    preview_permissions,
    preview_subjects,
)
from bootstrap.github_oidc.settings import BootstrapSettings
from tests.ci.iam_trust import allows

PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
ACCOUNT = AwsAccount(partition="aws", account_id="123456789012")
BOUNDARY = "arn:aws:iam::123456789012:policy/container-platform-ci/boundary"
HOST = "token.actions.githubusercontent.com"
MANAGED_POLICY_LIMIT = 6144  # characters, whitespace excluded


def _settings(**overrides) -> BootstrapSettings:
    return BootstrapSettings(
        **{
            "github_org": "acme",
            "github_repo": "platform",
            "allowed_regions": ("eu-west-1",),
            "bucket_prefix": "jobs-",
            **overrides,
        }
    )


def _token(sub: str, aud: str = "sts.amazonaws.com") -> dict[str, str]:
    return {f"{HOST}:sub": sub, f"{HOST}:aud": aud}


def _actions(document: dict) -> set[str]:
    return {
        action
        for statement in document["Statement"]
        if statement["Effect"] == "Allow"
        for action in statement["Action"]
    }


DEPLOY_REF = "acme/platform/.github/workflows/deploy.yml@refs/heads/main"
PREVIEW_WORKFLOW = "acme/platform/.github/workflows/pull-request.yml"


def _deploy_sub(environment: str, workflow_ref: str = DEPLOY_REF, repo: str = "acme/platform") -> str:
    return f"repo:{repo}:environment:{environment}:job_workflow_ref:{workflow_ref}"


def test_preview_trust_admits_the_preview_workflow_on_pull_requests_and_main_only():
    trust = github_trust_policy(PROVIDER, preview_subjects(_settings()))
    pr = "repo:acme/platform:pull_request:job_workflow_ref:"
    assert allows(trust, PROVIDER, _token(f"{pr}{PREVIEW_WORKFLOW}@refs/pull/42/merge"))
    main = "repo:acme/platform:ref:refs/heads/main:job_workflow_ref:"
    assert allows(trust, PROVIDER, _token(f"{main}{PREVIEW_WORKFLOW}@refs/heads/main"))
    refused = [
        f"{pr}acme/platform/.github/workflows/other.yml@refs/pull/42/merge",  # another workflow
        f"repo:acme/platform:ref:refs/heads/feature:job_workflow_ref:{PREVIEW_WORKFLOW}@refs/heads/feature",
        _deploy_sub("prod"),
        f"repo:evil/platform:pull_request:job_workflow_ref:{PREVIEW_WORKFLOW}@refs/pull/42/merge",
        "repo:acme/platform:pull_request",  # the default subject: the template is not applied
    ]
    for sub in refused:
        assert not allows(trust, PROVIDER, _token(sub)), sub
    assert not allows(
        trust, PROVIDER, _token(f"{pr}{PREVIEW_WORKFLOW}@refs/pull/42/merge", aud="https://github.com/acme")
    )


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_deploy_trust_admits_only_its_environment_in_the_deploy_workflow_on_main(environment: str):
    trust = github_trust_policy(PROVIDER, deploy_subjects(_settings(), environment))
    assert allows(trust, PROVIDER, _token(_deploy_sub(environment)))
    refused = [
        *(_deploy_sub(other) for other in {"dev", "staging", "prod"} - {environment}),
        _deploy_sub(environment, "acme/platform/.github/workflows/other.yml@refs/heads/main"),  # another workflow
        _deploy_sub(environment, "acme/platform/.github/workflows/deploy.yml@refs/heads/feature"),  # another branch
        _deploy_sub(environment, "acme/platform/.github/workflows/deploy.yml@refs/tags/v1"),
        _deploy_sub(environment, "evil/platform/.github/workflows/deploy.yml@refs/heads/main"),  # a reusable copy
        _deploy_sub(environment, repo="evil/platform"),
        f"repo:acme/platform:environment:{environment}",  # the default subject: any workflow in the environment
        "repo:acme/platform:pull_request",
        "repo:acme/platform:ref:refs/heads/main",
    ]
    for sub in refused:
        assert not allows(trust, PROVIDER, _token(sub)), sub
    assert not allows(trust, PROVIDER, _token(_deploy_sub(environment), aud="sts"))
    assert not allows(trust, "arn:aws:iam::999999999999:oidc-provider/other", _token(_deploy_sub(environment)))


def test_deploy_workflow_and_ref_are_configurable():
    settings = _settings(deploy_workflow=".github/workflows/release.yaml", deploy_ref="refs/tags/release")
    trust = github_trust_policy(PROVIDER, deploy_subjects(settings, "prod"))
    assert allows(
        trust, PROVIDER, _token(_deploy_sub("prod", "acme/platform/.github/workflows/release.yaml@refs/tags/release"))
    )
    assert not allows(trust, PROVIDER, _token(_deploy_sub("prod")))


def test_deploy_trust_uses_exact_matching_on_audience_and_subject():
    [statement] = github_trust_policy(PROVIDER, deploy_subjects(_settings(), "prod"))["Statement"]
    assert statement["Condition"] == {
        "StringEquals": {f"{HOST}:aud": "sts.amazonaws.com", f"{HOST}:sub": [_deploy_sub("prod")]}
    }


def test_preview_trust_uses_a_wildcard_only_for_the_pull_request_number():
    statements = github_trust_policy(PROVIDER, preview_subjects(_settings()))["Statement"]
    [like] = [s for s in statements if "StringLike" in s["Condition"]]
    assert like["Condition"]["StringLike"][f"{HOST}:sub"] == [
        f"repo:acme/platform:pull_request:job_workflow_ref:{PREVIEW_WORKFLOW}@refs/pull/*/merge"
    ]
    assert all(s["Condition"]["StringEquals"][f"{HOST}:aud"] == "sts.amazonaws.com" for s in statements)


def test_preview_role_reads_no_data():
    actions = _actions(preview_permissions(_settings(), ACCOUNT))
    assert not actions & set(DATA_READ_ACTIONS)
    assert all(action.split(":", 1)[1].startswith(("Describe", "List", "Get", "BatchGet")) for action in actions)
    assert not {action for action in actions if action.split(":", 1)[1].startswith("GetObject")}


def test_preview_role_reaches_self_managed_state_only_when_configured():
    settings = _settings(
        state_bucket="acme-pulumi-state", secrets_kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/abc"
    )
    statements = {s["Sid"]: s for s in preview_permissions(settings, ACCOUNT)["Statement"]}
    assert statements["ReadState"]["Resource"] == "arn:aws:s3:::acme-pulumi-state/.pulumi/*"
    assert statements["TakeStateLock"]["Resource"] == "arn:aws:s3:::acme-pulumi-state/.pulumi/locks/*"
    assert statements["DecryptStackSecrets"]["Action"] == ["kms:Decrypt"]
    assert set(statements) == {
        "ReadPlatformConfiguration",
        "ListStateBucket",
        "ReadState",
        "TakeStateLock",
        "DecryptStackSecrets",
    }
    assert [s["Sid"] for s in preview_permissions(_settings(), ACCOUNT)["Statement"]] == ["ReadPlatformConfiguration"]


GLOBAL_STATEMENTS = (
    "CloudMapZones", "CloudMapRecords", "PlatformBuckets", "ListBuckets", "WhoAmI", "CreateRolesWithBoundary",
    "ManageRoles", "PassRoles", "ManagePolicies", "ManageInstanceProfiles", "ReadAwsManagedPolicies",
    "ServiceLinkedRoles",
    # CloudFront is global; its vended access logs are delivered in us-east-1 whatever the allowed regions.
    "NewDistributions", "TagNewDistributions", "NewEdgeConfiguration", "Distributions", "ConsoleFunctions",
    "EdgePolicies", "CloudFrontReads", "ConsoleLogDelivery", "LogDeliveryReads",
)  # fmt: skip


def test_deploy_roles_cover_the_platform_services_in_allowed_regions():
    documents = deploy_permissions(_settings(allowed_regions=("eu-west-1", "eu-central-1")), ACCOUNT, "dev", BOUNDARY)
    services = {action.split(":")[0] for document in documents.values() for action in _actions(document)}
    assert {
        "application-autoscaling", "cloudwatch", "codebuild", "ec2", "ecr", "ecs", "elasticache",
        "elasticfilesystem", "elasticloadbalancing", "events", "iam", "kms", "lambda", "logs", "rds",
        "s3", "secretsmanager", "servicediscovery", "sns", "sqs", "ssm",
    } <= services  # fmt: skip
    for document in documents.values():
        for statement in document["Statement"]:
            if statement["Effect"] == "Allow" and statement["Sid"] not in GLOBAL_STATEMENTS:
                assert statement["Condition"]["StringEquals"]["aws:RequestedRegion"] == [
                    "eu-west-1",
                    "eu-central-1",
                ]


def test_deploy_roles_launch_instances_only_from_their_tagged_templates_and_use_no_other_buckets():
    documents = deploy_permissions(_settings(), ACCOUNT, "dev", BOUNDARY)
    actions = {action for document in documents.values() for action in _actions(document)}
    assert not actions & {"ec2:*", "iam:*", "*"}
    instance_actions = {a for a in actions if a.startswith("ec2:") and "Instance" in a and "*" not in a}
    assert instance_actions == {"ec2:RunInstances"}
    launching = {
        s["Sid"]: s for s in documents["network"]["Statement"] if "ec2:RunInstances" in _actions({"Statement": [s]})
    }
    assert set(launching) == {"VpcNetworking", "LaunchFromOwnTemplates"}
    assert launching["VpcNetworking"]["Condition"]["StringEquals"]["aws:ResourceTag/environment"] == "dev"
    assert launching["LaunchFromOwnTemplates"]["Condition"]["ArnLike"] == {
        "ec2:LaunchTemplate": "arn:aws:ec2:*:123456789012:launch-template/*"
    }
    [buckets] = [s for s in documents["data"]["Statement"] if s["Sid"] == "PlatformBuckets"]
    assert buckets["Resource"] == ["arn:aws:s3:::jobs-dev-*", "arn:aws:s3:::jobs-dev-*/*"]


def test_deploy_roles_create_only_bounded_roles_under_their_environments_path():
    statements = {s["Sid"]: s for s in deploy_permissions(_settings(), ACCOUNT, "dev", BOUNDARY)["iam"]["Statement"]}
    create = statements["CreateRolesWithBoundary"]
    assert {"iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy"} <= set(create["Action"])
    assert create["Resource"] == "arn:aws:iam::123456789012:role/container-platform/dev/*"
    assert create["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": BOUNDARY}}
    assert "iam:CreateRole" not in statements["ManageRoles"]["Action"]
    assert statements["PassRoles"]["Condition"]["StringEquals"]["iam:PassedToService"]
    protect = statements["ProtectBootstrap"]
    assert (protect["Effect"], protect["Action"]) == ("Deny", "iam:*")
    assert "arn:aws:iam::123456789012:role/container-platform-ci/*" in protect["Resource"]


def test_boundary_allows_no_iam_changes():
    actions = _actions(permissions_boundary(_settings(), ACCOUNT, "dev"))
    assert {a for a in actions if a.startswith("iam:")} == {"iam:PassRole"}
    assert not {a for a in actions if a.endswith(":*") and not a.startswith(("s3:",))}


def test_the_bootstrap_attaches_every_group_of_the_deploy_role():
    """The program attaches DEPLOY_POLICY_GROUPS: a group missing there is a policy no deploy role has."""
    assert set(deploy_permissions(_settings(), ACCOUNT, "dev", BOUNDARY)) == set(DEPLOY_POLICY_GROUPS)


def test_every_managed_policy_fits_iams_size_limit():
    settings = _settings(
        state_bucket="acme-pulumi-state", secrets_kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/abc"
    )
    documents = {
        **{
            f"{environment}-{group}": document
            for environment in settings.environments
            for group, document in deploy_permissions(settings, ACCOUNT, environment, BOUNDARY).items()
        },
        **{f"boundary-{env}": permissions_boundary(settings, ACCOUNT, env) for env in settings.environments},
        "preview": preview_permissions(settings, ACCOUNT),
    }
    sizes = {name: len(json.dumps(doc, separators=(",", ":"))) for name, doc in documents.items()}
    assert all(size < MANAGED_POLICY_LIMIT for size in sizes.values()), sizes


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"github_org": "acme/evil"}, "githubOrg must be a GitHub owner name"),
        ({"github_repo": "a:b"}, "githubRepo must be a repository name"),
        ({"environments": ()}, "environments must list at least one value"),
        ({"environments": ("prod", "prod")}, "environments must not repeat values"),
        (
            {"environments": ("prod*",)},
            "environments must be a list of GitHub environment names, got 'prod*'",
        ),
        ({"preview_branches": ("*",)}, "previewBranches must be a list of branch names"),
        ({"allowed_regions": ("europe",)}, "allowedRegions must be a list of AWS region names"),
        ({"iam_path": "container-platform"}, "iamPath must be an IAM path"),
        ({"ci_iam_path": "/container-platform/ci/"}, "ciIamPath (/container-platform/ci/) and iamPath"),
        ({"bucket_prefix": "Jobs_"}, "bucketPrefix must be the platform's applicationName followed by '-'"),
        ({"bucket_prefix": "jobs"}, "bucketPrefix must be the platform's applicationName followed by '-'"),
        ({"deploy_workflow": "deploy.yml"}, "deployWorkflow must be a path like .github/workflows/deploy.yml"),
        ({"deploy_ref": "main"}, "deployRef must be a full git ref like refs/heads/main, got 'main'"),
        ({"preview_workflow": ".github/workflows/*.yml"}, "previewWorkflow must be a path like"),
        ({"environment_tag_key": "aws:env"}, "environmentTagKey must be a tag key not starting with 'aws:'"),
        ({"registry_scanning_environment": "qa"}, "registryScanningEnvironment must be one of environments"),
        ({"state_bucket": "Bad_Bucket"}, "stateBucket must be an S3 bucket name"),
        ({"secrets_kms_key_arn": "alias/x"}, "secretsKmsKeyArn must be a KMS key ARN"),
        ({"existing_oidc_provider_arn": "arn:aws:iam::1:oidc-provider/x"}, "existingOidcProviderArn must be"),
        ({"max_session_seconds": 60}, "maxSessionSeconds must be between 900 and 43200, got 60"),
    ],
)
def test_bad_settings_are_rejected_with_the_key_and_what_is_allowed(overrides: dict, message: str):
    with pytest.raises(ValueError, match=re.escape(message)):
        _settings(**overrides)
