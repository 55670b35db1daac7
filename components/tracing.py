"""Distributed tracing: an AWS Distro for OpenTelemetry (ADOT) collector sidecar that sends the services' spans to
AWS X-Ray.

Why the ADOT collector sidecar (and not the CloudWatch agent or CloudWatch Application Signals):
- Cost: X-Ray bills recorded traces only ($5 per million, 100,000 a month free), and the services sample at the
  head (`sample_ratio`); Application Signals bills every request as signals on top of X-Ray, and the CloudWatch
  agent sidecar that it needs is larger (~128 MiB reservation, versus 64 MiB here).
- Least privilege: the task role gets two write-only X-Ray actions. Application Signals also needs CloudWatch
  Logs and metrics writes plus an init container that copies its instrumentation into a shared writable volume.
- Fargate hardening: the collector is one static binary in a `scratch` image that runs as its own non-root user
  (`aoc`, uid 4317), writes nothing to disk (so a read-only root filesystem with no writable volume), takes its
  whole configuration from one environment variable (`AOT_CONFIG_CONTENT`) and has its own `/healthcheck` binary.
- The services keep plain OpenTelemetry (W3C `traceparent` between services, OTLP to localhost): changing the
  backend later changes this sidecar's exporter, not the services.

The image is pinned by digest. Source of the digest (no registry is reachable from the build machine):
public.ecr.aws/aws-observability/aws-otel-collector v0.49.0 (released 2026-07-10, aws-observability/aws-otel-collector
docs/releases/v0.49.0.md), index digest as pinned by three independent public repositories that agree on it
(alphagov/pay-adot's Dependabot-managed Dockerfile, through Docker Hub's amazon/aws-otel-collector, and two
Terraform modules that pin public.ecr.aws). Bump version and digest together.

The container image registry policy of the pack allows only private ECR: services pull the image through the
account's ECR pull-through cache rule for public.ecr.aws (components/registry_cache.py, owned by one stack per
account and region; `collector_image_through_cache` names the same image and digest there). The first pull creates the
cached repository with the execution role's permissions (`cache_pull_statements`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml

from components.iam import allow

ADOT_COLLECTOR_VERSION = "v0.49.0"
ADOT_COLLECTOR_DIGEST = "sha256:d2bdfff2c377c3d71d78bd5d9ce9862fd535b12134a5739d87a07801297cf9fd"
ADOT_COLLECTOR_REPOSITORY = "aws-observability/aws-otel-collector"
ADOT_COLLECTOR_IMAGE = f"public.ecr.aws/{ADOT_COLLECTOR_REPOSITORY}:{ADOT_COLLECTOR_VERSION}@{ADOT_COLLECTOR_DIGEST}"

COLLECTOR_CONTAINER_NAME = "otel-collector"
# The image's own user (`aoc`, created with uid and gid 4317 in cmd/awscollector/Dockerfile).
COLLECTOR_USER = "4317:4317"
# Containers of an awsvpc task share one network namespace: the app reaches the collector on localhost, and
# binding only the loopback address keeps every other host in the VPC from sending spans to it.
OTLP_HTTP_ENDPOINT = "127.0.0.1:4318"
HEALTH_CHECK_ENDPOINT = "127.0.0.1:13133"
# X-Ray accepts W3C trace ids; without this gate the exporter drops spans whose id does not start with a recent
# epoch second (the X-Ray id format), which OpenTelemetry's random ids never do.
W3C_TRACE_IDS_GATE = "exporter.awsxray.skiptimestampvalidation"
# The pull-through cache rule: one per prefix, account and region, shared by every stack there.
PULL_THROUGH_CACHE_PREFIX = "ecr-public"
PULL_THROUGH_CACHE_UPSTREAM = "public.ecr.aws"


@dataclass(frozen=True)
class TracingArgs:
    name_prefix: str
    """`<app>-<env>`; the sidecar logs into the service's log group `/ecs/<name_prefix>/<service_name>`."""
    service_name: str
    """Short service name, e.g. `orders`; the traces' service name."""
    region: str
    """Region of X-Ray and of the log group."""
    sample_ratio: float = 0.05
    """Share of new traces the service records (a call that arrives with a sampled `traceparent` is always
    recorded, so a trace is whole across services). Default: 0.05."""
    image: str = ADOT_COLLECTOR_IMAGE
    """Collector image, pinned by digest. Default: the public ECR image (see `collector_image_through_cache`)."""
    memory_reservation_mib: int = 64
    """Soft memory reservation of the sidecar; the collector's memory limiter refuses spans above 80 % of it plus
    the spike allowance. Default: 64."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """Extra resource attributes for every span, e.g. {"deployment.environment": "dev"}. Default: none."""

    def __post_init__(self) -> None:
        if not 0 <= self.sample_ratio <= 1:
            raise ValueError(f"TracingArgs.sample_ratio: a ratio from 0 to 1, got {self.sample_ratio}")
        if "@sha256:" not in self.image:
            raise ValueError(f"TracingArgs.image: pin the collector image by digest (@sha256:...), got {self.image}")
        if self.memory_reservation_mib < 32:
            raise ValueError(f"TracingArgs.memory_reservation_mib: at least 32, got {self.memory_reservation_mib}")


@dataclass(frozen=True)
class TracingSidecar:
    """What a service's task needs for tracing: the sidecar, the app's environment, and the task role grant."""

    container: dict[str, Any]
    """The collector's container definition (add it beside the app container)."""
    app_environment: dict[str, str]
    """Environment variables of the app container: turns OpenTelemetry on in services/common/tracing.py."""
    app_depends_on: list[dict[str, str]]
    """`dependsOn` of the app container: ECS starts the collector first and stops it last, so the app's final
    spans are exported on shutdown."""
    task_role_statements: list[dict[str, Any]]
    """IAM statements for the task role (the collector runs with the task's credentials)."""


def tracing_sidecar(args: TracingArgs) -> TracingSidecar:
    return TracingSidecar(
        container=collector_container(args),
        app_environment=app_environment(args),
        app_depends_on=[{"containerName": COLLECTOR_CONTAINER_NAME, "condition": "START"}],
        task_role_statements=task_role_statements(),
    )


def collector_container(args: TracingArgs) -> dict[str, Any]:
    """Non-essential (the app keeps serving if the collector fails; ECS restarts it), non-root, read-only root with
    no writable path (the collector writes nothing to disk), no capabilities, configuration from the environment."""
    return {
        "name": COLLECTOR_CONTAINER_NAME,
        "image": args.image,
        "essential": False,
        "restartPolicy": {"enabled": True, "restartAttemptPeriod": 60},
        "user": COLLECTOR_USER,
        "readonlyRootFilesystem": True,
        "privileged": False,
        "memoryReservation": args.memory_reservation_mib,
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
        "command": [f"--feature-gates={W3C_TRACE_IDS_GATE}"],
        "environment": [
            {"name": "AOT_CONFIG_CONTENT", "value": collector_config(args)},
            {"name": "AWS_REGION", "value": args.region},
        ],
        "mountPoints": [],
        "healthCheck": {
            # The image has no shell: its `/healthcheck` binary asks the health_check extension on 13133.
            "command": ["CMD", "/healthcheck"],
            "interval": 15,
            "timeout": 5,
            "retries": 3,
            "startPeriod": 10,
        },
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": f"/ecs/{args.name_prefix}/{args.service_name}",
                "awslogs-region": args.region,
                "awslogs-stream-prefix": "otel",
                "mode": "non-blocking",
                "max-buffer-size": "4m",
            },
        },
        "stopTimeout": 10,
    }


def collector_config(args: TracingArgs) -> str:
    """OTLP/HTTP on loopback -> memory limiter -> ECS resource attributes -> batches -> X-Ray. Only traces."""
    limit = max(16, args.memory_reservation_mib * 4 // 5)
    config = {
        "extensions": {"health_check": {"endpoint": HEALTH_CHECK_ENDPOINT}},
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": OTLP_HTTP_ENDPOINT}}}},
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_mib": limit, "spike_limit_mib": limit // 4},
            # `env` reads OTEL_RESOURCE_ATTRIBUTES; `ecs` the task metadata endpoint (no IAM, no IMDS).
            "resourcedetection": {"detectors": ["env", "ecs"], "timeout": "2s", "override": False},
            "batch/traces": {"timeout": "1s", "send_batch_size": 50},
        },
        "exporters": {"awsxray": {"region": args.region}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "resourcedetection", "batch/traces"],
                    "exporters": ["awsxray"],
                }
            },
            "telemetry": {"logs": {"level": "warn"}},
        },
    }
    return yaml.safe_dump(config, sort_keys=False)


def app_environment(args: TracingArgs) -> dict[str, str]:
    """OpenTelemetry's standard variables, read by the SDK in services/common/tracing.py."""
    attributes = {"service.namespace": args.name_prefix, **args.environment}
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{OTLP_HTTP_ENDPOINT}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": args.service_name,
        "OTEL_RESOURCE_ATTRIBUTES": ",".join(f"{k}={v}" for k, v in sorted(attributes.items())),
        "OTEL_PROPAGATORS": "tracecontext,baggage",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": f"{args.sample_ratio:g}",
    }


def task_role_statements() -> list[dict[str, Any]]:
    """The awsxray exporter's two write calls. X-Ray has no resource-level permissions for them, so `*`
    (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsx-ray.html); sampling rules are
    not read because the services sample at the head."""
    return [allow(["xray:PutTraceSegments", "xray:PutTelemetryRecords"], ["*"], sid="TracesToXRay")]


@dataclass(frozen=True)
class CollectorImage:
    """Where a service's collector image comes from."""

    reference: str
    """Image reference pinned by digest."""
    cache_prefix: str | None = None
    """ECR pull-through cache prefix `reference` is pulled through: the execution role may import into it.
    Default: none (a repository the role can already pull from)."""


def collector_image_through_cache(
    account_id: str, region: str, prefix: str = PULL_THROUGH_CACHE_PREFIX
) -> CollectorImage:
    """The collector image, digest and all, through the ECR pull-through cache rule for public.ecr.aws with
    repository prefix `prefix` in the account's registry in `region`."""
    registry = f"{account_id}.dkr.ecr.{region}.amazonaws.com"
    reference = f"{registry}/{prefix}/{ADOT_COLLECTOR_REPOSITORY}:{ADOT_COLLECTOR_VERSION}@{ADOT_COLLECTOR_DIGEST}"
    return CollectorImage(reference=reference, cache_prefix=prefix)


def cache_pull_statements(region: str, account_id: pulumi.Input[str], prefix: str) -> list[pulumi.Output[Any]]:
    """Execution role statements that let a pull through the cache import the upstream image (and create its
    cached repository on the first pull), limited to the cache's repositories. The pull itself is the managed
    execution policy's (https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-through-cache-iam.html)."""
    repositories = pulumi.Output.concat("arn:aws:ecr:", region, ":", account_id, ":repository/", prefix, "/*")
    return [
        repositories.apply(
            lambda arn: allow(["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"], [arn], sid="PullThroughCache")
        )
    ]
