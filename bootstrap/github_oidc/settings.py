"""Bootstrap settings: the stack config, validated once into one frozen dataclass."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
STS_AUDIENCE = "sts.amazonaws.com"

_GITHUB_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_GITHUB_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")
_REGION = re.compile(r"^[a-z]{2}(?:-gov)?-[a-z]+-\d$")
_IAM_PATH = re.compile(r"^/(?:[A-Za-z0-9+=,.@_-]+/)+$")
# `<applicationName>-`, the platform's applicationName rule (components/config.py NAME_PATTERN) plus the dash.
_NAME_PREFIX = re.compile(r"^(?!.*--)[a-z][a-z0-9-]{1,13}[a-z0-9]-$")
_WORKFLOW_PATH = re.compile(r"^\.github/workflows/[A-Za-z0-9._-]+\.ya?ml$")
_GIT_REF = re.compile(r"^refs/(?:heads|tags)/[A-Za-z0-9._/-]{1,200}$")
_TAG_KEY = re.compile(r"^(?!aws:)[A-Za-z0-9_.:/=+@-]{1,128}$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")
# `<applicationName>-<env>` of another bootstrap's environment: the StackConfig.name_prefix shape, no trailing dash.
_ENVIRONMENT_PREFIX = re.compile(r"^(?!.*--)[a-z][a-z0-9-]{1,60}[a-z0-9]$")
_PULUMI_PROJECT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_DATABASE_USER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_OIDC_PROVIDER_ARN = re.compile(rf"^arn:aws[a-z-]*:iam::\d{{12}}:oidc-provider/{re.escape(GITHUB_OIDC_HOST)}$")


@dataclass(frozen=True)
class PromotionSource:
    """Where the first of `environments` copies its images from when the previous environment lives in another
    account (the recommended one-account-per-environment setup). Config `promoteFrom: {account, prefix}`."""

    account: str
    """12-digit account id of the previous environment's registry."""
    prefix: str
    """`<applicationName>-<env>` of the previous environment (its repositories are `<prefix>-<image>`)."""

    def __post_init__(self) -> None:
        _require(_ACCOUNT_ID, self.account, "promoteFrom.account", "a 12-digit AWS account id")
        _require(
            _ENVIRONMENT_PREFIX,
            self.prefix,
            "promoteFrom.prefix",
            "the previous environment's `<applicationName>-<env>` name prefix, e.g. 'jobs-dev'",
        )


@dataclass(frozen=True)
class BootstrapSettings:
    """Everything the bootstrap needs to know; built by `load_settings` from the stack config."""

    github_org: str
    """GitHub organization or user that owns the platform repository. Config `githubOrg`, required."""
    github_repo: str
    """Repository name, without the owner. Config `githubRepo`, required."""
    allowed_regions: tuple[str, ...]
    """Regions the deploy roles may act in. Config `allowedRegions`. Default: `[aws:region]`."""
    bucket_prefix: str
    """`<applicationName>-` of the platform's stacks (e.g. `jobs-`): with the environment it makes the name prefix
    `<applicationName>-<env>` of everything a stack creates (buckets, queues, clusters, ...), which is what each
    deploy role is scoped to. Config `bucketPrefix`, required."""
    environments: tuple[str, ...] = ("dev", "staging", "prod")
    """GitHub environments that get a deploy role each (same names as the stacks).
    Config `environments`. Default: `["dev", "staging", "prod"]`."""
    preview_branches: tuple[str, ...] = ("main",)
    """Branches (besides pull requests) whose workflows may assume the preview role.
    Config `previewBranches`. Default: `["main"]`."""
    iam_path: str = "/container-platform/"
    """IAM path of every role the platform creates; deploy roles may only manage roles under it.
    Config `iamPath`. Default: `/container-platform/`."""
    ci_iam_path: str = "/container-platform-ci/"
    """IAM path of the bootstrap's own roles and boundary, outside `iam_path` so deploy roles cannot
    touch them. Config `ciIamPath`. Default: `/container-platform-ci/`."""
    state_bucket: str | None = None
    """S3 bucket of a self-managed Pulumi backend, if one is used. Config `stateBucket`.
    Default: None (Pulumi Cloud holds the state; the roles need no state access)."""
    secrets_kms_key_arn: str | None = None
    """KMS key of an `awskms://` secrets provider shared by every environment, if one is used.
    Config `secretsKmsKeyArn`. Default: None."""
    secrets_kms_key_arns: dict[str, str] = field(default_factory=lambda: {})
    """Per environment, the KMS key of its stack's `awskms://` secrets provider: that environment's deploy role may
    use only its own key (overrides `secretsKmsKeyArn` for that environment). Config `secretsKmsKeyArns`.
    Default: none."""
    pulumi_project: str = "container-platform"
    """Pulumi project name of the platform (its `Pulumi.yaml` `name`): with `stateBucket`, each deploy role may
    write only `.pulumi/{stacks,history,backups,locks}/<project>/<env>...`. Config `pulumiProject`.
    Default: `container-platform`."""
    database_users: tuple[str, ...] = ("app",)
    """Database users the platform's services connect as with IAM authentication (`DatabaseArgs.app_username`):
    the boundary allows `rds-db:connect` only as these. Config `databaseUsers`. Default: `["app"]`."""
    promote_from: PromotionSource | None = None
    """The previous environment's registry in another account, for the first of `environments`.
    Config `promoteFrom`. Default: None (the first environment builds; later ones promote within this stack)."""
    existing_oidc_provider_arn: str | None = None
    """ARN of an existing GitHub OIDC provider in the account (an account can hold only one per URL).
    Config `existingOidcProviderArn`. Default: None (the bootstrap creates it)."""
    max_session_seconds: int = 3600
    """Longest session a CI job gets from a role. Config `maxSessionSeconds`. Default: 3600."""
    deploy_workflow: str = ".github/workflows/deploy.yml"
    """Workflow file whose jobs may assume the deploy roles (the `job_workflow_ref` in the token's `sub`).
    Config `deployWorkflow`. Default: `.github/workflows/deploy.yml`."""
    deploy_ref: str = "refs/heads/main"
    """Git ref that workflow must run from. Config `deployRef`. Default: `refs/heads/main`."""
    preview_workflow: str = ".github/workflows/pull-request.yml"
    """Workflow file whose jobs may assume the preview role. Config `previewWorkflow`.
    Default: `.github/workflows/pull-request.yml`."""
    environment_tag_key: str = "environment"
    """Tag every platform resource carries with its environment (the stack's `aws:defaultTags`): deploy roles
    manage only resources tagged with their own environment where an ARN has no name to scope by.
    Config `environmentTagKey`. Default: `environment`."""
    registry_scanning_environment: str | None = None
    """The environment whose stack owns the account-wide ECR registry scanning configuration
    (`images.manageRegistryScanning`): only its deploy role may change it. Config `registryScanningEnvironment`.
    Default: the last of `environments` (prod)."""
    tags: dict[str, str] = field(default_factory=lambda: {"project": "container-platform", "managed-by": "pulumi"})
    """Tags on every bootstrap resource. Default: project and managed-by tags."""

    def __post_init__(self) -> None:
        _require(_GITHUB_OWNER, self.github_org, "githubOrg", "a GitHub owner name (letters, digits, '-')")
        _require(_GITHUB_NAME, self.github_repo, "githubRepo", "a repository name without the owner")
        _require_list(self.environments, "environments", _GITHUB_NAME, "GitHub environment names")
        _require_list(self.preview_branches, "previewBranches", _BRANCH, "branch names without refs/heads/")
        _require_list(self.allowed_regions, "allowedRegions", _REGION, "AWS region names such as eu-west-1")
        _require(_IAM_PATH, self.iam_path, "iamPath", "an IAM path that starts and ends with '/'")
        _require(_IAM_PATH, self.ci_iam_path, "ciIamPath", "an IAM path that starts and ends with '/'")
        if self.ci_iam_path.startswith(self.iam_path) or self.iam_path.startswith(self.ci_iam_path):
            raise ValueError(
                f"ciIamPath ({self.ci_iam_path}) and iamPath ({self.iam_path}) must not contain each other: "
                "deploy roles manage everything under iamPath"
            )
        _require(
            _NAME_PREFIX,
            self.bucket_prefix,
            "bucketPrefix",
            "the platform's applicationName followed by '-' (3-15 lowercase letters, digits, single hyphens, "
            "starting with a letter; e.g. 'jobs-')",
        )
        _require(_WORKFLOW_PATH, self.deploy_workflow, "deployWorkflow", "a path like .github/workflows/deploy.yml")
        _require(_GIT_REF, self.deploy_ref, "deployRef", "a full git ref like refs/heads/main")
        _require(
            _WORKFLOW_PATH, self.preview_workflow, "previewWorkflow", "a path like .github/workflows/pull-request.yml"
        )
        _require(_TAG_KEY, self.environment_tag_key, "environmentTagKey", "a tag key not starting with 'aws:'")
        if self.registry_scanning_environment not in (None, *self.environments):
            raise ValueError(
                f"registryScanningEnvironment must be one of environments ({', '.join(self.environments)}), "
                f"got {self.registry_scanning_environment!r}"
            )
        if self.state_bucket is not None:
            _require(_BUCKET_NAME, self.state_bucket, "stateBucket", "an S3 bucket name")
        if self.secrets_kms_key_arn is not None:
            _require(_KMS_KEY_ARN, self.secrets_kms_key_arn, "secretsKmsKeyArn", "a KMS key ARN")
        for environment, key_arn in self.secrets_kms_key_arns.items():
            if environment not in self.environments:
                raise ValueError(
                    f"secretsKmsKeyArns: {environment!r} is not one of environments ({', '.join(self.environments)})"
                )
            _require(_KMS_KEY_ARN, key_arn, f"secretsKmsKeyArns.{environment}", "a KMS key ARN")
        _require(_PULUMI_PROJECT, self.pulumi_project, "pulumiProject", "a Pulumi project name")
        _require_list(self.database_users, "databaseUsers", _DATABASE_USER, "PostgreSQL user names")
        if self.existing_oidc_provider_arn is not None:
            _require(
                _OIDC_PROVIDER_ARN,
                self.existing_oidc_provider_arn,
                "existingOidcProviderArn",
                f"the ARN of the {GITHUB_OIDC_HOST} OIDC provider",
            )
        if not 900 <= self.max_session_seconds <= 43200:
            raise ValueError(f"maxSessionSeconds must be between 900 and 43200, got {self.max_session_seconds}")

    @property
    def repository(self) -> str:
        """`owner/name`, as GitHub writes it in the token's `sub` claim."""
        return f"{self.github_org}/{self.github_repo}"

    @property
    def registry_owner(self) -> str:
        """The environment whose deploy role may change the account-wide registry scanning configuration."""
        return self.registry_scanning_environment or self.environments[-1]

    def name_prefix(self, environment: str) -> str:
        """`<applicationName>-<env>`, as the platform's stacks name their resources (StackConfig.name_prefix)."""
        return f"{self.bucket_prefix}{environment}"

    def role_path(self, environment: str) -> str:
        """IAM path of one environment's platform roles (the stack's `iam.path`): `<iamPath><env>/`."""
        return f"{self.iam_path}{environment}/"

    def promotion_source(self, environment: str) -> str | None:
        """The environment whose images this one's deploy copies by digest: the one before it in `environments`."""
        position = self.environments.index(environment)
        return self.environments[position - 1] if position > 0 else None

    def secrets_key(self, environment: str) -> str | None:
        """The `awskms://` secrets provider key of one environment's stack, if any."""
        return self.secrets_kms_key_arns.get(environment, self.secrets_kms_key_arn)

    def secrets_keys(self) -> list[str]:
        """Every secrets provider key (the preview role decrypts each environment's)."""
        keys = {*self.secrets_kms_key_arns.values(), *([self.secrets_kms_key_arn] if self.secrets_kms_key_arn else [])}
        return sorted(keys)


def load_settings(config: pulumi.Config, aws_config: pulumi.Config) -> BootstrapSettings:
    """Read and validate the stack config (`container-platform-bootstrap:*`, `aws:region`)."""
    region = aws_config.get("region")
    regions = _list(config, "allowedRegions") or ((region,) if region else ())
    if not regions:
        raise ValueError("set allowedRegions (a list of AWS regions) or aws:region")
    optional: dict[str, Any] = {
        "environments": _list(config, "environments"),
        "preview_branches": _list(config, "previewBranches"),
        "iam_path": config.get("iamPath"),
        "ci_iam_path": config.get("ciIamPath"),
        "max_session_seconds": config.get_int("maxSessionSeconds"),
        "deploy_workflow": config.get("deployWorkflow"),
        "deploy_ref": config.get("deployRef"),
        "preview_workflow": config.get("previewWorkflow"),
        "environment_tag_key": config.get("environmentTagKey"),
        "registry_scanning_environment": config.get("registryScanningEnvironment"),
        "pulumi_project": config.get("pulumiProject"),
        "database_users": _list(config, "databaseUsers"),
        "secrets_kms_key_arns": _string_map(config.get_object("secretsKmsKeyArns"), "secretsKmsKeyArns"),
        "promote_from": _promotion_source(config),
    }
    return BootstrapSettings(
        github_org=config.require("githubOrg"),
        github_repo=config.require("githubRepo"),
        allowed_regions=regions,
        bucket_prefix=config.require("bucketPrefix"),
        state_bucket=config.get("stateBucket"),
        secrets_kms_key_arn=config.get("secretsKmsKeyArn"),
        existing_oidc_provider_arn=config.get("existingOidcProviderArn"),
        **{key: value for key, value in optional.items() if value is not None},
    )


def _list(config: pulumi.Config, key: str) -> tuple[str, ...] | None:
    value = config.get_object(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{key} must be a list of strings, got {value!r}")
    return tuple(value)


def _string_map(value: object, key: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{key} must be a map of environment name to string, got {value!r}")
    return dict(value)


def _promotion_source(config: pulumi.Config) -> PromotionSource | None:
    value = config.get_object("promoteFrom")
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"account", "prefix"}:
        raise ValueError(f"promoteFrom must be {{account: <12-digit id>, prefix: <app>-<env>}}, got {value!r}")
    return PromotionSource(account=str(value["account"]), prefix=str(value["prefix"]))


def _require(pattern: re.Pattern[str], value: str, key: str, allowed: str) -> None:
    if not pattern.fullmatch(value):
        raise ValueError(f"{key} must be {allowed}, got {value!r}")


def _require_list(values: Sequence[str], key: str, pattern: re.Pattern[str], allowed: str) -> None:
    if not values:
        raise ValueError(f"{key} must list at least one value ({allowed})")
    if len(set(values)) != len(values):
        raise ValueError(f"{key} must not repeat values, got {list(values)!r}")
    for value in values:
        _require(pattern, value, key, f"a list of {allowed}")
