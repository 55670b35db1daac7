"""ImageScanning: the supply chain of the service images.

- One ECR repository per image: scan on push, immutable tags, its own rotating KMS key, lifecycle policy.
- A CodeBuild pipeline that lints each Dockerfile (hadolint), builds, scans (Trivy: vulnerabilities and secrets)
  and pushes only when every gate passed; reports go to a KMS-encrypted, TLS-only, expiring S3 bucket. With a
  GitHub source, pull requests build in a second, gates-only project whose role cannot push.
- Lifecycle rules that never expire an image tagged with the release prefix (what stacks run), so rollbacks work.
- EventBridge rules on completed registry scans and on new Inspector findings (continuous scanning), and a
  Lambda (`lambdas/scan_alerts`) that alerts the alert topic.
- Optionally, the program's own image builds (pulumi-docker), deployed by digest and tagged with a hash of what
  goes into each image (`components/build_context.py`), so only images whose inputs changed are rebuilt.
- Optionally (one stack per account and region), the registry-wide scanning configuration.

Deploy gate: every image a service runs is `<one of these repositories>@sha256:<digest>`: `image_refs` holds
only such references, and `assert_pinned_reference` rejects anything else a stack tries to deploy.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components import build_context, buildspec
from components.aws_limits import ECR_PULL_PRINCIPAL, LOG_RETENTION_DAYS
from components.iam import allow, assume_role_policy, policy_document
from components.kms import shared_or_own_key
from components.lambda_function import logged_function
from components.s3 import private_bucket

IMAGE_KEY = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
PINNED_REFERENCE = re.compile(
    r"^(?P<repository>\d{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?"
    r"/[a-z0-9]+(?:[._/-][a-z0-9]+)*)@sha256:[0-9a-f]{64}$"
)
IMAGE_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# What another account needs to pull an image by digest (skopeo copy, docker pull): read only.
PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
# Tag prefix of images a stack runs or may roll back to: the lifecycle policy never expires them. CI tags every
# digest it deploys with it (`release-<...>`) in the repository the stack pulls from.
RELEASE_TAG_PREFIX = "release-"
# ECR's default "Images per repository" quota: a keep-this-many rule that can never pick an image to expire.
RELEASE_IMAGES_KEPT = 10000
ALERT_SEVERITIES = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
LAMBDA_SOURCE = Path(__file__).resolve().parent.parent / "lambdas" / "scan_alerts"
LAMBDA_RUNTIME = "python3.13"
# Standard CodeBuild images (Amazon Linux 2023) with Docker, per build platform.
CODEBUILD_ENVIRONMENTS = {
    "linux/amd64": ("LINUX_CONTAINER", "aws/codebuild/amazonlinux-x86_64-standard:5.0"),
    "linux/arm64": ("ARM_CONTAINER", "aws/codebuild/amazonlinux-aarch64-standard:3.0"),
}
ECR_PUSH_PULL = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
)


@dataclass(frozen=True)
class ImageSource:
    context: str
    """Build context, relative to the project root (which is also the CodeBuild source root)."""
    dockerfile: str
    """Dockerfile path, relative to the project root."""
    build_args: Mapping[str, str] = field(default_factory=dict)
    """Docker build arguments (never secrets: they end up in the image history). Default: none."""


@dataclass(frozen=True)
class ImageScanningArgs:
    name_prefix: str
    """`<app>-<env>`; repositories are `<name_prefix>-<image key>`."""
    region: str
    """Region of the registry."""
    account_id: pulumi.Input[str]
    """Account of the registry (key policies, ARNs)."""
    images: Mapping[str, ImageSource]
    """Image key (e.g. `api`) -> where its Dockerfile is. One repository per key."""
    alert_topic_arn: pulumi.Input[str]
    """SNS topic the scan alerts publish to (the platform alert topic)."""
    alert_topic_kms_key_arn: pulumi.Input[str]
    """KMS key of that topic; the alert function may encrypt with it."""
    log_kms_key_arn: pulumi.Input[str]
    """KMS key of the build and function log groups."""
    platform: str = "linux/amd64"
    """Image platform, `linux/amd64` or `linux/arm64`; the CodeBuild fleet matches it. Default: linux/amd64."""
    keep_tagged_images: int = 10
    """Tagged images kept per repository, release images included in the count; older ones expire unless they
    carry a `release-` tag (those never expire). Default: 10."""
    untagged_expiry_days: int = 1
    """Days before an untagged image expires. Default: 1."""
    manage_registry_scanning: bool = False
    """This stack owns the registry's scanning configuration, which is one per account and region and covers every
    repository in it, other stacks' and teams' too: exactly one stack per account and region may set this. The owner
    keeps every repository scanned on push. Default: false (the registry's configuration is left alone)."""
    continuous_scanning: bool = False
    """With `manage_registry_scanning`: ENHANCED scanning (Amazon Inspector), CONTINUOUS_SCAN for these
    repositories and scan on push for every other one in the registry. Default: false (BASIC scan on push)."""
    severity_threshold: str = "HIGH"
    """Lowest severity that fails the Trivy gate and counts towards alerts. Default: HIGH."""
    alert_allowances: Mapping[str, int] = field(default_factory=dict)
    """Findings tolerated per severity before an alert, e.g. `{"HIGH": 5}`. Default: none tolerated."""
    build_images: bool = True
    """Build and push every image with pulumi-docker during `pulumi up`. Default: true."""
    image_overrides: Mapping[str, str] = field(default_factory=dict)
    """Image key -> `<repository url>@sha256:<digest>` promoted from a pipeline build; such an image is not built.
    Default: none."""
    promoted_digests: Mapping[str, str] = field(default_factory=dict)
    """Image key -> `sha256:<64 hex>` of an image already in this stack's repository (pushed there by CI's one
    build, or copied there by digest from the previous environment); deployed as `<repository url>@<digest>` and
    not built. Default: none."""
    source_repository_url: str | None = None
    """GitHub HTTPS clone URL the pipeline builds: pushes to `source_branch` in the project that pushes, pull
    requests in a gates-only project that cannot push. Default: none (an S3 source: upload `git archive` output to `source_object_key` in the reports bucket
    and start the build)."""
    source_branch: str = "main"
    """Branch whose pushes build and push images; pull requests only run the gates. Default: main."""
    source_connection_arn: str | None = None
    """CodeConnections connection CodeBuild authenticates to GitHub with. Default: none (the account's imported
    CodeBuild source credential)."""
    source_object_key: str = "source/source.zip"
    """S3 source object key in the reports bucket (without a GitHub URL). Default: source/source.zip."""
    report_retention_days: int = 90
    """Days scan reports are kept. Default: 90."""
    log_retention_days: int = 30
    """Build and function log retention. Default: 30."""
    build_timeout_minutes: int = 60
    """CodeBuild build timeout. Default: 60."""
    kms_key_arn: pulumi.Input[str] | None = None
    """The stack's shared KMS key for the repositories and the reports bucket (`kms.sharedKey`). Default: none (its own key)."""
    pull_principals: Sequence[str] = ()
    """Account ids or IAM role ARNs that may pull (read only) from every repository of this stack: the next
    environment's deploy role in another account, which promotes images by digest. Written as each repository's
    policy. No key policy change is needed: ECR decrypts the layers with the grant it holds on the repository key.
    Default: none (only this account)."""
    alert_function_reserved_concurrency: int | None = None
    """Reserved concurrency of the alert function; new accounts' low concurrency quota rejects any reservation, so
    none is made unless asked. Default: none (unreserved)."""


def repository_pull_policy(principals: Sequence[str]) -> str:
    """Repository policy: these principals may pull images (read only), nothing else."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PullForPromotion",
                    "Effect": "Allow",
                    "Principal": {"AWS": sorted(principals)},
                    "Action": list(PULL_ACTIONS),
                }
            ],
        },
        sort_keys=True,
    )


def assert_pinned_reference(reference: str, repository_url: str | None = None) -> str:
    """Return `reference` if it is `<ECR repository>@sha256:<64 hex>` (of `repository_url` when given), else raise.

    The deploy gate: no tag (so never `latest`), no public registry, nothing a later push can change.
    """
    match = PINNED_REFERENCE.match(reference)
    if not match:
        raise ValueError(
            f"image {reference!r} is not pinned: deploy `<account>.dkr.ecr.<region>.amazonaws.com/<repository>"
            "@sha256:<64 hex digest>` from this platform's repositories (no tag, no `latest`, no public registry)"
        )
    if repository_url is not None and match.group("repository") != repository_url:
        raise ValueError(
            f"image {reference!r} is not from {repository_url}: promote the digest into this stack's repository first"
        )
    return reference


def _validate(args: ImageScanningArgs) -> None:
    problems: list[str] = []
    if not args.images:
        problems.append("images: at least one image is required")
    for key, source in args.images.items():
        if not IMAGE_KEY.match(key):
            problems.append(f"images: key {key!r} must be lowercase letters, digits and '-', starting with a letter")
        for label, path in (("context", source.context), ("dockerfile", source.dockerfile)):
            if Path(path).is_absolute() or ".." in Path(path).parts:
                problems.append(f"images[{key!r}].{label}: {path} must be relative to the project root, without '..'")
        wants_build = args.build_images and key not in args.image_overrides and key not in args.promoted_digests
        if wants_build and not Path(source.context).is_dir():
            problems.append(f"images[{key!r}].context: {source.context} is not a directory")
        if wants_build and not Path(source.dockerfile).is_file():
            problems.append(f"images[{key!r}].dockerfile: {source.dockerfile} does not exist")
    for label, given in (("image_overrides", args.image_overrides), ("promoted_digests", args.promoted_digests)):
        for key in given:
            if key not in args.images:
                problems.append(f"{label}: {key!r} is not one of images ({', '.join(args.images)})")
    for key, digest in args.promoted_digests.items():
        if not IMAGE_DIGEST.match(digest):
            problems.append(f"promoted_digests[{key!r}]: {digest!r} is not a digest; allowed: sha256:<64 hex>")
        if key in args.image_overrides:
            problems.append(f"promoted_digests[{key!r}]: also in image_overrides; allowed: one source per image")
    if args.continuous_scanning and not args.manage_registry_scanning:
        problems.append(
            "continuous_scanning: true needs manage_registry_scanning: true (scanning is configured per account and "
            "region, for every repository in it: only the one stack that owns it may turn continuous scanning on)"
        )
    if args.platform not in buildspec.PLATFORMS:
        problems.append(f"platform: {args.platform!r} is not one of {', '.join(buildspec.PLATFORMS)}")
    if args.severity_threshold not in buildspec.SEVERITIES:
        problems.append(
            f"severity_threshold: {args.severity_threshold!r} is not one of {', '.join(buildspec.SEVERITIES)}"
        )
    for severity, allowed in args.alert_allowances.items():
        if severity not in ALERT_SEVERITIES or allowed < 0:
            problems.append(f"alert_allowances: {severity}={allowed} needs a severity of "
                            f"{', '.join(ALERT_SEVERITIES)} and a count >= 0")  # fmt: skip
    if args.keep_tagged_images < 1:
        problems.append(f"keep_tagged_images: {args.keep_tagged_images} must be at least 1")
    if args.untagged_expiry_days < 1 or args.report_retention_days < 1:
        problems.append("untagged_expiry_days and report_retention_days must be at least 1")
    if args.log_retention_days not in LOG_RETENTION_DAYS:
        problems.append(f"log_retention_days: {args.log_retention_days} is not a CloudWatch retention value")
    if not 5 <= args.build_timeout_minutes <= 2160:
        problems.append(f"build_timeout_minutes: {args.build_timeout_minutes} must be 5 to 2160")
    if args.source_repository_url is not None and not args.source_repository_url.startswith("https://github.com/"):
        problems.append(f"source_repository_url: {args.source_repository_url!r} must be a https://github.com/ URL")
    for principal in args.pull_principals:
        if not ECR_PULL_PRINCIPAL.match(principal):
            problems.append(
                f"pull_principals: {principal!r} is not allowed; allowed: a 12-digit account id or an IAM role ARN "
                "(arn:aws:iam::<account>:role/<path and name>)"
            )
    if args.source_connection_arn and args.source_repository_url is None:
        problems.append("source_connection_arn is set but source_repository_url is not: a connection needs GitHub")
    if problems:
        raise ValueError("invalid ImageScanningArgs:\n" + "\n".join(f"  - {p}" for p in problems))
    for key, reference in args.image_overrides.items():
        try:
            assert_pinned_reference(reference)
        except ValueError as error:
            raise ValueError(f"image_overrides[{key!r}]: {error}") from error


def lifecycle_policy(untagged_expiry_days: int, keep_tagged_images: int) -> str:
    """Never expire release images; expire untagged images after N days; keep the newest N tagged images.

    ECR: "An image that matches the tagging requirements of a rule cannot be expired by a rule with a lower
    priority", so the release rule, first, shields every `release-` image from the keep-N rule after it.
    """
    rules = [
        {
            "rulePriority": 1,
            "description": f"Never expire images a stack runs or may roll back to ({RELEASE_TAG_PREFIX}*)",
            "selection": {
                "tagStatus": "tagged",
                "tagPrefixList": [RELEASE_TAG_PREFIX],
                "countType": "imageCountMoreThan",
                "countNumber": RELEASE_IMAGES_KEPT,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": f"Expire untagged images after {untagged_expiry_days} day(s)",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": untagged_expiry_days,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 3,
            "description": f"Keep the newest {keep_tagged_images} tagged images",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": ["*"],
                "countType": "imageCountMoreThan",
                "countNumber": keep_tagged_images,
            },
            "action": {"type": "expire"},
        },
    ]
    return json.dumps({"rules": rules})


def scan_event_pattern(repository_names: Sequence[str], repository_arns: Sequence[str]) -> str:
    """Completed scans of our repositories: ECR basic scans, and Inspector's initial scans.

    Both, whatever this stack configures: the registry's scan type is set by whichever stack owns it, and once it is
    ENHANCED our repositories' scans arrive from Inspector only.
    """
    # Inspector's events name the repository by ARN in `repository-name`.
    return json.dumps(
        {
            "source": ["aws.ecr", "aws.inspector2"],
            "detail-type": ["ECR Image Scan", "Inspector2 Scan"],
            "detail": {
                "scan-status": ["COMPLETE", "INITIAL_SCAN_COMPLETE"],
                "repository-name": sorted(repository_names) + sorted(repository_arns),
            },
        }
    )


def finding_event_pattern(repository_names: Sequence[str], registry_id: str, severities: Sequence[str]) -> str:
    """Active Inspector findings at or above the threshold in our repositories: what continuous scanning reports
    when a new CVE affects an image already pushed (or running). Scan events cover the initial scan."""
    return json.dumps(
        {
            "source": ["aws.inspector2"],
            "detail-type": ["Inspector2 Finding"],
            "detail": {
                "status": ["ACTIVE"],
                "severity": list(severities),
                "resources": {
                    "type": ["AWS_ECR_CONTAINER_IMAGE"],
                    "details": {
                        "awsEcrContainerImage": {
                            "registry": [registry_id],
                            "repositoryName": sorted(repository_names),
                        }
                    },
                },
            },
        }
    )


class ImageScanning(pulumi.ComponentResource):
    repository_urls: dict[str, pulumi.Output[str]]
    """Image key -> ECR repository URL."""
    repository_arns: dict[str, pulumi.Output[str]]
    """Image key -> ECR repository ARN."""
    image_refs: dict[str, pulumi.Output[str]]
    """Image key -> `<repository url>@sha256:<digest>` for built or promoted images: what services deploy."""
    reports_bucket_name: pulumi.Output[str]
    """Bucket of the scan reports (and the S3 pipeline source)."""
    build_project_name: pulumi.Output[str]
    """CodeBuild project that lints, builds, scans and pushes."""
    pull_request_project_name: pulumi.Output[str] | None
    """Gates-only CodeBuild project pull requests build in (GitHub sources only); its role cannot push."""
    release_tag_prefix: str
    """Tag prefix the lifecycle policy never expires: CI tags every digest a stack deploys with it."""
    alert_function_name: pulumi.Output[str]
    """Lambda that turns completed scans into alerts."""
    image_tags: dict[str, str]
    """Image key -> tag of the program's own build: `src-<hash of its Dockerfile, kept context, platform, args>`."""

    def __init__(self, name: str, args: ImageScanningArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        _validate(args)
        super().__init__("container-platform:scanning:ImageScanning", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        self._repositories(name, args)
        self._reports_bucket(name, args)
        self._pipeline(name, args)
        self._scan_alerts(name, args)
        self.image_refs = self._images(name, args)
        self.reports_bucket_name = self.reports_bucket.bucket
        self.build_project_name = self.project.name
        self.release_tag_prefix = RELEASE_TAG_PREFIX
        self.alert_function_name = self.alert_function.name
        self.register_outputs(
            {
                "repository_urls": self.repository_urls,
                "image_refs": self.image_refs,
                "reports_bucket_name": self.reports_bucket_name,
                "build_project_name": self.build_project_name,
                "pull_request_project_name": self.pull_request_project_name,
                "release_tag_prefix": self.release_tag_prefix,
                "alert_function_name": self.alert_function_name,
            }
        )

    # --- Repositories ---

    def _repositories(self, name: str, args: ImageScanningArgs) -> None:
        self.ecr_key, ecr_key_arn = shared_or_own_key(
            f"{name}-ecr-key",
            args.kms_key_arn,
            description=f"{args.name_prefix}: ECR image repositories",
            account_id=args.account_id,
            region=args.region,
            opts=self._child,
        )
        self.repositories: dict[str, aws.ecr.Repository] = {}
        for key in args.images:
            repository = aws.ecr.Repository(
                f"{name}-{key}-repo",
                name=f"{args.name_prefix}-{key}",
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
                encryption_configurations=[
                    aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS", kms_key=ecr_key_arn)
                ],
                force_delete=False,
                opts=self._child,
            )
            aws.ecr.LifecyclePolicy(
                f"{name}-{key}-lifecycle",
                repository=repository.name,
                policy=lifecycle_policy(args.untagged_expiry_days, args.keep_tagged_images),
                opts=self._child,
            )
            if args.pull_principals:
                aws.ecr.RepositoryPolicy(
                    f"{name}-{key}-pull",
                    repository=repository.name,
                    policy=repository_pull_policy(args.pull_principals),
                    opts=self._child,
                )
            self.repositories[key] = repository
        if args.manage_registry_scanning:
            self._registry_scanning(name, args)
        self.repository_urls = {key: r.repository_url for key, r in self.repositories.items()}
        self.repository_arns = {key: r.arn for key, r in self.repositories.items()}

    def _registry_scanning(self, name: str, args: ImageScanningArgs) -> None:
        """Registry-wide: replaces the scanning configuration of every repository in this account and region."""
        rule = aws.ecr.RegistryScanningConfigurationRuleArgs
        every_filter = aws.ecr.RegistryScanningConfigurationRuleRepositoryFilterArgs
        # With ENHANCED scanning "any repositories not matching an enhanced scanning filter will have scanning
        # disabled" (ECR user guide), and a continuous filter wins over a scan-on-push one: so the `*` rule keeps
        # every other team's repository scanned, as BASIC scan on push did before.
        every_repository = rule(
            scan_frequency="SCAN_ON_PUSH", repository_filters=[every_filter(filter="*", filter_type="WILDCARD")]
        )
        rules = [every_repository]
        if args.continuous_scanning:
            # ECR: a filter without `*` matches every repository name that contains it.
            ours = [every_filter(filter=f"{args.name_prefix}-{key}", filter_type="WILDCARD") for key in args.images]
            rules.insert(0, rule(scan_frequency="CONTINUOUS_SCAN", repository_filters=ours))
        aws.ecr.RegistryScanningConfiguration(
            f"{name}-registry-scanning",
            scan_type="ENHANCED" if args.continuous_scanning else "BASIC",
            rules=rules,
            opts=self._child,
        )

    # --- Reports bucket ---

    def _reports_bucket(self, name: str, args: ImageScanningArgs) -> None:
        self.reports_key, self._reports_key_arn = shared_or_own_key(
            f"{name}-reports-key",
            args.kms_key_arn,
            description=f"{args.name_prefix}: image scan reports and build artifacts",
            account_id=args.account_id,
            region=args.region,
            opts=self._child,
        )
        bucket = private_bucket(
            f"{name}-reports",
            bucket_prefix=f"{args.name_prefix}-scan-reports-",
            expiration_days=args.report_retention_days,
            kms_key_arn=self._reports_key_arn,
            versioned=True,
            opts=self._child,
        ).bucket
        self.reports_bucket = bucket

    # --- Pipeline ---

    def _pipeline(self, name: str, args: ImageScanningArgs) -> None:
        project_name = f"{args.name_prefix}-images"
        self.build_logs = self._build_log_group(f"{name}-build-logs", project_name, args)
        role = aws.iam.Role(
            f"{name}-build-role",
            assume_role_policy=assume_role_policy("codebuild.amazonaws.com", args.account_id),
            description=f"{project_name}: push its images, write its reports and logs",
            opts=self._child,
        )
        role_policy = aws.iam.RolePolicy(
            f"{name}-build-policy",
            role=role.id,
            policy=policy_document(self._build_statements(args)),
            opts=self._child,
        )
        spec = buildspec.render(
            self._targets(args),
            platform=args.platform,
            severity_threshold=args.severity_threshold,
            source_type="S3" if args.source_repository_url is None else "GITHUB",
        )
        variable = aws.codebuild.ProjectEnvironmentEnvironmentVariableArgs
        registry = pulumi.Output.concat(args.account_id, ".dkr.ecr.", args.region, ".amazonaws.com")
        self.project = aws.codebuild.Project(
            f"{name}-build",
            name=project_name,
            description=f"{args.name_prefix}: lint, build, scan and (only when clean) push the service images",
            service_role=role.arn,
            encryption_key=self._reports_key_arn,
            build_timeout=args.build_timeout_minutes,
            concurrent_build_limit=1,
            artifacts=aws.codebuild.ProjectArtifactsArgs(type="NO_ARTIFACTS"),
            cache=aws.codebuild.ProjectCacheArgs(type="LOCAL", modes=["LOCAL_DOCKER_LAYER_CACHE"]),
            environment=self._build_environment(
                args,
                [
                    variable(name="REGISTRY", value=registry),
                    variable(name="REPORTS_BUCKET", value=self.reports_bucket.bucket),
                ],
            ),
            source=self._source(args, spec),
            logs_config=self._logs_config(self.build_logs),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
        )
        self.pull_request_project_name = None
        if args.source_repository_url is not None:
            self._push_webhook(name, args)
            self._pull_request_pipeline(name, args)

    def _targets(self, args: ImageScanningArgs) -> list[buildspec.BuildTarget]:
        return [
            buildspec.BuildTarget(key, f"{args.name_prefix}-{key}", source.context, source.dockerfile)
            for key, source in args.images.items()
        ]

    def _build_log_group(self, name: str, project_name: str, args: ImageScanningArgs) -> aws.cloudwatch.LogGroup:
        return aws.cloudwatch.LogGroup(
            name,
            name=f"/aws/codebuild/{project_name}",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.log_kms_key_arn,
            opts=self._child,
        )

    @staticmethod
    def _build_environment(
        args: ImageScanningArgs, variables: Sequence[aws.codebuild.ProjectEnvironmentEnvironmentVariableArgs]
    ) -> aws.codebuild.ProjectEnvironmentArgs:
        environment_type, build_image = CODEBUILD_ENVIRONMENTS[args.platform]
        return aws.codebuild.ProjectEnvironmentArgs(
            type=environment_type,
            image=build_image,
            compute_type="BUILD_GENERAL1_MEDIUM",
            image_pull_credentials_type="CODEBUILD",
            # Privileged only because the build runs the Docker daemon to build images.
            privileged_mode=True,
            environment_variables=list(variables) or None,
        )

    @staticmethod
    def _logs_config(log_group: aws.cloudwatch.LogGroup) -> aws.codebuild.ProjectLogsConfigArgs:
        return aws.codebuild.ProjectLogsConfigArgs(
            cloudwatch_logs=aws.codebuild.ProjectLogsConfigCloudwatchLogsArgs(
                status="ENABLED", group_name=log_group.name
            ),
            s3_logs=aws.codebuild.ProjectLogsConfigS3LogsArgs(status="DISABLED"),
        )

    def _source(self, args: ImageScanningArgs, spec: str) -> aws.codebuild.ProjectSourceArgs:
        if args.source_repository_url is None:
            return aws.codebuild.ProjectSourceArgs(
                type="S3",
                location=pulumi.Output.concat(self.reports_bucket.bucket, "/", args.source_object_key),
                buildspec=spec,
            )
        auth = (
            aws.codebuild.ProjectSourceAuthArgs(type="CODECONNECTIONS", resource=args.source_connection_arn)
            if args.source_connection_arn
            else None
        )
        return aws.codebuild.ProjectSourceArgs(
            type="GITHUB",
            location=args.source_repository_url,
            buildspec=spec,
            git_clone_depth=1,
            report_build_status=True,
            auth=auth,
        )

    def _push_webhook(self, name: str, args: ImageScanningArgs) -> None:
        """The pushing project builds pushes to `source_branch`, and nothing else: no pull request, no other ref."""
        event = aws.codebuild.WebhookFilterGroupFilterArgs
        aws.codebuild.Webhook(
            f"{name}-webhook",
            project_name=self.project.name,
            build_type="BUILD",
            filter_groups=[
                aws.codebuild.WebhookFilterGroupArgs(
                    filters=[
                        event(type="EVENT", pattern="PUSH"),
                        event(type="HEAD_REF", pattern=f"^refs/heads/{re.escape(args.source_branch)}$"),
                    ]
                ),
            ],
            opts=self._child,
        )

    def _pull_request_pipeline(self, name: str, args: ImageScanningArgs) -> None:
        """Pull requests (forks included) run the same gates in a project whose role can only write its own logs:
        no registry login, no push, no reports bucket. A fork's Dockerfile runs with Docker privileges, so a
        maintainer also approves fork builds first."""
        project_name = f"{args.name_prefix}-images-pr"
        log_group = self._build_log_group(f"{name}-pr-build-logs", project_name, args)
        role = aws.iam.Role(
            f"{name}-pr-build-role",
            assume_role_policy=assume_role_policy("codebuild.amazonaws.com", args.account_id),
            description=f"{project_name}: gates only; writes its logs, cannot push images",
            opts=self._child,
        )
        statements: list[pulumi.Input[Mapping[str, Any]]] = [
            allow(["logs:CreateLogStream", "logs:PutLogEvents"],
                  [log_group.arn, pulumi.Output.concat(log_group.arn, ":*")], sid="WriteBuildLogs"),
        ]  # fmt: skip
        statements += self._source_connection_statements(args)
        role_policy = aws.iam.RolePolicy(
            f"{name}-pr-build-policy", role=role.id, policy=policy_document(statements), opts=self._child
        )
        spec = buildspec.render(
            self._targets(args),
            platform=args.platform,
            severity_threshold=args.severity_threshold,
            source_type="GITHUB",
            push=False,
        )
        project = aws.codebuild.Project(
            f"{name}-pr-build",
            name=project_name,
            description=f"{args.name_prefix}: pull requests: lint, build and scan the service images; never pushes",
            service_role=role.arn,
            build_timeout=args.build_timeout_minutes,
            concurrent_build_limit=2,
            artifacts=aws.codebuild.ProjectArtifactsArgs(type="NO_ARTIFACTS"),
            environment=self._build_environment(args, []),
            source=self._source(args, spec),
            logs_config=self._logs_config(log_group),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
        )
        event = aws.codebuild.WebhookFilterGroupFilterArgs
        aws.codebuild.Webhook(
            f"{name}-pr-webhook",
            project_name=project.name,
            build_type="BUILD",
            filter_groups=[
                aws.codebuild.WebhookFilterGroupArgs(
                    filters=[
                        event(type="EVENT", pattern="PULL_REQUEST_CREATED,PULL_REQUEST_UPDATED,PULL_REQUEST_REOPENED")
                    ]
                )
            ],
            pull_request_build_policy=aws.codebuild.WebhookPullRequestBuildPolicyArgs(
                requires_comment_approval="FORK_PULL_REQUESTS",
                approver_roles=["GITHUB_MAINTAIN", "GITHUB_ADMIN"],
            ),
            opts=self._child,
        )
        self.pull_request_project_name = project.name

    def _build_statements(self, args: ImageScanningArgs) -> list[pulumi.Input[Mapping[str, Any]]]:
        repositories = list(self.repository_arns.values())
        bucket_arn = self.reports_bucket.arn
        statements: list[pulumi.Input[Mapping[str, Any]]] = [
            # GetAuthorizationToken has no resource-level permissions: `*` is the only resource it accepts.
            allow(["ecr:GetAuthorizationToken"], ["*"], sid="EcrLogin"),
            allow(list(ECR_PUSH_PULL), repositories, sid="PushOwnRepositories"),
            allow(["s3:PutObject"], [pulumi.Output.concat(bucket_arn, f"/{buildspec.REPORTS_PREFIX}/*")],
                  sid="WriteReports"),
            allow(["logs:CreateLogStream", "logs:PutLogEvents"],
                  [self.build_logs.arn, pulumi.Output.concat(self.build_logs.arn, ":*")], sid="WriteBuildLogs"),
            # SSE-KMS uploads (reports) and CodeBuild's own encryption use the reports key.
            allow(["kms:Decrypt", "kms:GenerateDataKey"], [self._reports_key_arn], sid="UseReportsKey"),
        ]  # fmt: skip
        if args.source_repository_url is None:
            source = pulumi.Output.concat(bucket_arn, "/", args.source_object_key)
            statements.append(allow(["s3:GetObject", "s3:GetObjectVersion"], [source], sid="ReadSource"))
        return statements + self._source_connection_statements(args)

    @staticmethod
    def _source_connection_statements(args: ImageScanningArgs) -> list[pulumi.Input[Mapping[str, Any]]]:
        if not args.source_connection_arn:
            return []
        return [
            allow(
                ["codeconnections:GetConnection", "codeconnections:GetConnectionToken"],
                [args.source_connection_arn],
                sid="UseSourceConnection",
            )
        ]

    # --- Scan alerts ---

    def _scan_alerts(self, name: str, args: ImageScanningArgs) -> None:
        self.alert_function = logged_function(
            f"{name}-alerts",
            function_name=f"{args.name_prefix}-scan-alerts",
            role_description="read scan findings of its repositories, publish alerts",
            statements=[
                allow(["ecr:DescribeImageScanFindings"], list(self.repository_arns.values()), sid="ReadFindings"),
                allow(["sns:Publish"], [args.alert_topic_arn], sid="PublishAlerts"),
                allow(["kms:Decrypt", "kms:GenerateDataKey"], [args.alert_topic_kms_key_arn], sid="UseTopicKey"),
            ],
            account_id=args.account_id,
            log_retention_days=args.log_retention_days,
            log_kms_key_arn=args.log_kms_key_arn,
            parent=self,
            description="Publishes image scans above the allowances and new findings to the alert topic",
            runtime=LAMBDA_RUNTIME,
            architectures=["arm64"],
            handler="handler.handler",
            code=pulumi.AssetArchive({"handler.py": pulumi.FileAsset(_project_relative(LAMBDA_SOURCE / "handler.py"))}),
            timeout=60,
            memory_size=256,
            reserved_concurrent_executions=args.alert_function_reserved_concurrency,
            environment=aws.lambda_.FunctionEnvironmentArgs(
                variables={
                    "ALERT_TOPIC_ARN": args.alert_topic_arn,
                    "SEVERITY_THRESHOLD": args.severity_threshold,
                    "ALLOWED_FINDINGS": json.dumps(dict(sorted(args.alert_allowances.items()))),
                    "REPOSITORIES": ",".join(sorted(f"{args.name_prefix}-{key}" for key in args.images)),
                }
            ),
            # Events that still fail after Lambda's retries land on the alert topic instead of vanishing.
            dead_letter_config=aws.lambda_.FunctionDeadLetterConfigArgs(target_arn=args.alert_topic_arn),
        )
        names = [f"{args.name_prefix}-{key}" for key in args.images]
        scans = aws.cloudwatch.EventRule(
            f"{name}-scan-complete",
            name=f"{args.name_prefix}-image-scan-complete",
            description="Completed image scans of the platform's repositories",
            event_pattern=pulumi.Output.all(*self.repository_arns.values()).apply(
                lambda arns: scan_event_pattern(names, list(arns))
            ),
            opts=self._child,
        )
        self._invoke_alerts_on(f"{name}-scan-complete", scans)
        # Continuous scanning reports a new CVE in an image already scanned as a finding, not as a scan.
        severities = [s for s in ALERT_SEVERITIES if s in buildspec.severities_at_or_above(args.severity_threshold)]
        findings = aws.cloudwatch.EventRule(
            f"{name}-findings",
            name=f"{args.name_prefix}-image-findings",
            description="New Inspector findings at or above the threshold in the platform's repositories",
            event_pattern=pulumi.Output.from_input(args.account_id).apply(
                lambda account: finding_event_pattern(names, account, severities)
            ),
            opts=self._child,
        )
        self._invoke_alerts_on(f"{name}-findings", findings)

    def _invoke_alerts_on(self, name: str, rule: aws.cloudwatch.EventRule) -> None:
        aws.cloudwatch.EventTarget(
            f"{name}-target",
            rule=rule.name,
            arn=self.alert_function.arn,
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_event_age_in_seconds=3600, maximum_retry_attempts=5
            ),
            opts=self._child,
        )
        aws.lambda_.Permission(
            f"{name}-invoke",
            action="lambda:InvokeFunction",
            function=self.alert_function.name,
            principal="events.amazonaws.com",
            source_arn=rule.arn,
            opts=self._child,
        )

    # --- Images ---

    def _images(self, name: str, args: ImageScanningArgs) -> dict[str, pulumi.Output[str]]:
        refs: dict[str, pulumi.Output[str]] = {}
        self.image_tags = {}
        for key, reference in args.image_overrides.items():
            refs[key] = self.repository_urls[key].apply(lambda url, ref=reference: assert_pinned_reference(ref, url))
        for key, digest in args.promoted_digests.items():
            refs[key] = self.repository_urls[key].apply(
                lambda url, d=digest: assert_pinned_reference(f"{url}@{d}", url)
            )
        if not args.build_images:
            return refs
        for key, source in args.images.items():
            if key in refs:
                continue
            repository = self.repositories[key]
            tag = build_context.content_tag(
                Path(source.context), Path(source.dockerfile), platform=args.platform, build_args=source.build_args
            )
            self.image_tags[key] = tag
            token = aws.ecr.get_authorization_token_output(
                registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            image = docker.Image(
                f"{name}-{key}-image",
                image_name=pulumi.Output.concat(repository.repository_url, ":", tag),
                build=docker.DockerBuildArgs(
                    context=source.context,
                    dockerfile=source.dockerfile,
                    platform=args.platform,
                    args=dict(source.build_args),
                ),
                registry=docker.RegistryArgs(
                    server=repository.repository_url,
                    username=token.user_name,
                    password=pulumi.Output.secret(token.password),
                ),
                opts=self._child,
            )
            refs[key] = pulumi.Output.all(image.repo_digest, repository.repository_url).apply(
                lambda values: assert_pinned_reference(values[0], values[1])
            )
        return refs


def _project_relative(path: Path) -> str:
    """Path relative to the working directory (the project root under Pulumi), so state does not hold a home path."""
    return os.path.relpath(path)
