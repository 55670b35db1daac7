"""The bootstrap's IAM documents: trust by exact subject, least privilege, inside IAM's size limits."""

from __future__ import annotations

import json
import re

import pytest

from bootstrap.github_oidc.policies import (
    DATA_READ_ACTIONS,
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


def test_preview_trust_admits_pull_requests_and_main_only():
    trust = github_trust_policy(PROVIDER, preview_subjects(_settings()))
    assert allows(trust, PROVIDER, _token("repo:acme/platform:pull_request"))
    assert allows(trust, PROVIDER, _token("repo:acme/platform:ref:refs/heads/main"))
    assert not allows(trust, PROVIDER, _token("repo:acme/platform:ref:refs/heads/feature"))
    assert not allows(trust, PROVIDER, _token("repo:acme/platform:environment:prod"))
    assert not allows(trust, PROVIDER, _token("repo:evil/platform:pull_request"))
    assert not allows(trust, PROVIDER, _token("repo:acme/platform:pull_request", aud="https://github.com/acme"))


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_deploy_trust_admits_only_its_own_environment(environment: str):
    trust = github_trust_policy(PROVIDER, deploy_subjects(_settings(), environment))
    assert allows(trust, PROVIDER, _token(f"repo:acme/platform:environment:{environment}"))
    for other in {"dev", "staging", "prod"} - {environment}:
        assert not allows(trust, PROVIDER, _token(f"repo:acme/platform:environment:{other}"))
    for sub in ("repo:acme/platform:pull_request", "repo:acme/platform:ref:refs/heads/main", "repo:acme/*"):
        assert not allows(trust, PROVIDER, _token(sub))
    assert not allows(trust, PROVIDER, _token(f"repo:acme/platform:environment:{environment}", aud="sts"))
    assert not allows(
        trust,
        "arn:aws:iam::999999999999:oidc-provider/other",
        _token(f"repo:acme/platform:environment:{environment}"),
    )


def test_trust_uses_exact_matching_on_audience_and_subject():
    [statement] = github_trust_policy(PROVIDER, ["repo:acme/platform:environment:prod"])["Statement"]
    assert statement["Condition"] == {
        "StringEquals": {
            f"{HOST}:aud": "sts.amazonaws.com",
            f"{HOST}:sub": ["repo:acme/platform:environment:prod"],
        }
    }


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


def test_deploy_roles_cover_the_platform_services_in_allowed_regions():
    documents = deploy_permissions(_settings(allowed_regions=("eu-west-1", "eu-central-1")), ACCOUNT, BOUNDARY)
    services = {action.split(":")[0] for document in documents.values() for action in _actions(document)}
    assert {
        "application-autoscaling", "cloudwatch", "codebuild", "ec2", "ecr", "ecs", "elasticache",
        "elasticfilesystem", "elasticloadbalancing", "events", "iam", "kms", "lambda", "logs", "rds",
        "s3", "secretsmanager", "servicediscovery", "sns", "sqs", "ssm",
    } <= services  # fmt: skip
    for document in documents.values():
        for statement in document["Statement"]:
            if statement["Resource"] == "*" and not statement["Sid"].startswith(
                ("CloudMapPrivateDns", "ListBuckets", "WhoAmI", "KeepBoundaries")
            ):
                assert statement["Condition"]["StringEquals"]["aws:RequestedRegion"] == [
                    "eu-west-1",
                    "eu-central-1",
                ]


def test_deploy_roles_cannot_launch_instances_or_use_other_buckets():
    documents = deploy_permissions(_settings(), ACCOUNT, BOUNDARY)
    actions = {action for document in documents.values() for action in _actions(document)}
    assert not actions & {"ec2:*", "iam:*", "*"}
    assert not {a for a in actions if a.startswith("ec2:") and "Instance" in a and "*" not in a}
    [buckets] = [s for s in documents["data"]["Statement"] if s["Sid"] == "PlatformBuckets"]
    assert buckets["Resource"] == ["arn:aws:s3:::jobs-*", "arn:aws:s3:::jobs-*/*"]


def test_deploy_roles_create_only_bounded_roles_under_the_platform_path():
    statements = {s["Sid"]: s for s in deploy_permissions(_settings(), ACCOUNT, BOUNDARY)["iam"]["Statement"]}
    create = statements["CreatePlatformRolesWithBoundary"]
    assert {"iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy"} <= set(create["Action"])
    assert create["Resource"] == "arn:aws:iam::123456789012:role/container-platform/*"
    assert create["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": BOUNDARY}}
    assert "iam:CreateRole" not in statements["ManagePlatformRoles"]["Action"]
    assert statements["PassPlatformRoles"]["Condition"]["StringEquals"]["iam:PassedToService"]
    protect = statements["ProtectBootstrap"]
    assert (protect["Effect"], protect["Action"]) == ("Deny", "iam:*")
    assert "arn:aws:iam::123456789012:role/container-platform-ci/*" in protect["Resource"]


def test_boundary_allows_no_iam_changes():
    actions = _actions(permissions_boundary(_settings(), ACCOUNT))
    assert {a for a in actions if a.startswith("iam:")} == {"iam:PassRole"}
    assert not {a for a in actions if a.endswith(":*") and not a.startswith(("s3:",))}


def test_every_managed_policy_fits_iams_size_limit():
    settings = _settings(
        state_bucket="acme-pulumi-state", secrets_kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/abc"
    )
    documents = {
        **deploy_permissions(settings, ACCOUNT, BOUNDARY),
        "preview": preview_permissions(settings, ACCOUNT),
        "boundary": permissions_boundary(settings, ACCOUNT),
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
        (
            {"bucket_prefix": "Jobs_"},
            "bucketPrefix must be 3-41 lowercase letters, digits, '.', '-' (e.g. 'jobs-'), got 'Jobs_'",
        ),
        ({"state_bucket": "Bad_Bucket"}, "stateBucket must be an S3 bucket name"),
        ({"secrets_kms_key_arn": "alias/x"}, "secretsKmsKeyArn must be a KMS key ARN"),
        ({"existing_oidc_provider_arn": "arn:aws:iam::1:oidc-provider/x"}, "existingOidcProviderArn must be"),
        ({"max_session_seconds": 60}, "maxSessionSeconds must be between 900 and 43200, got 60"),
    ],
)
def test_bad_settings_are_rejected_with_the_key_and_what_is_allowed(overrides: dict, message: str):
    with pytest.raises(ValueError, match=re.escape(message)):
        _settings(**overrides)
