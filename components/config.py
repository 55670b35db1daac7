"""Typed, validated stack configuration, on pydantic models.

The only module besides `__main__.py` that knows about Pulumi config. `load_stack_config` reads every key of the
project namespace, applies the environment's profile from `PROFILES` (the one sizing table), lets the stack file
override it, and returns a frozen `StackConfig`, or raises `ConfigError` listing one problem per line, each
naming the key, the value and what is allowed. Nothing is registered before this succeeds. Each section is a
strict, frozen pydantic model (no "5" for 5, unknown keys refused) whose attribute docstrings become the README
table and the editors' JSON Schema (`python -m components.docgen`); `_describe` turns pydantic's errors into the
platform's one-line messages, and rules across keys stay plain functions (`_cross_field_problems`).
"""

from __future__ import annotations

import ipaddress
import json
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, ValidationError
from pydantic_core import PydanticCustomError, core_schema

from components.aws_limits import (
    CACHE_NODE_FAMILIES,
    DB_INSTANCE_FAMILIES,
    ECR_PULL_PRINCIPAL,
    FARGATE_MEMORY_BY_CPU,
    HTTP_API_BURST_QUOTA,
    HTTP_API_RATE_QUOTA,
    LOG_RETENTION_DAYS,
    is_cache_node_type,
    is_db_instance_class,
)

ENVIRONMENTS = ("dev", "staging", "prod")
Environment = Literal["dev", "staging", "prod"]
NatStrategy = Literal["single", "onePerAz"]
Egress = Literal["natGateway", "natInstance"]
ContainerInsights = Literal["enhanced", "enabled", "disabled"]
CpuArchitecture = Literal["X86_64", "ARM64"]

EMAIL_PATTERN = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
ACM_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
IAM_PATH_PATTERN = re.compile(r"^/([\w+=,.@-]+/)*$")
IAM_POLICY_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:policy/[\w+=,.@/-]+$")
ECR_DIGEST_PATTERN = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$")
PINNED_IMAGE = "an ECR image pinned by digest, <account>.dkr.ecr.<region>.amazonaws.com/<repo>@sha256:<64 hex>"
# `<app>-<env>` prefixes names with AWS length limits (ALB 32, S3 bucket prefix 37 with its suffixes): 15 max.
NAME_PATTERN = re.compile(r"^(?!.*--)[a-z][a-z0-9-]{1,13}[a-z0-9]$")
# The fck-nat image the NAT instance runs is arm64: Graviton types only (t4g, c6gn, c7gn, m7g, ...).
GRAVITON_INSTANCE_TYPE = re.compile(r"^[a-z]+\d+g[a-z]*\.(nano|micro|small|medium|large|\d*xlarge)$")


class ConfigError(ValueError):
    """Stack config is invalid; `problems` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid stack config:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Check:
    """A field's rule beyond its type, and the sentence that says what is allowed (`Annotated[int, Check(...)]`)."""

    predicate: Callable[[Any], bool]
    allowed: str

    @classmethod
    def matching(cls, pattern: re.Pattern[str], allowed: str) -> Check:
        """A text field that must match `pattern`."""
        return cls(lambda value: bool(pattern.match(value)), allowed)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def validate(value: Any) -> Any:
            if not self.predicate(value):
                raise PydanticCustomError("check", "{allowed}", {"allowed": self.allowed})
            return value

        return core_schema.no_info_after_validator_function(validate, handler(source))


class ConfigModel(BaseModel):
    """A config section: frozen, strict types (no "5" for 5), unknown keys refused. The fields' docstrings become
    descriptions only where docs are generated (components/docgen.py): pydantic's `use_attribute_docstrings` reads
    every class's source at import, about a tenth of a plan's time."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")


AcmCertificateArn = Annotated[
    str, Check.matching(ACM_ARN_PATTERN, "an ACM certificate ARN, arn:aws:acm:<region>:<account>:certificate/<uuid>")
]


def _positive(value: int) -> bool:
    return value >= 1


def _non_negative(value: int) -> bool:
    return value >= 0


def _is_pinned_image(value: str) -> bool:
    return bool(ECR_DIGEST_PATTERN.match(value))


# --- Sections ---------------------------------------------------------------------------------------------


Strategy = Literal["rolling", "blueGreen", "canary", "linear"]
# ECS's names for them (`deploymentConfiguration.strategy`).
ECS_STRATEGIES: dict[str, str] = {
    "rolling": "ROLLING",
    "blueGreen": "BLUE_GREEN",
    "canary": "CANARY",
    "linear": "LINEAR",
}
HTTP_STATUS = "an HTTP status code 100-599"


class SmokeTest(ConfigModel):
    """One request the deployment hook sends to the new revision through the test route before traffic shifts."""

    path: Annotated[str, Check(lambda v: v.startswith("/"), "a path starting with /")]
    """Path to request (GET). Required."""
    status: Annotated[int, Check(lambda v: 100 <= v <= 599, HTTP_STATUS)] = 200
    """Status the new revision must answer. Default: 200."""


# ECS's ranges, shared by the stack-wide deployment settings and a service's overrides of them.
Minutes = Annotated[int, Check(lambda v: 0 <= v <= 1440, "0-1440 minutes")]
CanaryPercent = Annotated[float, Check(lambda v: 0.1 <= v <= 100, "0.1-100")]
LinearStepPercent = Annotated[float, Check(lambda v: 3 <= v <= 100, "3-100")]


class DeploymentOverride(ConfigModel):
    """A service's own deployment settings (`service.deployment`, `jobPlatform.worker.deployment`, `services.<name>.deployment`); each key left out comes from the stack's `deployment`."""

    strategy: Strategy | None = None
    """See deployment.strategy. Default: deployment.strategy."""
    bakeTimeMinutes: Minutes | None = None
    """See deployment.bakeTimeMinutes. Default: deployment.bakeTimeMinutes."""
    canaryPercent: CanaryPercent | None = None
    """See deployment.canaryPercent. Default: deployment.canaryPercent."""
    linearStepPercent: LinearStepPercent | None = None
    """See deployment.linearStepPercent. Default: deployment.linearStepPercent."""
    stepMinutes: Minutes | None = None
    """See deployment.stepMinutes. Default: deployment.stepMinutes."""
    rollbackAlarms: bool | None = None
    """See deployment.rollbackAlarms. Default: deployment.rollbackAlarms."""
    smokeTests: list[SmokeTest] | None = None
    """See deployment.smokeTests. Default: deployment.smokeTests."""


class NetworkConfig(ConfigModel):
    cidrBlock: Annotated[
        str, Check(lambda v: _is_vpc_cidr(v), "an IPv4 CIDR /16 to /22 (/21 or larger with 3 AZs)")
    ] = "10.0.0.0/16"
    """VPC CIDR block. Default: 10.0.0.0/16."""
    maxAzs: Annotated[int, Check(lambda v: 2 <= v <= 3, "2 or 3")] = 3
    """Availability zones to spread subnets over. Default: 3 (the seed's maxAzs)."""
    natGateways: NatStrategy = "single"
    """NAT gateways with `egress: natGateway`: `single` (one, cheap) or `onePerAz` (HA). Default: per environment."""
    egress: Egress = "natGateway"
    """How private subnets reach the internet: `natGateway` (managed NAT gateways) or `natInstance` (one fck-nat instance in an auto scaling group of 1, about a tenth of the cost, single AZ; not allowed in prod). Default: natGateway."""
    natInstanceType: Annotated[
        str,
        Check.matching(
            GRAVITON_INSTANCE_TYPE,
            "an ARM64 (Graviton) instance type such as t4g.nano, t4g.micro or c7gn.medium",
        ),
    ] = "t4g.nano"
    """Instance type of the NAT instance with `egress: natInstance` (ARM64: the fck-nat image is arm64). Default: t4g.nano."""
    natInstanceSsm: bool = False
    """Give the NAT instance the SSM managed-instance policy (Session Manager, Patch Manager) with `egress: natInstance`. Default: false (no shell access at all)."""
    flowLogRetentionDays: Annotated[int, Check(lambda v: v in LOG_RETENTION_DAYS, "a CloudWatch retention value")] = 30
    """VPC flow log retention in days. Default: per environment."""


class ServiceConfig(ConfigModel):
    cpu: Annotated[int, Check(lambda v: v in FARGATE_MEMORY_BY_CPU, f"one of {sorted(FARGATE_MEMORY_BY_CPU)}")] = 512
    """Task CPU units. Default: per environment (512/1024/2048)."""
    memory: Annotated[int, Check(_positive, "a positive number of MiB")] = 1024
    """Task memory MiB; must be a valid Fargate size for `cpu`. Default: per environment (1024/2048/4096)."""
    desiredCount: Annotated[int, Check(_non_negative, "0 or more")] = 1
    """Tasks to run. Default: per environment (1/2/3)."""
    minCount: Annotated[int, Check(_non_negative, "0 or more")] | None = None
    """Autoscaling minimum. Default: max(1, desiredCount - 1) (the seed's rule)."""
    maxCount: Annotated[int, Check(_positive, "1 or more")] = 3
    """Autoscaling maximum. Default: per environment (3/5/10)."""
    containerPort: Annotated[int, Check(lambda v: 1024 <= v <= 65535, "1024-65535 (non-root)")] = 8080
    """Container port (unprivileged, since the container runs as non-root). Default: 8080."""
    healthCheckPath: Annotated[str, Check(lambda v: v.startswith("/"), "a path starting with /")] = "/health"
    """Target group and container health check path. Default: /health."""
    image: Annotated[str, Check(_is_pinned_image, PINNED_IMAGE)] | None = None
    """Image promoted into this stack's `<app>-<env>-api` repository, run instead of building services/api. Default: built and pushed by the program."""
    cpuArchitecture: CpuArchitecture = "X86_64"
    """Fargate CPU architecture (ARM64 is ~20% cheaper). Default: X86_64."""
    spotWeight: Annotated[int, Check(_non_negative, "0 or more")] = 0
    """Relative weight of FARGATE_SPOT in the capacity provider strategy. Default: per environment."""
    onDemandBase: Annotated[int, Check(_non_negative, "0 or more")] = 1
    """Tasks always placed on on-demand FARGATE before weights apply. Default: 1."""
    enableExecuteCommand: bool = False
    """Allow ECS Exec into running API tasks (audited to the cluster's exec log group; makes the root filesystem
    writable, which ECS Exec needs). Default: false."""
    deployment: DeploymentOverride | None = None
    """The API's own deployment settings (object; keys as in `deployment`). Default: the stack's `deployment`."""


class StorageConfig(ConfigModel):
    enabled: bool = True
    """Create the shared EFS file system and mount it into the API and worker. Default: true."""
    performanceMode: Literal["generalPurpose", "maxIO"] = "generalPurpose"
    """EFS performance mode (AWS advises against maxIO; archive needs generalPurpose). Default: generalPurpose."""
    throughputMode: Literal["bursting", "provisioned", "elastic"] = "elastic"
    """EFS throughput mode; the archive tier needs elastic. Default: elastic."""
    provisionedThroughputMibps: Annotated[float, Check(lambda v: 1 <= v <= 3414, "1-3414 MiB/s")] | None = None
    """Provisioned throughput; required with `provisioned`, refused otherwise (the seed's prod: 100). Default: none."""
    mountPath: Annotated[str, Check(lambda v: v.startswith("/mnt/"), "a path under /mnt/")] = "/mnt/shared"
    """Where services see the shared file system (`STORAGE_PATH`). Default: /mnt/shared."""


class DatabaseConfig(ConfigModel):
    enabled: bool = True
    """Create the RDS PostgreSQL instance and attach it to the API and worker. Default: true."""
    instanceClass: Annotated[
        str, Check(is_db_instance_class, f"db.<family>.<size>, family one of {', '.join(DB_INSTANCE_FAMILIES)}")
    ] = "db.t4g.micro"
    """RDS instance class. Default: per environment (db.t4g.micro / db.t4g.small / db.m7g.large)."""
    allocatedStorageGb: Annotated[int, Check(lambda v: 20 <= v <= 65536, "20-65536")] = 20
    """Initial gp3 storage. Default: 20."""
    maxAllocatedStorageGb: Annotated[int, Check(lambda v: 20 <= v <= 65536, "20-65536")] = 100
    """Storage autoscaling ceiling. Default: 100."""
    multiAz: bool = False
    """Standby in a second AZ. Default: per environment (prod true)."""
    backupRetentionDays: Annotated[int, Check(lambda v: 1 <= v <= 35, "1-35")] = 7
    """Automated backup retention. Default: per environment (7 / 7 / 30)."""
    maxConnections: Annotated[int, Check(lambda v: 10 <= v <= 5000, "10-5000")] = 200
    """PostgreSQL max_connections (the seed's 200). Default: 200."""


class CacheConfig(ConfigModel):
    enabled: bool = True
    """Create the Redis-compatible replication group and attach it to the API and worker. Default: true."""
    nodeType: Annotated[
        str, Check(is_cache_node_type, f"cache.<family>.<size>, family one of {', '.join(CACHE_NODE_FAMILIES)}")
    ] = "cache.t4g.micro"
    """Node type. Default: per environment (cache.t4g.micro / cache.t4g.small / cache.r7g.large)."""
    numCacheClusters: Annotated[int, Check(lambda v: 1 <= v <= 6, "1-6")] = 1
    """Nodes (primary + replicas). Default: per environment (1 / 2 / 2)."""
    automaticFailover: bool = False
    """Automatic failover and multi-AZ; needs 2 or more nodes. Default: per environment (prod true)."""
    snapshotRetentionDays: Annotated[int, Check(lambda v: 1 <= v <= 35, "1-35")] = 1
    """Daily snapshot retention (seed: 7 prod / 1 dev). Default: per environment."""


class WorkerConfig(ConfigModel):
    cpu: Annotated[int, Check(lambda v: v in FARGATE_MEMORY_BY_CPU, f"one of {sorted(FARGATE_MEMORY_BY_CPU)}")] = 1024
    """Worker task CPU units. Default: 1024."""
    memory: Annotated[int, Check(_positive, "a positive number of MiB")] = 2048
    """Worker task memory MiB (valid Fargate size for cpu). Default: 2048."""
    minCount: Annotated[int, Check(_non_negative, "0 or more")] = 0
    """Fewest worker tasks (0: idle costs nothing). Default: per environment (0 / 0 / 1)."""
    maxCount: Annotated[int, Check(_positive, "1 or more")] = 3
    """Most worker tasks. Default: per environment (3 / 5 / 20)."""
    spotWeight: Annotated[int, Check(_non_negative, "0 or more")] = 3
    """FARGATE_SPOT weight next to FARGATE's 1 (jobs are retried, so Spot is safe). Default: 3."""
    onDemandBase: Annotated[int, Check(_non_negative, "0 or more")] = 0
    """Worker tasks always on on-demand FARGATE. Default: per environment (0 / 0 / 1)."""
    image: Annotated[str, Check(_is_pinned_image, PINNED_IMAGE)] | None = None
    """Image promoted into this stack's `<app>-<env>-worker` repository, run instead of building services/worker. Default: built by the program."""
    deployment: DeploymentOverride | None = None
    """The worker's own deployment settings (object; rolling or blueGreen: it has no load balancer to shift traffic on). Default: the stack's `deployment`, with canary or linear there taken as blueGreen."""


class JobPlatformConfig(ConfigModel):
    enabled: bool = True
    """Deploy the job platform: the API (services/api) as the web service plus queues and the worker. Default: true."""
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    """Worker sizing (object)."""
    acceptableLatencySeconds: Annotated[int, Check(_positive, "1 or more")] = 60
    """How long a job may wait; with averageProcessingSeconds it sets the backlog-per-task target. Default: 60."""
    averageProcessingSeconds: Annotated[float, Check(lambda v: v > 0, "more than 0")] = 2.0
    """Average seconds one worker task spends per job. Default: 2."""
    maxReceives: Annotated[int, Check(lambda v: 1 <= v <= 1000, "1-1000")] = 5
    """Receives before a job's message moves to the dead-letter queue. Default: 5."""
    visibilityTimeoutSeconds: Annotated[int, Check(lambda v: 30 <= v <= 43200, "30-43200")] = 120
    """Queue visibility timeout (extended while a job runs). Default: 120."""
    oldestMessageAlarmSeconds: Annotated[int, Check(_positive, "1 or more")] = 600
    """Alarm when a queue's oldest job waits longer. Default: 600."""


DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
DIGEST = "sha256:<64 lowercase hex>, the digest CI's build job pushed (promoted unchanged between environments)"
# What the offline plan deploys for a digest only CI knows; a real deployment refuses to run without the real one.
OFFLINE_DIGEST = "sha256:" + "0" * 64


class ImageDigests(ConfigModel):
    api: Annotated[str, Check.matching(DIGEST_PATTERN, DIGEST)] | None = None
    """Digest of the API image in this stack's `<app>-<env>-api` repository. Default: none."""
    worker: Annotated[str, Check.matching(DIGEST_PATTERN, DIGEST)] | None = None
    """Digest of the worker image in this stack's `<app>-<env>-worker` repository. Default: none."""

    def given(self) -> dict[str, str]:
        return {key: digest for key, digest in (("api", self.api), ("worker", self.worker)) if digest is not None}


class ImagesConfig(ConfigModel):
    platform: Literal["linux/amd64", "linux/arm64"] = "linux/amd64"
    """Image platform; must match service.cpuArchitecture. Default: linux/amd64."""
    build: bool = True
    """Build and push the service images with pulumi-docker on `pulumi up`. Staging and prod never build: they deploy the digests CI built, gated and ran in dev (`digests`). Default: per environment (dev true, staging and prod false)."""
    digests: ImageDigests = Field(default_factory=ImageDigests)
    """Images already in this stack's repositories, deployed as `<repository url>@<digest>` and not built (object: api, worker). Default: none."""
    keepTaggedImages: Annotated[int, Check(lambda v: 1 <= v <= 1000, "1-1000")] = 10
    """Tagged images kept per repository (the seed's 10). Default: 10."""
    manageRegistryScanning: bool = False
    """This stack owns the ECR registry's scanning configuration. That configuration is one per AWS account and region and covers every repository in it (other stacks' and teams' too), so set this in exactly one stack per account and region; the owner keeps every repository scanned on push. Default: false (the registry's configuration is left alone)."""
    continuousScanning: bool = False
    """Enhanced (Amazon Inspector) continuous scanning of this stack's repositories; needs manageRegistryScanning. Default: false."""
    managePullThroughCache: bool = False
    """This stack owns the ECR pull-through cache rule for public.ecr.aws (repository prefix `ecr-public`) that serves the tracing collector image. The rule is one per prefix, AWS account and region and every stack (and team) in it pulls through it, so set this in exactly one stack per account and region, and deploy that stack first. Default: false (the rule is left alone)."""
    severityThreshold: Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"] = "HIGH"
    """Lowest severity that fails the build's Trivy gate and raises scan alerts. Default: HIGH."""
    sourceRepositoryUrl: (
        Annotated[
            str,
            Check(
                lambda v: v.startswith("https://github.com/") and v.endswith(".git"),
                "https://github.com/<org>/<repo>.git",
            ),
        ]
        | None
    ) = None
    """GitHub repository the CodeBuild scan pipeline builds (webhook on main and pull requests). Default: none (S3 source)."""
    pullPrincipals: list[
        Annotated[
            str,
            Check.matching(
                ECR_PULL_PRINCIPAL,
                "a 12-digit account id or an IAM role ARN (arn:aws:iam::<account>:role/...)",
            ),
        ]
    ] = Field(default_factory=list)
    """Accounts or roles that may pull (only pull) from this stack's repositories: the next environment's account when environments live in separate accounts, so CI can promote a digest (docs/ci.md). Quote account ids in YAML. Default: none."""


def _images_problems(config: StackConfig) -> list[str]:
    images = config.images
    problems: list[str] = []
    if images.continuousScanning and not images.manageRegistryScanning:
        problems.append(
            "images.continuousScanning: true without images.manageRegistryScanning; allowed: true only in the one "
            "stack that owns the account and region's registry scanning configuration (set both there)"
        )
    overrides = {
        "api": ("service.image", config.service.image),
        "worker": ("jobPlatform.worker.image", config.jobPlatform.worker.image),
    }
    deployed = ("api", "worker") if config.jobPlatform.enabled else ("api",)
    for key in deployed:
        override_key, override = overrides[key]
        digest = getattr(images.digests, key)
        if digest is not None and override is not None:
            problems.append(
                f"images.digests.{key}: set together with {override_key}; allowed: one of them (a digest in this "
                "stack's repository, or a full pinned reference)"
            )
    if images.digests.worker is not None and not config.jobPlatform.enabled:
        problems.append(
            "images.digests.worker: set with jobPlatform.enabled false; allowed: only with the job platform"
        )
    return problems


class DeploymentConfig(ConfigModel):
    waitForSteadyState: bool = True
    """`pulumi up` waits until each service's new tasks run healthy, and fails if the circuit breaker rolled the deployment back. Default: per environment (dev false, staging and prod true)."""
    timeoutMinutes: Annotated[int, Check(lambda v: 5 <= v <= 180, "5-180")] = 30
    """How long `pulumi up` waits for one service's deployment before it fails. Default: per environment (20 / 20 / 30)."""
    strategy: Strategy = "rolling"
    """How ECS replaces a service's tasks (ECS native deployments, no CodeDeploy): `rolling`, `blueGreen` (the new revision at full size behind the test route, then all traffic at once), `canary` (canaryPercent, then the rest after stepMinutes) or `linear` (linearStepPercent every stepMinutes). The worker (no load balancer) allows rolling and blueGreen only. Default: per environment (dev rolling, staging and prod blueGreen)."""
    bakeTimeMinutes: Minutes = 0
    """Minutes the old revision stays up after all traffic moved, so a rollback is instant and rollback alarms still act. Default: per environment (0 / 5 / 15)."""
    canaryPercent: CanaryPercent = 10.0
    """With `canary`: share of production traffic the new revision gets first. Default: 10."""
    linearStepPercent: LinearStepPercent = 25.0
    """With `linear`: share of production traffic moved at each step. Default: 25."""
    stepMinutes: Minutes = 5
    """With `canary` or `linear`: minutes between traffic steps. Default: 5."""
    rollbackAlarms: bool = False
    """Roll back automatically when the service's rollback alarms fire during the deployment and bake time (5xx rate, p99 latency and unhealthy hosts behind the ALB, logged errors for the worker), in addition to the circuit breaker. Default: per environment (dev false, staging and prod true)."""
    smokeTests: list[SmokeTest] = Field(default_factory=list)
    """Requests (path, status) the hook Lambda sends to the new revision through the test route before traffic shifts, besides the health check path; a failed one rolls the deployment back. Only with blueGreen, canary or linear behind the ALB. Default: none."""


def service_deployment(config: StackConfig, override: DeploymentOverride | None) -> DeploymentConfig:
    """The stack's deployment settings with a service's own on top."""
    if override is None:
        return config.deployment
    return config.deployment.model_copy(update=override.model_dump(exclude_none=True))


# --- Microservices ----------------------------------------------------------------------------------------

# Short names: Service Connect's `http://<name>:<port>`, Cloud Map names, `<app>-<env>-<name>` resources.
SERVICE_NAME_PATTERN = re.compile(r"^(?!.*--)[a-z][a-z0-9-]{1,18}[a-z0-9]$")
SERVICE_NAME = (
    "3-20 chars: lowercase letters, digits, single hyphens; starts with a letter, ends with a letter or digit"
)
# Names the job platform's own resources (`/ecs/<app>-<env>/exec` is the ECS Exec audit log group) already take.
RESERVED_SERVICE_NAMES = ("api", "worker", "exec")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")
ROUTE = "`METHOD /path` with METHOD one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, ANY; path segments plain or {name}, the last may be {name+} (e.g. `GET /products/{id}`, `ANY /orders/{proxy+}`)"
PATH_SEGMENT = re.compile(r"^([A-Za-z0-9._~-]+|\{[A-Za-z_][A-Za-z0-9_]*\})$")
GREEDY_SEGMENT = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\+\}$")
BUILD_DIRECTORY = re.compile(r"^services(/[a-z0-9][a-z0-9_-]*)+$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# A plain variable with one of these in its name is a secret by its name: it belongs in `secrets`.
SECRET_LOOKING_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|ACCESS_?KEY")
SECRET_REFERENCE = re.compile(
    r"^arn:aws[a-z-]*:(secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+(:[^:]*:[^:]*:[^:]*)?"
    r"|ssm:[a-z0-9-]+:\d{12}:parameter/[A-Za-z0-9/_.-]+)$"
)
SECRET_ARN = "a Secrets Manager secret ARN (optionally with :json-key:version-stage:version-id) or an SSM parameter ARN"
Attachable = Literal["database", "cache", "storage", "queues"]
Entry = Literal["alb", "httpApi"]
DOMAIN_PATTERN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def is_route(value: str) -> bool:
    """`METHOD /path` as API Gateway HTTP API route keys write it (no `*`: HTTP APIs match `{proxy+}`)."""
    method, _, path = value.partition(" ")
    if method not in HTTP_METHODS or not path.startswith("/"):
        return False
    if path == "/":
        return True
    segments = path[1:].split("/")
    *leading, last = segments
    return all(PATH_SEGMENT.match(s) for s in leading) and bool(PATH_SEGMENT.match(last) or GREEDY_SEGMENT.match(last))


def _fargate_cpu() -> Check:
    return Check(lambda v: v in FARGATE_MEMORY_BY_CPU, f"one of {sorted(FARGATE_MEMORY_BY_CPU)}")


class ServiceDefaults(ConfigModel):
    cpu: Annotated[int, _fargate_cpu()] = 256
    """Task CPU units of a service that does not set its own. Default: per environment (256 / 512 / 1024)."""
    memory: Annotated[int, Check(_positive, "a positive number of MiB")] = 512
    """Task memory MiB of a service that does not set its own. Default: per environment (512 / 1024 / 2048)."""
    desiredCount: Annotated[int, Check(_non_negative, "0 or more")] = 1
    """Tasks a service starts with. Default: per environment (1 / 2 / 2)."""
    maxCount: Annotated[int, Check(_positive, "1 or more")] = 3
    """Autoscaling maximum. Default: per environment (3 / 5 / 10)."""
    spotWeight: Annotated[int, Check(_non_negative, "0 or more")] = 1
    """FARGATE_SPOT weight next to FARGATE's 1. Default: per environment (1 / 1 / 0)."""
    onDemandBase: Annotated[int, Check(_non_negative, "0 or more")] = 1
    """Tasks always on on-demand FARGATE. Default: per environment (0 / 1 / 1)."""


class ServiceQueue(ConfigModel):
    """A service's own queue (`services.<name>.queue`)."""

    maxReceives: Annotated[int, Check(lambda v: 1 <= v <= 1000, "1-1000")] = 5
    """Receives before a message moves to the dead-letter queue. Default: 5."""
    visibilityTimeoutSeconds: Annotated[int, Check(lambda v: 0 <= v <= 43200, "0-43200")] = 60
    """How long a received message stays hidden from other consumers before it is delivered again. Default: 60."""
    retentionDays: Annotated[int, Check(lambda v: 1 <= v <= 14, "1-14")] = 4
    """How long an unconsumed message is kept (the dead-letter queue keeps its messages 14 days). Default: 4."""
    acceptableLatencySeconds: Annotated[int, Check(_positive, "1 or more")] = 60
    """How long a message may wait; with averageProcessingSeconds it sets the backlog-per-task target. Default: 60."""
    averageProcessingSeconds: Annotated[float, Check(lambda v: v > 0, "more than 0")] = 1.0
    """Average seconds one task spends per message. Default: 1."""
    oldestMessageAlarmSeconds: Annotated[int, Check(_positive, "1 or more")] = 600
    """Alarm when the oldest message waits longer. Default: 600."""


class GeneratedSecret(ConfigModel):
    """A secret the platform generates (`services.<name>.generatedSecrets.<VARIABLE>`)."""

    bytes: Annotated[int, Check(lambda v: 16 <= v <= 1024, "16-1024 (at least 128 random bits)")]
    """Random bytes to generate, handed to the container base64-encoded (e.g. 32 for an Ed25519 seed). Required."""
    keepPrevious: bool = False
    """Also hand the container the value before the last rotation as `<VARIABLE>_PREVIOUS` (the secret's AWSPREVIOUS version; from the first deployment on, an initial never-signing version), and `<VARIABLE>_VERSIONS` (version ids, not secret) so a rotation restarts the service: for a signing key whose tokens must outlive a rotation (docs/microservices.md). Default: false."""


class EmailSending(ConfigModel):
    """Sending email through Amazon SES (`services.<name>.email`)."""

    fromAddress: Annotated[str, Check.matching(EMAIL_PATTERN, "an email address like orders@shop.example.org")]
    """The only From address the service may send as (`EMAIL_FROM`). Required."""
    identity: (
        Annotated[
            str,
            Check(
                lambda v: bool(EMAIL_PATTERN.match(v) or DOMAIN_PATTERN.match(v)),
                "a verified SES identity: an email address or a lowercase domain",
            ),
        ]
        | None
    ) = None
    """The SES identity (verified out of band) the sending is authorized on: fromAddress itself, its domain or a parent domain. Default: the domain of fromAddress."""

    @property
    def sending_identity(self) -> str:
        return self.identity or self.fromAddress.rpartition("@")[2].lower()


class ServiceSpec(ConfigModel):
    """One entry of `services`: a service built from the same secure task as the rest of the platform."""

    image: Annotated[str, Check(_is_pinned_image, PINNED_IMAGE)] | None = None
    """An ECR image pinned by digest to run. Exactly one of `image` and `build`. Default: none."""
    build: (
        Annotated[
            str,
            Check.matching(
                BUILD_DIRECTORY,
                "services/<dir> or services/<dir>/<dir> (a directory with a Dockerfile)",
            ),
        ]
        | None
    ) = None
    """Directory whose Dockerfile the program builds into this stack's `<app>-<env>-<name>` repository. Default: none."""
    digest: Annotated[str, Check.matching(DIGEST_PATTERN, DIGEST)] | None = None
    """With `build` and `images.build` false: the digest CI pushed to the service's repository. Default: none."""
    port: Annotated[int, Check(lambda v: 1024 <= v <= 65535, "1024-65535 (non-root)")] | None = None
    """Port the service listens on; it is then a Service Connect server at `http://<name>:<port>`. Default: none (a client only, e.g. a worker)."""
    cpu: Annotated[int, _fargate_cpu()] = 256
    """Task CPU units. Default: serviceDefaults.cpu."""
    memory: Annotated[int, Check(_positive, "a positive number of MiB")] = 512
    """Task memory MiB (a Fargate size for cpu). Default: serviceDefaults.memory."""
    desiredCount: Annotated[int, Check(_non_negative, "0 or more")] = 1
    """Tasks to start with (autoscaling owns the count afterwards). Default: serviceDefaults.desiredCount."""
    minCount: Annotated[int, Check(_non_negative, "0 or more")] | None = None
    """Autoscaling minimum. Default: max(1, desiredCount - 1)."""
    maxCount: Annotated[int, Check(_positive, "1 or more")] = 3
    """Autoscaling maximum. Default: serviceDefaults.maxCount."""
    spotWeight: Annotated[int, Check(_non_negative, "0 or more")] = 1
    """FARGATE_SPOT weight next to FARGATE's 1. Default: serviceDefaults.spotWeight."""
    onDemandBase: Annotated[int, Check(_non_negative, "0 or more")] = 1
    """Tasks always on on-demand FARGATE. Default: serviceDefaults.onDemandBase."""
    healthCheckPath: Annotated[str, Check(lambda v: v.startswith("/"), "a path starting with /")] = "/health"
    """Container (and ALB target group) health check path, with a port. Default: /health."""
    healthCheckCommand: list[Annotated[str, Check(lambda v: bool(v), "a non-empty string")]] | None = None
    """Container health check command in ECS's form (`["CMD", "/app/healthcheck"]` or `["CMD-SHELL", "..."]`). Default: with `build`, a Python probe of healthCheckPath (the platform's images have Python); with `image`, required when the service has a port, since the probe needs Python in the image."""
    routes: list[Annotated[str, Check(is_route, ROUTE)]] = Field(default_factory=list)
    """Public routes the entry (ALB or HTTP API) sends to this service; needs a port. Default: none (internal only)."""
    calls: list[str] = Field(default_factory=list)
    """Other services this one calls through Service Connect; only these get a security group path to them. Default: none."""
    attaches: list[Attachable] = Field(default_factory=list)
    """Shared resources the service uses: database, cache, storage, queues (the job platform's). Default: none."""
    environment: dict[str, str] = Field(default_factory=dict)
    """Plain environment variables; never secrets (secret-looking names are refused). Default: none."""
    secrets: dict[str, Annotated[str, Check.matching(SECRET_REFERENCE, SECRET_ARN)]] = Field(default_factory=dict)
    """Variables read from Secrets Manager or SSM at task start (name -> ARN); the execution role may read exactly these. Default: none."""
    requestTimeoutSeconds: Annotated[int, Check(lambda v: 1 <= v <= 3600, "1-3600")] = 15
    """Service Connect per-request timeout of calls to this service. Default: 15."""
    tracing: bool = True
    """Distributed tracing: an ADOT collector sidecar (from this account's ECR pull-through cache of public.ecr.aws) exports the service's OpenTelemetry spans to X-Ray; the task role may write traces. Default: true."""
    queue: ServiceQueue | None = None
    """A queue this service consumes and owns (object, `{}` for the defaults): an SQS queue and its dead-letter queue, encrypted with the service's own KMS key, alarms on the dead-letter queue and on the oldest message, `QUEUE_URL` and receive/delete/change-visibility for the service, scaling on backlog per task. Other services send to it with `sendsTo`. Default: none."""
    sendsTo: list[str] = Field(default_factory=list)
    """Services whose `queue` this one sends to: `<NAME>_QUEUE_URL` and `sqs:SendMessage` on that queue only (with its key's GenerateDataKey and Decrypt). Default: none."""
    generatedSecrets: dict[str, GeneratedSecret] = Field(default_factory=dict)
    """Secrets the platform generates once (random bytes, base64) into a Secrets Manager secret encrypted with the service's own KMS key, given to the container as `secrets` (name -> {bytes}); the execution role may read exactly these. Default: none."""
    email: EmailSending | None = None
    """Send email through Amazon SES from one address (object: fromAddress, identity): `EMAIL_FROM` and `ses:SendEmail`/`ses:SendRawEmail` on that identity only, for that From address only. The identity is verified in SES out of band. Default: none."""
    internalLoadBalancer: bool = False
    """Put the service behind the stack's one internal ALB (private subnets) instead of calling it through Service Connect: its own target group and listener on its port, callers in `calls` get `<NAME>_URL` of the ALB and may reach that listener only, the service accepts the ALB only, and it scales on requests per target too. Needs a port of its own among these services. Default: false."""
    deployment: DeploymentOverride | None = None
    """The service's own deployment settings (object; keys as in `deployment`). Services with ALB routes deploy rolling (ECS shifts one production listener rule, they have one per route); the others shift Service Connect traffic. Default: the stack's `deployment`, rolling for services with ALB routes."""


class RouteThrottle(ConfigModel):
    burst: Annotated[
        int,
        Check(lambda v: 1 <= v <= HTTP_API_BURST_QUOTA, f"1 to {HTTP_API_BURST_QUOTA} (the account's default quota)"),
    ]
    """Burst limit of the route. Required."""
    rate: Annotated[
        float,
        Check(
            lambda v: 0 < v <= HTTP_API_RATE_QUOTA,
            f"above 0 up to {HTTP_API_RATE_QUOTA} requests per second (the account's default quota)",
        ),
    ]
    """Steady requests per second of the route. Required."""


class CustomDomain(ConfigModel):
    domainName: Annotated[str, Check.matching(DOMAIN_PATTERN, "a lowercase DNS name like api.shop.com")]
    """Domain the HTTP API serves (TLS 1.2). Required."""
    certificateArn: AcmCertificateArn
    """ACM certificate for domainName, in the stack's region. Required."""


class JwtAuthorizer(ConfigModel):
    issuer: Annotated[str, Check(lambda v: v.startswith("https://"), "an https:// issuer URL")]
    """OIDC issuer URL. Required."""
    audiences: Annotated[list[str], Check(lambda v: len(v) >= 1, "one or more audiences")]
    """Accepted audiences (client ids). Required."""


class HttpApiConfig(ConfigModel):
    throttlingBurstLimit: Annotated[
        int,
        Check(lambda v: 1 <= v <= HTTP_API_BURST_QUOTA, f"1 to {HTTP_API_BURST_QUOTA} (the account's default quota)"),
    ] = 100
    """Stage default burst limit with `entry: httpApi`. Default: 100."""
    throttlingRateLimit: Annotated[
        float,
        Check(
            lambda v: 0 < v <= HTTP_API_RATE_QUOTA,
            f"above 0 up to {HTTP_API_RATE_QUOTA} requests per second (the account's default quota)",
        ),
    ] = 50
    """Stage default steady requests per second. Default: 50."""
    routeThrottling: dict[str, RouteThrottle] = Field(default_factory=dict)
    """Per-route limits, keyed by a route of some service (object of {burst, rate}). Default: none."""
    customDomain: CustomDomain | None = None
    """Custom domain with an ACM certificate (object: domainName, certificateArn). Default: none (the execute-api endpoint)."""
    jwtAuthorizer: JwtAuthorizer | None = None
    """JWT authorizer on every route except publicRoutes (object: issuer, audiences). Default: none (routes are public)."""
    publicRoutes: list[str] = Field(default_factory=list)
    """Routes that stay unauthenticated with a jwtAuthorizer, each a route of some service (e.g. "GET /products"). Default: none."""


class InternalLoadBalancerConfig(ConfigModel):
    certificateArn: AcmCertificateArn | None = None
    """ACM certificate covering domainName: the internal ALB's listeners serve HTTPS (TLS 1.2+). With domainName. Default: none (HTTP inside the VPC)."""
    domainName: Annotated[str, Check.matching(DOMAIN_PATTERN, "a lowercase DNS name like internal.shop.io")] | None = (
        None
    )
    """The name callers use with certificateArn (an ALB's own DNS name cannot be on a certificate); you point it at the ALB (output internalAlbDnsName), e.g. in a private hosted zone. Default: none."""


WAF_CLOUDFRONT_ACL_PATTERN = re.compile(r"^arn:aws:wafv2:us-east-1:\d{12}:global/webacl/[\w-]{1,128}/[0-9a-f-]{36}$")
CONSOLE_BUILD_DIRECTORY = re.compile(r"^web(/[A-Za-z0-9_.-]+)+$")


class ConsoleDomain(ConfigModel):
    domainName: Annotated[str, Check.matching(DOMAIN_PATTERN, "a lowercase DNS name like console.example.com")]
    """Domain the console is served on (TLSv1.2_2021 minimum). Required."""
    certificateArn: Annotated[
        str,
        Check(
            lambda v: bool(ACM_ARN_PATTERN.match(v)) and ":acm:us-east-1:" in v,
            "an ACM certificate ARN in us-east-1 (CloudFront reads certificates only there)",
        ),
    ]
    """ACM certificate for domainName, in us-east-1. Required."""


class ConsoleConfig(ConfigModel):
    enabled: bool | None = None
    """Serve the web console (web/) from S3 + CloudFront, with the API at /api/*. Default: on when jobPlatform.enabled, except with entry alb and certificateArn but no console.apiOriginDomain."""
    buildDirectory: Annotated[str, Check.matching(CONSOLE_BUILD_DIRECTORY, "a directory under web/, like web/dist")] = (
        "web/dist"
    )
    """The built app (`npm --prefix web run build`); a real deployment refuses to run without it. Default: web/dist."""
    customDomain: ConsoleDomain | None = None
    """Custom domain with a us-east-1 ACM certificate (object: domainName, certificateArn). Default: none (the *.cloudfront.net name)."""
    webAclArn: (
        Annotated[
            str,
            Check.matching(
                WAF_CLOUDFRONT_ACL_PATTERN,
                "a WAFv2 web ACL ARN with CLOUDFRONT scope, arn:aws:wafv2:us-east-1:<account>:global/webacl/<name>/<id>",
            ),
        ]
        | None
    ) = None
    """WAFv2 web ACL in front of the console and its API. Default: none."""
    apiOriginDomain: (
        Annotated[str, Check.matching(DOMAIN_PATTERN, "a lowercase DNS name like api.example.com")] | None
    ) = None
    """Name the ALB's certificate covers, which CloudFront calls the API by over TLS (required with entry alb and certificateArn). Default: none."""
    priceClass: Literal["PriceClass_100", "PriceClass_200", "PriceClass_All"] = "PriceClass_100"
    """CloudFront edge locations. Default: PriceClass_100."""


class IamConfig(ConfigModel):
    path: Annotated[
        str,
        Check.matching(IAM_PATH_PATTERN, "a path like /container-platform/ (starts and ends with /)"),
    ] = "/container-platform/"
    """IAM path of every role the platform creates (each environment's CI deploy role may only create roles under its own, `<bootstrap iamPath><env>/`). Default: /container-platform/<environment>/."""
    permissionsBoundaryArn: (
        Annotated[
            str,
            Check.matching(
                IAM_POLICY_ARN_PATTERN,
                "an IAM managed policy ARN, arn:aws:iam::<account>:policy/...",
            ),
        ]
        | None
    ) = None
    """Permissions boundary set on every role (the bootstrap program's `permissionsBoundaryArns.<environment>` output; required for a CI deployment). Default: none."""


class RuntimeSecurityConfig(ConfigModel):
    enabled: bool = True
    """Security metric filters and alarms on the services' logs, and the GuardDuty responder for this stack's cluster. Default: true."""
    manageDetector: bool = False
    """This stack owns the account and region's GuardDuty detector: on, with Runtime Monitoring and automated agent management for ECS Fargate (GuardDuty then monitors every Fargate task in the account and region, other stacks' too). One detector per account and region: set this in exactly one stack there, like images.manageRegistryScanning. Default: false (the detector is left alone)."""
    responseSeverity: Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"] = "HIGH"
    """Lowest GuardDuty finding severity at which the responder stops the task (lower ones only alert). Default: HIGH."""
    quarantine: bool = False
    """Before stopping a task, swap its network interface to a no-egress quarantine group (EC2 may refuse it for interfaces ECS manages; the task is stopped anyway). Default: false."""
    auditRetentionDays: Annotated[int, Check(lambda v: 1 <= v <= 3650, "1-3650")] = 365
    """Days the responder's audit records are kept. Default: 365."""
    auditObjectLockDays: Annotated[int, Check(lambda v: 1 <= v <= 3650, "1-3650")] | None = None
    """Object lock (COMPLIANCE mode) on audit records for this many days; at most auditRetentionDays. Default: none."""


def _runtime_security_problems(config: StackConfig) -> list[str]:
    security = config.runtimeSecurity
    problems: list[str] = []
    lock = security.auditObjectLockDays
    if lock is not None and lock > security.auditRetentionDays:
        problems.append(
            f"runtimeSecurity.auditObjectLockDays: {lock} is more than runtimeSecurity.auditRetentionDays "
            f"{security.auditRetentionDays}; allowed: at most the retention (a locked record cannot expire)"
        )
    if security.manageDetector and not security.enabled:
        problems.append(
            "runtimeSecurity.manageDetector: true with runtimeSecurity.enabled false; allowed: manageDetector only "
            "with enabled true"
        )
    return problems


class KmsConfig(ConfigModel):
    sharedKey: bool = False
    """One customer-managed KMS key for the whole stack (the platform key: logs, alerts, database, cache, EFS, ECR, scan reports, audit records) instead of one per component; $1/month per key saved, at a wider blast radius (one key policy, every grant on one key). Job platform only: `services` keep their own keys. Not allowed in prod. Default: false (a key per component)."""


WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
CLOCK_PATTERN = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
DAYS_ALLOWED = "days as MON..SUN, ranges from an earlier to a later day and commas, e.g. MON-FRI or MON-THU,SAT"


def weekdays(days: str) -> tuple[int, ...]:
    """The days of `days` ("MON-FRI", "MON,WED-FRI"), Monday 0 to Sunday 6; ValueError if malformed."""
    found: set[int] = set()
    for part in days.upper().split(","):
        first, _, last = part.strip().partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(part)
        start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        if end < start:
            raise ValueError(part)
        found.update(range(start, end + 1))
    return tuple(sorted(found))


def _is_days(value: str) -> bool:
    try:
        return bool(weekdays(value))
    except ValueError:
        return False


def _is_timezone(value: str) -> bool:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _clock() -> Check:
    return Check.matching(CLOCK_PATTERN, "a 24-hour time HH:MM, 00:00-23:59")


class OfficeHours(ConfigModel):
    """When the stack runs: outside these hours the database is stopped, the API and worker scaled to 0 and the NAT
    instance terminated (docs/cost.md)."""

    timezone: Annotated[str, Check(_is_timezone, "an IANA time zone such as Europe/Berlin or America/New_York")]
    """Time zone of start and stop (daylight saving time followed). Required."""
    start: Annotated[str, _clock()] = "08:00"
    """Time the stack starts on each of `days`. Default: 08:00."""
    stop: Annotated[str, _clock()] = "20:00"
    """Time the stack stops on each of `days` (later than start, the same day). Default: 20:00."""
    days: Annotated[str, Check(_is_days, DAYS_ALLOWED)] = "MON-FRI"
    """Days it runs. Default: MON-FRI."""

    @property
    def weekdays(self) -> tuple[int, ...]:
        return weekdays(self.days)


class ScheduleConfig(ConfigModel):
    officeHours: OfficeHours | None = None
    """Run the stack only in office hours (object: timezone, start, stop, days): the database, the API, the worker and a NAT instance stop outside them; ElastiCache, the ALB or HTTP API, storage and logs stay (they cannot stop). Not allowed in prod. Default: none (always on)."""


def _schedule_problems(config: StackConfig) -> list[str]:
    hours = config.schedule.officeHours
    if hours is None:
        return []
    if config.is_prod:
        return [
            "schedule.officeHours: set in prod; allowed in prod: none (prod serves around the clock; office hours "
            "are for dev and staging)"
        ]
    if hours.stop <= hours.start:
        return [
            f"schedule.officeHours.stop: {hours.stop!r} is not later than start {hours.start!r}; allowed: a stop "
            "later the same day (overnight hours are not supported)"
        ]
    return []


class StackConfig(ConfigModel):
    environment: Environment
    """Which profile from the sizing table applies: dev, staging or prod. Required."""
    applicationName: Annotated[
        str,
        Check.matching(
            NAME_PATTERN,
            "3-15 chars: lowercase letters, digits, single hyphens; starts with a letter",
        ),
    ] = "jobs"
    """Prefix of every resource name. Default: jobs."""
    region: str = "us-east-1"
    """AWS region: set it as `aws:region`, not in this namespace. Default: us-east-1."""
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    """VPC settings (object)."""
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    """Web service sizing and scaling (object)."""
    storage: StorageConfig = Field(default_factory=StorageConfig)
    """Shared EFS storage (object)."""
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    """RDS PostgreSQL (object)."""
    cache: CacheConfig = Field(default_factory=CacheConfig)
    """Redis-compatible cache (object)."""
    jobPlatform: JobPlatformConfig = Field(default_factory=JobPlatformConfig)
    """Job queues and worker (object)."""
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    """Image repositories, builds and the scan pipeline (object)."""
    iam: IamConfig = Field(default_factory=IamConfig)
    """IAM path and permissions boundary for the platform's roles (object)."""
    deployment: DeploymentConfig = Field(default_factory=DeploymentConfig)
    """How `pulumi up` follows service deployments (object)."""
    alertEmail: Annotated[str, Check.matching(EMAIL_PATTERN, "an email address like ops@example.com")] | None = None
    """Email subscribed to the alert topic. Default: none."""
    certificateArn: AcmCertificateArn | None = None
    """ACM certificate for the HTTPS listener; HTTP then redirects to HTTPS. Default: none (HTTP only)."""
    logRetentionDays: Annotated[
        int, Check(lambda v: v in LOG_RETENTION_DAYS, "a CloudWatch retention value (1, 3, 5, 7, 14, 30, 60, 90, ...)")
    ] = 30
    """Retention of service and platform log groups. Default: per environment."""
    containerInsights: ContainerInsights = "enabled"
    """ECS Container Insights mode. Default: per environment."""
    dashboards: Literal["perComponent", "single"] = "perComponent"
    """CloudWatch dashboards: `perComponent` (services, database, cache, storage each their own) or `single` (one platform dashboard with every widget; each dashboard beyond an account's first 3 costs $3/month). Default: perComponent."""
    deletionProtection: bool = False
    """Deletion protection on the ALB (and data stores). Default: true in prod only."""
    entry: Entry = "alb"
    """How requests reach the services: `alb` (the internet-facing ALB, as before) or `httpApi` (an API Gateway HTTP API with a VPC link; no ALB: the job platform's API, when on, gets `ANY /` and `ANY /{proxy+}` through Cloud Map). Default: alb."""
    services: dict[str, ServiceSpec] = Field(default_factory=dict)
    """Services to deploy, by name (object of name -> service: image or build, port, cpu, memory, minCount, maxCount, desiredCount, healthCheckPath, routes, calls, attaches, environment, secrets, spotWeight, onDemandBase, requestTimeoutSeconds, tracing, queue, sendsTo, generatedSecrets, email, internalLoadBalancer, deployment). Default: none."""
    internalLoadBalancer: InternalLoadBalancerConfig = Field(default_factory=InternalLoadBalancerConfig)
    """The internal ALB of services with `internalLoadBalancer: true` (object: certificateArn, domainName). Default: HTTP under the ALB's DNS name."""
    serviceDefaults: ServiceDefaults = Field(default_factory=ServiceDefaults)
    """Sizing every entry of `services` gets unless it sets its own (object). Default: per environment."""
    httpApi: HttpApiConfig = Field(default_factory=HttpApiConfig)
    """The HTTP API entry with `entry: httpApi` (object). Default: see its keys."""
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    """The web console on S3 + CloudFront (object). Default: see its keys."""
    runtimeSecurity: RuntimeSecurityConfig = Field(default_factory=RuntimeSecurityConfig)
    """GuardDuty Runtime Monitoring, security alarms on the services' logs and the finding responder (object). Default: see its keys."""
    kms: KmsConfig = Field(default_factory=KmsConfig)
    """Customer-managed KMS keys (object). Default: see its keys."""
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    """When the stack runs (object). Default: always."""

    @property
    def name_prefix(self) -> str:
        return f"{self.applicationName}-{self.environment}"

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    @property
    def console_enabled(self) -> bool:
        if self.console.enabled is not None:
            return self.console.enabled
        # By default only where CloudFront can reach the API as configured: an ALB with a certificate needs the name
        # that certificate covers.
        named = self.entry != "alb" or self.certificateArn is None or self.console.apiOriginDomain is not None
        return self.jobPlatform.enabled and named


# --- The sizing table -------------------------------------------------------------------------------------

# Per-environment defaults, in the stack file's own shape: the seed's maps in one place. A stack file overrides
# any of them; the merged result is validated like everything else.
# EFS: the seed's bursting (dev) and maxIO + provisioned (prod) cannot use its own archive tier; elastic can.
PROFILES: dict[str, dict[str, Any]] = {
    "dev": {
        "iam": {"path": "/container-platform/dev/"},
        "serviceDefaults": {"cpu": 256, "memory": 512, "desiredCount": 1, "maxCount": 3, "spotWeight": 1, "onDemandBase": 0},
        "network": {"natGateways": "single", "flowLogRetentionDays": 30},
        "service": {"cpu": 512, "memory": 1024, "desiredCount": 1, "maxCount": 3, "spotWeight": 1},
        "storage": {"performanceMode": "generalPurpose", "throughputMode": "elastic"},
        "database": {"instanceClass": "db.t4g.micro", "multiAz": False, "backupRetentionDays": 7},
        "cache": {"nodeType": "cache.t4g.micro", "numCacheClusters": 1, "automaticFailover": False, "snapshotRetentionDays": 1},
        "jobPlatform": {"worker": {"minCount": 0, "maxCount": 3, "onDemandBase": 0}},
        "images": {"build": True, "manageRegistryScanning": False, "continuousScanning": False},
        "deployment": {"waitForSteadyState": False, "timeoutMinutes": 20, "strategy": "rolling", "bakeTimeMinutes": 0, "rollbackAlarms": False},
        "logRetentionDays": 30,
        "containerInsights": "enabled",
        "deletionProtection": False,
    },
    "staging": {
        "iam": {"path": "/container-platform/staging/"},
        "serviceDefaults": {"cpu": 512, "memory": 1024, "desiredCount": 2, "maxCount": 5, "spotWeight": 1, "onDemandBase": 1},
        "network": {"natGateways": "single", "flowLogRetentionDays": 30},
        "service": {"cpu": 1024, "memory": 2048, "desiredCount": 2, "maxCount": 5, "spotWeight": 1},
        "storage": {"performanceMode": "generalPurpose", "throughputMode": "elastic"},
        "database": {"instanceClass": "db.t4g.small", "multiAz": False, "backupRetentionDays": 7},
        "cache": {"nodeType": "cache.t4g.small", "numCacheClusters": 2, "automaticFailover": True, "snapshotRetentionDays": 1},
        "jobPlatform": {"worker": {"minCount": 0, "maxCount": 5, "onDemandBase": 0}},
        "images": {"build": False, "manageRegistryScanning": False, "continuousScanning": False},
        "deployment": {"waitForSteadyState": True, "timeoutMinutes": 20, "strategy": "blueGreen", "bakeTimeMinutes": 5, "rollbackAlarms": True},
        "logRetentionDays": 30,
        "containerInsights": "enabled",
        "deletionProtection": False,
    },
    "prod": {
        "iam": {"path": "/container-platform/prod/"},
        "serviceDefaults": {"cpu": 1024, "memory": 2048, "desiredCount": 2, "maxCount": 10, "spotWeight": 0, "onDemandBase": 1},
        "network": {"natGateways": "onePerAz", "flowLogRetentionDays": 90},
        "service": {"cpu": 2048, "memory": 4096, "desiredCount": 3, "maxCount": 10, "spotWeight": 0},
        "storage": {"performanceMode": "generalPurpose", "throughputMode": "elastic"},
        "database": {"instanceClass": "db.m7g.large", "multiAz": True, "backupRetentionDays": 30},
        "cache": {"nodeType": "cache.r7g.large", "numCacheClusters": 2, "automaticFailover": True, "snapshotRetentionDays": 7},
        "jobPlatform": {"worker": {"minCount": 1, "maxCount": 20, "onDemandBase": 1}},
        "images": {"build": False, "manageRegistryScanning": False, "continuousScanning": False},
        "deployment": {"waitForSteadyState": True, "timeoutMinutes": 30, "strategy": "blueGreen", "bakeTimeMinutes": 15, "rollbackAlarms": True},
        "logRetentionDays": 90,
        "containerInsights": "enhanced",
        "deletionProtection": True,
    },
}  # fmt: skip


# --- Loading ----------------------------------------------------------------------------------------------


def parse_stack_config(raw: Mapping[str, Any], region: str | None = None) -> StackConfig:
    """Validate raw project config (values already JSON-decoded) into a StackConfig."""
    problems: list[str] = []
    environment = raw.get("environment")
    if environment not in ENVIRONMENTS:
        shown = "missing" if environment is None else repr(environment)
        raise ConfigError([f"environment: {shown}; allowed: {', '.join(ENVIRONMENTS)}"])
    if "region" in raw:
        problems.append(f"region: {raw['region']!r} in the project namespace; allowed: set `aws:region` instead")
    merged = _with_service_defaults(_deep_merge(PROFILES[environment], dict(raw)))
    if region is not None:
        merged["region"] = region
    config = _validate(merged, problems)
    if config is not None:
        problems.extend(_cross_field_problems(config))
    if problems or config is None:
        raise ConfigError(problems)
    return config


def load_stack_config() -> StackConfig:
    """Read the project's Pulumi config (and `aws:region`) and validate it."""
    import pulumi

    project = pulumi.get_project()
    raw: dict[str, Any] = {}
    problems: list[str] = []
    for key in _config_keys(project):
        text = pulumi.Config(project).get(key)
        if text is None:
            continue
        raw[key] = _decode(key, text, problems)
    if problems:
        raise ConfigError(problems)
    return parse_stack_config(raw, region=pulumi.Config("aws").get("region"))


def _config_keys(project: str) -> list[str]:
    from pulumi.runtime.config import CONFIG, get_config_env

    prefix = f"{project}:"
    keys = set(CONFIG.get()) | set(get_config_env() or {})
    return sorted(key[len(prefix) :] for key in keys if key.startswith(prefix))


def _decode(key: str, text: str, problems: list[str]) -> Any:
    if text[:1] in "{[":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            problems.append(f"{key}: not valid JSON ({error.msg})")
            return None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), dict(value))
        else:
            merged[key] = value
    return merged


def _with_service_defaults(merged: dict[str, Any]) -> dict[str, Any]:
    """Each entry of `services` on top of `serviceDefaults`, so a service's own values win and its problems name it.

    Defaults that are themselves invalid are not copied: their one message is at `serviceDefaults.<key>`.
    """
    services = merged.get("services")
    if not isinstance(services, Mapping):
        return merged
    try:
        defaults = ServiceDefaults.model_validate(merged.get("serviceDefaults", {})).model_dump()
    except ValidationError:
        defaults = {}
    merged["services"] = {
        name: {**defaults, **entry} if isinstance(entry, Mapping) else entry for name, entry in services.items()
    }
    return merged


def _validate(raw: dict[str, Any], problems: list[str]) -> StackConfig | None:
    """The StackConfig of `raw`, or None with one line per problem in `problems`.

    Unknown keys are reported but do not stop the rest from being checked, cross-field rules included.
    """
    unknown = _unknown_keys(StackConfig, raw, "")
    config: StackConfig | None = None
    try:
        config = StackConfig.model_validate(_without(raw, [path for _, path in unknown]))
    except ValidationError as error:
        problems.extend(_describe(StackConfig, e) for e in error.errors(include_url=False))
    problems.extend(message for message, _ in unknown)
    return config


def _unknown_keys(model: type[BaseModel], raw: Any, path: str) -> list[tuple[str, tuple[str, ...]]]:
    """(message, key path) for every key no section defines, however deep."""
    if not isinstance(raw, Mapping):
        return []
    fields = model.model_fields
    found: list[tuple[str, tuple[str, ...]]] = []
    for key in raw:
        if key not in fields:
            found.append((f"{path}{key}: unknown key; allowed keys here: {_field_names(model)}", (key,)))
            continue
        annotation = fields[key].annotation
        nested = _section(annotation)
        if nested is not None:
            found += [(message, (key, *rest)) for message, rest in _unknown_keys(nested, raw[key], f"{path}{key}.")]
        entries = _map_of_sections(annotation)
        if entries is not None and isinstance(raw[key], Mapping):
            for name, entry in raw[key].items():
                found += [
                    (message, (key, name, *rest))
                    for message, rest in _unknown_keys(entries, entry, f"{path}{key}.{name}.")
                ]
    return found


def _without(raw: Mapping[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    pruned = dict(raw)
    for path in paths:
        node: Any = pruned
        for key in path[:-1]:
            node[key] = dict(node[key])
            node = node[key]
        node.pop(path[-1], None)
    return pruned


def _section(annotation: Any) -> type[BaseModel] | None:
    """The section model an annotation holds (`X` or `X | None`), if any; never a map's or list's entries."""
    if get_origin(annotation) in (dict, list):
        return None
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _map_of_sections(annotation: Any) -> type[BaseModel] | None:
    """The entry model of a `dict[str, Section]` field (`services`), if it is one."""
    if get_origin(annotation) is dict:
        return _section(get_args(annotation)[1])
    return None


def _step(annotation: Any, part: str) -> Any:
    """The annotation one error location step below a map entry or a list item (`services.<name>`, `routes.0`)."""
    origin, arguments = get_origin(annotation), get_args(annotation)
    if origin is dict:
        return arguments[1]
    if origin is list:
        return arguments[0]
    return None


def _field_names(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def _describe(model: type[BaseModel], error: Any) -> str:
    """One problem line, as before pydantic: the key, the value, and what is allowed."""
    location = [str(part) for part in error["loc"]]
    key, value, kind = ".".join(location), error["input"], error["type"]
    owner, annotation = _field_at(model, location)
    if kind == "missing":
        return f"{key}: missing; it is required"
    if kind == "check":
        return f"{key}: {value!r}; allowed: {error['ctx']['allowed']}"
    if kind == "literal_error":
        return f"{key}: {value!r}; allowed: {', '.join(map(str, _literal_values(annotation)))}"
    nested = _section(annotation)
    if nested is not None:
        return f"{key}: {value!r} is not an object; allowed: an object with keys {_field_names(nested)}"
    type_name = _type_name(annotation)
    if owner is not None and location[-1] in owner.model_fields:
        check = _check_of(owner, location[-1])
    else:  # a map value or list item: its Check sits on the stepped annotation
        check = next((m for m in get_args(annotation)[1:] if isinstance(m, Check)), None)
    return f"{key}: {value!r} is not {type_name}; allowed: {check.allowed if check else type_name}"


def _field_at(model: type[BaseModel], location: list[str]) -> tuple[type[BaseModel] | None, Any]:
    """(model owning the field, the field's annotation) at an error location; map keys and list indexes are
    stepped through (`services.orders.cpu` is ServiceSpec's `cpu`)."""
    owner: type[BaseModel] | None = model
    annotation: Any = model
    parent: type[BaseModel] | None = None
    for part in location:
        if owner is None:
            stepped = _step(annotation, part)
            if stepped is None:
                return None, None
            annotation, owner = stepped, _section(stepped)
            continue
        if part not in owner.model_fields:
            return None, None
        annotation = owner.model_fields[part].annotation
        parent, owner = owner, _section(annotation)
    return (owner, annotation) if owner is not None and owner is annotation else (parent, annotation)


def _check_of(model: type[BaseModel], name: str) -> Check | None:
    """The field's Check: in its metadata, or inside `Annotated[..., Check] | None`."""
    info = model.model_fields[name]
    found = [m for m in info.metadata if isinstance(m, Check)]
    for argument in get_args(info.annotation):
        if get_origin(argument) is Annotated:
            found += [m for m in get_args(argument)[1:] if isinstance(m, Check)]
    return found[0] if found else None


def _literal_values(annotation: Any) -> tuple[Any, ...]:
    for candidate in (annotation, *get_args(annotation)):
        if get_origin(candidate) is Literal:
            return get_args(candidate)
    return ()


def _type_name(annotation: Any) -> str:
    names = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}
    candidates = [annotation, *get_args(annotation)]
    plain = [get_args(c)[0] if get_origin(c) is Annotated else c for c in candidates]
    for candidate in plain:
        if candidate in names:
            return names[candidate]
        if get_origin(candidate) is list:
            return "a list"
        if get_origin(candidate) is dict:
            return "an object"
    return str(annotation)


def _cross_field_problems(config: StackConfig) -> list[str]:
    problems: list[str] = []
    service = config.service
    problems.extend(_fargate_size_problem("service", service.cpu, service.memory))
    minimum = min_count(service)
    if minimum > service.maxCount:
        problems.append(
            f"service.minCount: {minimum} is greater than service.maxCount {service.maxCount}; allowed: min <= max"
        )
    if not minimum <= service.desiredCount <= service.maxCount:
        problems.append(
            f"service.desiredCount: {service.desiredCount} is outside service.minCount..maxCount "
            f"({minimum}..{service.maxCount}); allowed: min <= desired <= max"
        )
    cidr = ipaddress.IPv4Network(config.network.cidrBlock)
    if config.network.maxAzs == 3 and cidr.prefixlen > 21:
        problems.append(
            f"network.cidrBlock: {config.network.cidrBlock!r} with network.maxAzs 3; allowed: /21 or larger "
            "(a public and a private /24 per AZ)"
        )
    problems.extend(_data_problems(config))
    problems.extend(_job_platform_problems(config))
    problems.extend(_images_problems(config))
    problems.extend(_entry_problems(config))
    problems.extend(_console_problems(config))
    problems.extend(_services_problems(config))
    problems.extend(_deployment_problems(config))
    problems.extend(_runtime_security_problems(config))
    problems.extend(_schedule_problems(config))
    if config.is_prod and config.entry == "alb" and config.certificateArn is None:
        problems.append(
            "certificateArn: missing in prod; allowed in prod: an ACM certificate ARN (prod serves HTTPS only)"
        )
    if config.is_prod and config.network.egress != "natGateway":
        problems.append(
            f"network.egress: {config.network.egress!r} in prod; allowed in prod: natGateway "
            "(prod needs onePerAz NAT gateways; a NAT instance is one instance in one AZ)"
        )
    api_strategy = service_deployment(config, config.service.deployment).strategy
    # Prod refuses a NAT instance outright (above).
    nat_instance = config.network.egress == "natInstance" and not config.is_prod
    if nat_instance and api_shifts_traffic_on_alb(config):
        problems.append(
            f"network.egress: 'natInstance' with entry alb and the API's deployment strategy {api_strategy!r}; allowed: "
            "natGateway, or strategy rolling, or entry httpApi (the blue/green test listener admits only the NAT "
            "gateways' Elastic IPs; a NAT instance's public address changes when the instance is replaced)"
        )
    if config.is_prod and config.kms.sharedKey:
        problems.append(
            "kms.sharedKey: true in prod; allowed in prod: false (a key per component limits what one key policy "
            "or grant exposes)"
        )
    if config.is_prod and config.network.natGateways != "onePerAz":
        problems.append(
            f"network.natGateways: {config.network.natGateways!r} in prod; allowed in prod: onePerAz "
            "(a single NAT gateway is a single point of failure for every private subnet)"
        )
    return problems


def _fargate_size_problem(key: str, cpu: int, memory: int) -> list[str]:
    allowed = FARGATE_MEMORY_BY_CPU.get(cpu, ())
    if memory in allowed:
        return []
    return [
        f"{key}.memory: {memory} is not a Fargate size for {key}.cpu {cpu}; "
        f"allowed: {allowed[0]}-{allowed[-1]} in steps of {allowed[1] - allowed[0]}"
    ]


def _data_problems(config: StackConfig) -> list[str]:
    problems: list[str] = []
    storage, database, cache = config.storage, config.database, config.cache
    if storage.throughputMode == "provisioned" and storage.provisionedThroughputMibps is None:
        problems.append(
            "storage.provisionedThroughputMibps: missing; allowed: 1-3414 MiB/s, required when throughputMode is provisioned"
        )
    if storage.throughputMode != "provisioned" and storage.provisionedThroughputMibps is not None:
        problems.append(
            f"storage.provisionedThroughputMibps: {storage.provisionedThroughputMibps:g} with throughputMode "
            f"{storage.throughputMode!r}; allowed: only with throughputMode provisioned"
        )
    if storage.performanceMode == "maxIO" and storage.throughputMode == "elastic":
        problems.append(
            "storage.performanceMode: 'maxIO' with throughputMode 'elastic'; allowed: generalPurpose with elastic"
        )
    if database.maxAllocatedStorageGb < database.allocatedStorageGb:
        problems.append(
            f"database.maxAllocatedStorageGb: {database.maxAllocatedStorageGb} is below allocatedStorageGb "
            f"{database.allocatedStorageGb}; allowed: at least allocatedStorageGb"
        )
    if cache.automaticFailover and cache.numCacheClusters < 2:
        problems.append(
            f"cache.automaticFailover: true with cache.numCacheClusters {cache.numCacheClusters}; "
            "allowed: failover needs 2 or more nodes (a primary and a replica)"
        )
    return problems


def _job_platform_problems(config: StackConfig) -> list[str]:
    jobs = config.jobPlatform
    if not jobs.enabled:
        if config.entry == "alb" and config.service.image is None:
            return [
                "service.image: missing with jobPlatform.enabled false; allowed: your own pinned image (the built API image needs the job platform)"
            ]
        return []
    problems = _fargate_size_problem("jobPlatform.worker", jobs.worker.cpu, jobs.worker.memory)
    if config.containerInsights == "disabled":
        problems.append(
            "containerInsights: 'disabled' with jobPlatform.enabled true; allowed: enabled or enhanced "
            "(worker scaling divides the backlog by Container Insights' RunningTaskCount)"
        )
    for section in ("storage", "database", "cache"):
        if not getattr(config, section).enabled:
            problems.append(
                f"{section}.enabled: false with jobPlatform.enabled true; allowed: true (the job platform uses it)"
            )
    if jobs.worker.minCount > jobs.worker.maxCount:
        problems.append(
            f"jobPlatform.worker.minCount: {jobs.worker.minCount} is greater than jobPlatform.worker.maxCount "
            f"{jobs.worker.maxCount}; allowed: min <= max"
        )
    arm = config.service.cpuArchitecture == "ARM64"
    if arm != (config.images.platform == "linux/arm64"):
        problems.append(
            f"images.platform: {config.images.platform!r} with service.cpuArchitecture {config.service.cpuArchitecture!r}; "
            "allowed: linux/arm64 with ARM64, linux/amd64 with X86_64"
        )
    return problems


def _entry_problems(config: StackConfig) -> list[str]:
    if config.entry != "httpApi":
        return []
    problems: list[str] = []
    if config.jobPlatform.enabled:
        problems.extend(
            f"services.{name}.routes: {route!r} with entry 'httpApi' and jobPlatform.enabled true; allowed: any "
            "other route (the job platform's API takes it)"
            for name, spec in sorted(config.services.items())
            for route in spec.routes
            if route in JOB_PLATFORM_API_ROUTES
        )
    if config.certificateArn is not None:
        problems.append(
            "certificateArn: set with entry 'httpApi'; allowed: only with entry alb (the HTTP API takes "
            "httpApi.customDomain.certificateArn)"
        )
    if not config.jobPlatform.enabled and not any(spec.routes for spec in config.services.values()):
        problems.append(
            "entry: 'httpApi' without any services.<name>.routes; allowed: alb, give a service routes, or enable "
            "the job platform (its API is then the HTTP API's catch-all)"
        )
    return problems


def _console_problems(config: StackConfig) -> list[str]:
    if not config.console_enabled:
        return []
    problems: list[str] = []
    if not config.jobPlatform.enabled:
        problems.append(
            "console.enabled: true with jobPlatform.enabled false; allowed: the console needs the job platform's API"
        )
    needs_origin_name = config.entry == "alb" and config.certificateArn is not None
    if needs_origin_name and config.console.apiOriginDomain is None:
        problems.append(
            "console.apiOriginDomain: missing with entry alb and certificateArn; allowed: the DNS name the ALB's "
            "certificate covers (CloudFront checks the origin's certificate against it)"
        )
    if not needs_origin_name and config.console.apiOriginDomain is not None:
        problems.append(
            "console.apiOriginDomain: set without an ALB certificate; allowed: only with entry alb and certificateArn"
        )
    return problems


# The job platform API's routes on the HTTP API: everything no service claims (a greedy `{proxy+}` needs a segment).
JOB_PLATFORM_API_ROUTES = ("ANY /", "ANY /{proxy+}")

# ALB listener rules take priorities below the job platform API's catch-all rule (100).
MAX_ALB_ROUTES = 99


def _services_problems(config: StackConfig) -> list[str]:
    problems: list[str] = []
    for name, spec in config.services.items():
        problems.extend(_service_name_problems(config, name))
        problems.extend(_service_problems(config, f"services.{name}", name, spec))
    problems.extend(_route_problems(config))
    problems.extend(_send_cycle_problems(config))
    problems.extend(_internal_load_balancer_problems(config))
    return problems


def _internal_load_balancer_problems(config: StackConfig) -> list[str]:
    """One listener per port on the one internal ALB; HTTPS needs the name its certificate covers."""
    problems: list[str] = []
    behind = sorted(name for name, spec in config.services.items() if spec.internalLoadBalancer)
    owners: dict[int, str] = {}
    for name in behind:
        port = config.services[name].port
        if port is None:
            problems.append(
                f"services.{name}.internalLoadBalancer: true without services.{name}.port; allowed: only on a "
                "service with a port"
            )
        elif port in owners:
            problems.append(
                f"services.{name}.port: {port} is also services.{owners[port]}.port, both behind the internal ALB; "
                "allowed: a port of its own (the ALB has one listener per service port)"
            )
        else:
            owners[port] = name
    settings = config.internalLoadBalancer
    if (settings.certificateArn is None) != (settings.domainName is None):
        problems.append(
            "internalLoadBalancer: certificateArn and domainName: both (HTTPS under that name) or neither (HTTP); "
            "an ALB's own DNS name cannot be on a certificate"
        )
    if settings.certificateArn is not None and not behind:
        problems.append(
            "internalLoadBalancer.certificateArn: set, but no service has internalLoadBalancer: true; allowed: only "
            "with a service behind the internal ALB"
        )
    return problems


def _service_name_problems(config: StackConfig, name: str) -> list[str]:
    if not SERVICE_NAME_PATTERN.match(name):
        return [f"services.{name}: {name!r} is not a service name; allowed: {SERVICE_NAME}"]
    if name in RESERVED_SERVICE_NAMES:
        return [
            f"services.{name}: {name!r} is reserved; allowed: any other name (the platform's "
            f"{', '.join(RESERVED_SERVICE_NAMES)} resources use these)"
        ]
    if len(config.name_prefix) + 1 + len(name) > 32:
        return [
            f"services.{name}: {config.name_prefix}-{name} is longer than 32 characters; allowed: a shorter name "
            "(service names must fit AWS name limits)"
        ]
    return []


# The tracing collector's loopback listeners (components/tracing.py: OTLP over HTTP, health check extension).
TRACING_COLLECTOR_PORTS = (4318, 13133)
PLATFORM_SET_VARIABLES = ("PORT", "SERVICE_NAME")


def _service_problems(config: StackConfig, key: str, name: str, spec: ServiceSpec) -> list[str]:
    problems = _fargate_size_problem(key, spec.cpu, spec.memory)
    if (spec.image is None) == (spec.build is None):
        problems.append(
            f"{key}: needs exactly one of image and build; allowed: image ({PINNED_IMAGE}) or build (services/<dir>)"
        )
    if spec.healthCheckCommand is not None and spec.healthCheckCommand[0] not in ("CMD", "CMD-SHELL"):
        problems.append(
            f"{key}.healthCheckCommand: {spec.healthCheckCommand!r}; allowed: a list starting with CMD or CMD-SHELL"
        )
    if spec.image is not None and spec.port is not None and spec.healthCheckCommand is None:
        problems.append(
            f"{key}.healthCheckCommand: missing with image and port; allowed: a command the image can run, e.g. "
            '["CMD", "/app/healthcheck"] (the default probe runs python, which only images built from services/ '
            "are known to have)"
        )
    if spec.tracing and spec.port in TRACING_COLLECTOR_PORTS:
        problems.append(
            f"{key}.port: {spec.port} with tracing; allowed: any port but {', '.join(map(str, TRACING_COLLECTOR_PORTS))} "
            "(the collector sidecar listens there in the task's shared network namespace)"
        )
    for reserved in sorted(k for k in spec.environment if k in PLATFORM_SET_VARIABLES or k.startswith("OTEL_")):
        problems.append(
            f"{key}.environment.{reserved}: set by the platform; allowed: other names (PORT, SERVICE_NAME and OTEL_* "
            "come from port, the service's name and tracing)"
        )
    if spec.digest is not None and spec.build is None:
        problems.append(f"{key}.digest: set without build; allowed: only with build (an image is already pinned)")
    minimum = min_count(spec)
    if minimum > spec.maxCount:
        problems.append(
            f"{key}.minCount: {minimum} is greater than {key}.maxCount {spec.maxCount}; allowed: min <= max"
        )
    elif not minimum <= spec.desiredCount <= spec.maxCount:
        problems.append(
            f"{key}.desiredCount: {spec.desiredCount} is outside {key}.minCount..maxCount ({minimum}..{spec.maxCount}); "
            "allowed: min <= desired <= max"
        )
    if spec.routes and spec.port is None:
        problems.append(f"{key}.routes: set without {key}.port; allowed: routes only on a service with a port")
    for callee in spec.calls:
        problems.extend(_call_problems(config, key, name, callee))
    for duplicate in sorted({c for c in spec.calls if spec.calls.count(c) > 1}):
        problems.append(f"{key}.calls: {duplicate!r} is listed twice; allowed: each service once")
    for resource in spec.attaches:
        problems.extend(_attach_problems(config, key, resource))
    for variable in spec.environment:
        problems.extend(_environment_name_problems(key, variable))
    for variable in spec.secrets:
        if not ENV_NAME.match(variable):
            problems.append(
                f"{key}.secrets.{variable}: not a variable name; allowed: A-Z, 0-9 and _, not starting with a digit"
            )
    for variable in sorted(set(spec.environment) & set(spec.secrets)):
        problems.append(f"{key}.environment.{variable}: also in {key}.secrets; allowed: one of them")
    return problems + _owned_resource_problems(config, key, name, spec)


def _owned_resource_problems(config: StackConfig, key: str, name: str, spec: ServiceSpec) -> list[str]:
    """What a service owns or is given as its own: generated secrets, its database role, queues, email."""
    problems = _generated_secret_problems(key, spec) + _platform_variable_problems(key, spec)
    if "database" in spec.attaches:
        problems.extend(_database_role_problems(key, name))
    for target in spec.sendsTo:
        problems.extend(_send_problems(config, key, name, target))
    for duplicate in sorted({t for t in spec.sendsTo if spec.sendsTo.count(t) > 1}):
        problems.append(f"{key}.sendsTo: {duplicate!r} is listed twice; allowed: each service once")
    if spec.email is not None:
        problems.extend(_email_problems(key, spec.email))
    if spec.queue is not None and config.containerInsights == "disabled":
        problems.append(
            f"{key}.queue: set with containerInsights 'disabled'; allowed: containerInsights enabled or enhanced "
            "(scaling on the queue divides its backlog by Container Insights' RunningTaskCount)"
        )
    if service_deployment(config, spec.deployment).rollbackAlarms and config.containerInsights == "disabled":
        problems.append(
            f"{key}.deployment.rollbackAlarms: true with containerInsights 'disabled'; allowed: containerInsights "
            "enabled or enhanced, or rollbackAlarms false (the tasks-missing rollback alarm reads Container Insights' "
            "task counts, and without them it could never fire)"
        )
    return problems


def _generated_secret_problems(key: str, spec: ServiceSpec) -> list[str]:
    problems: list[str] = []
    for variable in spec.generatedSecrets:
        if not ENV_NAME.match(variable):
            problems.append(
                f"{key}.generatedSecrets.{variable}: not a variable name; allowed: A-Z, 0-9 and _, not starting with "
                "a digit"
            )
        for other in ("environment", "secrets"):
            if variable in getattr(spec, other):
                problems.append(
                    f"{key}.generatedSecrets.{variable}: also in {key}.{other}; allowed: a name given only once"
                )
    return problems


def platform_variables(spec: ServiceSpec) -> dict[str, str]:
    """Variables the platform sets from a service's own settings (name -> the key that sets it)."""
    variables = {"PORT": "port", "SERVICE_NAME": "the service's name"}
    if spec.queue is not None:
        variables["QUEUE_URL"] = "queue"
    variables |= {queue_url_variable(target): f"sendsTo {target}" for target in spec.sendsTo}
    if spec.email is not None:
        variables["EMAIL_FROM"] = "email.fromAddress"
    for variable, secret in spec.generatedSecrets.items():
        if secret.keepPrevious:
            key = f"generatedSecrets.{variable}.keepPrevious"
            variables |= {f"{variable}_PREVIOUS": key, f"{variable}_VERSIONS": key}
    return variables


def queue_url_variable(service: str) -> str:
    """`orders` -> `ORDERS_QUEUE_URL`: where a sender finds the queue of the service it sends to."""
    return f"{service.upper().replace('-', '_')}_QUEUE_URL"


def _platform_variable_problems(key: str, spec: ServiceSpec) -> list[str]:
    reserved = platform_variables(spec)
    problems: list[str] = []
    for section in ("environment", "secrets", "generatedSecrets"):
        for variable in sorted(getattr(spec, section)):
            if variable in reserved and not (section == "environment" and variable in PLATFORM_SET_VARIABLES):
                problems.append(
                    f"{key}.{section}.{variable}: set by the platform (from {reserved[variable]}); allowed: "
                    "another name"
                )
            elif section != "environment" and variable.startswith("OTEL_"):
                problems.append(
                    f"{key}.{section}.{variable}: set by the platform (tracing); allowed: a name not starting OTEL_"
                )
    return problems


# The job platform's role and the RDS master user (components/database.py's defaults); PostgreSQL reserves `pg_`
# and RDS its own `rds*` roles.
TAKEN_DATABASE_ROLES = ("app", "dbadmin")
RESERVED_DATABASE_ROLE_PREFIXES = ("pg_", "rds")


def database_role(service: str) -> str:
    """The PostgreSQL role (and schema) a service that attaches the database connects as: its name, `-` as `_`."""
    return service.replace("-", "_")


def _database_role_problems(key: str, name: str) -> list[str]:
    role = database_role(name)
    if role in TAKEN_DATABASE_ROLES or role.startswith(RESERVED_DATABASE_ROLE_PREFIXES):
        return [
            f"{key}.attaches: 'database' makes {name!r} connect as role {role!r}, which is taken or reserved; "
            f"allowed: a service name whose role is not {', '.join(TAKEN_DATABASE_ROLES)} and does not start with "
            f"{' or '.join(RESERVED_DATABASE_ROLE_PREFIXES)}"
        ]
    return []


def _send_problems(config: StackConfig, key: str, name: str, target: str) -> list[str]:
    owners = [n for n, s in config.services.items() if s.queue is not None and n != name]
    allowed = ", ".join(owners) or "none (no other service has a queue)"
    if target == name:
        return [f"{key}.sendsTo: {target!r} is the service itself; allowed: other services with a queue: {allowed}"]
    spec = config.services.get(target)
    if spec is None:
        return [f"{key}.sendsTo: {target!r} is not a service here; allowed: services with a queue: {allowed}"]
    if spec.queue is None:
        return [
            f"{key}.sendsTo: {target!r} has no queue; allowed: services with a queue: {allowed} (or give "
            f"services.{target} a queue)"
        ]
    return []


def _email_problems(key: str, email: EmailSending) -> list[str]:
    identity = email.sending_identity
    domain = email.fromAddress.rpartition("@")[2].lower()
    if identity in (email.fromAddress, domain) or domain.endswith(f".{identity}"):
        return []
    return [
        f"{key}.email.identity: {identity!r} does not cover fromAddress {email.fromAddress!r}; allowed: the address "
        f"itself, {domain} or a parent domain of it"
    ]


def service_build_order(config: StackConfig) -> list[str]:
    """Service names with every queue owner before the services that send to it (a sender's grants need the
    queue); the order changes no resource name. Raises graphlib.CycleError for senders that form a cycle."""
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for name, spec in config.services.items():
        sorter.add(name, *(t for t in spec.sendsTo if t in config.services and t != name))
    return list(sorter.static_order())


def _send_cycle_problems(config: StackConfig) -> list[str]:
    try:
        service_build_order(config)
    except CycleError as error:
        cycle = error.args[1]
        return [
            f"services.{cycle[0]}.sendsTo: {' -> '.join(reversed(cycle))} is a cycle; allowed: senders without a "
            "cycle (each queue is built before the services that send to it)"
        ]
    return []


def _call_problems(config: StackConfig, key: str, name: str, callee: str) -> list[str]:
    if callee == name:
        return [f"{key}.calls: {callee!r} is the service itself; allowed: other services"]
    target = config.services.get(callee)
    if target is None:
        known = ", ".join(n for n in config.services if n != name) or "none"
        return [f"{key}.calls: {callee!r} is not a service here; allowed: {known}"]
    if target.port is None:
        return [f"{key}.calls: {callee!r} has no port, so nothing can call it; allowed: services with a port"]
    return []


def _attach_problems(config: StackConfig, key: str, resource: str) -> list[str]:
    if resource == "queues":
        if config.jobPlatform.enabled:
            return []
        return [f"{key}.attaches: 'queues' with jobPlatform.enabled false; allowed: queues only with the job platform"]
    if getattr(config, resource).enabled:
        return []
    return [f"{key}.attaches: {resource!r} with {resource}.enabled false; allowed: enabled resources"]


def _environment_name_problems(key: str, variable: str) -> list[str]:
    if not ENV_NAME.match(variable):
        return [
            f"{key}.environment.{variable}: not a variable name; allowed: A-Z, 0-9 and _, not starting with a digit"
        ]
    if SECRET_LOOKING_NAME.search(variable):
        return [
            f"{key}.environment.{variable}: looks like a secret; allowed: non-secret names "
            f"(give secrets as {key}.secrets.{variable}: <Secrets Manager or SSM ARN>)"
        ]
    return []


def _route_problems(config: StackConfig) -> list[str]:
    problems: list[str] = []
    owners: dict[str, str] = {}
    for name, spec in config.services.items():
        for route in spec.routes:
            if route in owners:
                problems.append(
                    f"services.{name}.routes: {route!r} is already a route of services.{owners[route]}; "
                    "allowed: each route on one service"
                )
            owners.setdefault(route, name)
    if config.entry == "alb" and len(owners) > MAX_ALB_ROUTES:
        problems.append(
            f"services: {len(owners)} routes with entry 'alb'; allowed: at most {MAX_ALB_ROUTES} (ALB listener "
            "rules below the API's), or entry httpApi"
        )
    for route in config.httpApi.routeThrottling:
        if route not in owners:
            problems.append(
                f"httpApi.routeThrottling.{route}: not a route of any service; allowed: one of "
                f"{', '.join(sorted(owners)) or 'none (no service has routes)'}"
            )
    return problems + _public_route_problems(config, owners)


def _public_route_problems(config: StackConfig, owners: Mapping[str, str]) -> list[str]:
    public = config.httpApi.publicRoutes
    problems = [
        f"httpApi.publicRoutes: {route!r} is not a route of any service; allowed: one of "
        f"{', '.join(sorted(owners)) or 'none (no service has routes)'}"
        for route in public
        if route not in owners
    ]
    problems += [
        f"httpApi.publicRoutes: {route!r} is listed twice; allowed: each route once"
        for route in sorted({r for r in public if public.count(r) > 1})
    ]
    if public and config.httpApi.jwtAuthorizer is None:
        problems.append(
            "httpApi.publicRoutes: set without httpApi.jwtAuthorizer; allowed: only with a JWT authorizer (without "
            "one every route is already public)"
        )
    return problems


# --- Placeholders ---------------------------------------------------------------------------------------

# Account IDs that AWS's documentation uses in examples; no real account has them.
DOCUMENTATION_ACCOUNT_IDS = frozenset({"123456789012", "111122223333", "444455556666", "777788889999", "210987654321"})
ACCOUNT_IN_VALUE = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):|^(\d{12})\.dkr\.ecr\.")
# RFC 2606 / RFC 6761 names reserved for documentation and tests: mail to them reaches nobody.
# Config keys that hold a DNS name the deployment serves or calls (custom domains, the console's API origin).
DOMAIN_NAME_KEYS = ("domainName", "apiOriginDomain")
RESERVED_DOMAIN = re.compile(r"(^|\.)(example\.(com|net|org)|[a-z0-9-]+\.(example|test|invalid|localhost))$")


def placeholder_problems(config: StackConfig) -> list[str]:
    """One line per value that only looks real: a documentation account ID or a reserved example domain.

    Such values pass validation and the offline plan, but a real `pulumi up` would fail half-way (an ACM
    certificate in someone else's account) or deploy alarms that reach nobody.
    """
    problems = [problem for key, value in _string_values(config, "") if (problem := _placeholder(key, value))]
    return problems + [
        f"{_digest_key(config, key)}: missing with images.build false (the offline plan deploys {OFFLINE_DIGEST}); "
        f"allowed: {DIGEST} (or {override_key})"
        for key, override_key in missing_digests(config).items()
    ]


def _digest_key(config: StackConfig, image_key: str) -> str:
    return f"services.{image_key}.digest" if image_key in config.services else f"images.digests.{image_key}"


def missing_digests(config: StackConfig) -> dict[str, str]:
    """Deployed images that are neither built nor given (image key -> the full-reference key that could give it)."""
    if config.images.build:
        return {}
    overrides = {
        "api": ("service.image", config.service.image),
        "worker": ("jobPlatform.worker.image", config.jobPlatform.worker.image),
    }
    deployed = platform_images(config)
    missing = {
        key: overrides[key][0]
        for key in deployed
        if getattr(config.images.digests, key) is None and overrides[key][1] is None
    }
    for name, spec in config.services.items():
        if spec.build is not None and spec.digest is None:
            missing[name] = f"services.{name}.image"
    return missing


def platform_images(config: StackConfig) -> tuple[str, ...]:
    """The job platform's images this stack deploys: the API and worker with the platform (behind either entry);
    without it, the API image only behind the ALB (the HTTP API entry then serves `services` alone)."""
    if config.jobPlatform.enabled:
        return ("api", "worker")
    return ("api",) if config.entry == "alb" else ()


def _placeholder(key: str, value: str) -> str | None:
    account = ACCOUNT_IN_VALUE.match(value)
    account_id = account and (account.group(1) or account.group(2))
    if account_id and (account_id in DOCUMENTATION_ACCOUNT_IDS or len(set(account_id)) == 1):
        return f"{key}: {value!r} names account {account_id}, an example account ID; allowed: a value from your own account"
    domain = value.rpartition("@")[2].lower() if "@" in value else ""
    if domain and RESERVED_DOMAIN.search(domain):
        return f"{key}: {value!r} is at {domain}, a domain reserved for examples; allowed: an address that reaches your team"
    if key.endswith(DOMAIN_NAME_KEYS) and RESERVED_DOMAIN.search(value.lower()):
        return f"{key}: {value!r} is a domain reserved for examples; allowed: a domain of yours"
    return None


def _string_values(node: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(node, str):
        return [(path.rstrip("."), node)]
    if isinstance(node, BaseModel):
        return [
            pair for name in type(node).model_fields for pair in _string_values(getattr(node, name), f"{path}{name}.")
        ]
    if isinstance(node, Mapping):
        return [pair for key, value in node.items() for pair in _string_values(value, f"{path}{key}.")]
    return []


def running_offline() -> bool:
    """True under Pulumi's mocks (the offline plan and the tests), never under the real engine."""
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.settings import get_monitor

    return isinstance(get_monitor(), MockMonitor)


def refuse_placeholders(config: StackConfig) -> list[str]:
    """Stop a real deployment before anything is registered when config still holds placeholders.

    Offline they are allowed and returned, so the plan can show them as offline-only values.
    """
    problems = placeholder_problems(config)
    if problems and not running_offline():
        raise ConfigError(
            [
                *problems,
                "placeholders are for the offline plan only: set real values with `pulumi config set <key> <value>`",
            ]
        )
    return problems


def running_in_ci(environ: Mapping[str, str]) -> bool:
    """GitHub Actions, CodeBuild and most CI systems set CI=true; GitHub also GITHUB_ACTIONS=true."""
    return environ.get("CI", "").lower() in ("true", "1") or environ.get("GITHUB_ACTIONS") == "true"


def refuse_ci_without_boundary(config: StackConfig, environ: Mapping[str, str]) -> None:
    """Stop a real CI deployment before anything is registered when roles would be created without the boundary.

    The bootstrap's deploy role may create roles only with its permissions boundary attached, so without
    `iam.permissionsBoundaryArn` the first `iam:CreateRole` of a CI `pulumi up` fails half-way with AccessDenied.
    """
    if config.iam.permissionsBoundaryArn is None and running_in_ci(environ) and not running_offline():
        raise ConfigError(
            [
                "iam.permissionsBoundaryArn: missing in a CI deployment; allowed: the bootstrap program's "
                "permissionsBoundaryArn output, set in the stack file with `pulumi config set --path "
                "iam.permissionsBoundaryArn <arn>` (the CI deploy role may create roles only with that boundary; "
                "see docs/bootstrap.md)"
            ]
        )


ENVIRONMENT_TAG = "environment"


def environment_tag_problems(config: StackConfig, default_tags: Mapping[str, Any] | None) -> list[str]:
    """The provider's default tags must name the environment: the bootstrap's deploy roles manage only resources
    tagged with their own environment (VPC, security groups, KMS keys, file systems, target groups, ...)."""
    tags = (default_tags or {}).get("tags") or {}
    value = tags.get(ENVIRONMENT_TAG) if isinstance(tags, Mapping) else None
    if value == config.environment:
        return []
    found = "missing" if value is None else f"{value!r}"
    return [
        f"aws:defaultTags.tags.{ENVIRONMENT_TAG}: {found}; allowed: {config.environment!r}, this stack's environment "
        f"(set it in the stack file: `pulumi config set --path 'aws:defaultTags.tags.{ENVIRONMENT_TAG}' "
        f"{config.environment}`)"
    ]


def refuse_untagged_deployment(config: StackConfig, default_tags: Mapping[str, Any] | None) -> None:
    """Stop a real deployment before anything is registered when resources would not carry the environment tag."""
    problems = environment_tag_problems(config, default_tags)
    if problems and not running_offline():
        raise ConfigError(problems)


def min_count(service: ServiceConfig | ServiceSpec) -> int:
    """The seed's rule: min = max(1, desired - 1), unless set."""
    return service.minCount if service.minCount is not None else max(1, service.desiredCount - 1)


def _is_vpc_cidr(value: str) -> bool:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        return False
    return 16 <= network.prefixlen <= 22


def worker_deployment(config: StackConfig) -> DeploymentConfig:
    """The worker's settings: with no load balancer or Service Connect, ECS cannot shift traffic by steps, so a
    stack-wide canary or linear becomes blueGreen for it (the new revision at full size, the old one kept for the
    bake time); its own `canary` or `linear` is refused by validation."""
    settings = service_deployment(config, config.jobPlatform.worker.deployment)
    if settings.strategy in ("canary", "linear"):
        return settings.model_copy(update={"strategy": "blueGreen"})
    return settings


def rolling_only_reason(config: StackConfig, spec: ServiceSpec) -> tuple[str, str] | None:
    """(where the service is, why ECS cannot shift traffic to it there) for a configured service that deploys
    rolling whatever the stack-wide strategy, or None where it can (Service Connect)."""
    if spec.routes and config.entry == "alb":
        return (
            "with ALB routes",
            "ECS shifts traffic on one production listener rule, and a service gets one rule per route",
        )
    if spec.internalLoadBalancer:
        return (
            "behind the internal ALB",
            "blue/green there is not built: one listener per service port, no test listener",
        )
    if spec.routes and config.entry == "httpApi":
        return "with HTTP API routes", "the HTTP API reaches tasks through Cloud Map SRV records: no traffic to shift"
    return None


def api_shifts_traffic_on_alb(config: StackConfig) -> bool:
    """Whether the job platform's API deploys blue/green, canary or linear behind the ALB: it then needs the ALB's
    test listener."""
    return config.entry == "alb" and service_deployment(config, config.service.deployment).strategy != "rolling"


def _deployment_problems(config: StackConfig) -> list[str]:
    problems: list[str] = []
    worker = config.jobPlatform.worker.deployment
    if worker is not None and worker.strategy in ("canary", "linear"):
        problems.append(
            f"jobPlatform.worker.deployment.strategy: {worker.strategy!r}; allowed: rolling or blueGreen (the worker "
            "has no load balancer or Service Connect, so ECS cannot shift traffic to it in steps)"
        )
    for name, spec in config.services.items():
        override = spec.deployment
        reason = rolling_only_reason(config, spec)
        if override is not None and reason is not None and override.strategy not in (None, "rolling"):
            where, why = reason
            problems.append(
                f"services.{name}.deployment.strategy: {override.strategy!r} {where}; allowed: rolling ({why})"
            )
        if override is not None and spec.port is None and override.strategy in ("canary", "linear"):
            problems.append(
                f"services.{name}.deployment.strategy: {override.strategy!r} without a port; allowed: rolling or "
                "blueGreen (a service without a port receives no traffic to shift)"
            )
    return problems
