"""ECS: task definitions (containers, images, namespaces, volumes), services and clusters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .base import (
    CRITICAL,
    HIGH,
    LOW,
    MANDATORY,
    MEDIUM,
    InvalidJson,
    Resource,
    as_list,
    is_true,
    option,
    parse_json_prop,
    per_item,
    resource_policy,
    string_list,
)
from .images import parse_image
from .secrets import SECRET_CONFIG, SecretDetector, secret_message

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
CLUSTER = "aws:ecs/cluster:Cluster"

ContainerCheck = Callable[[str, Mapping[str, Any], Resource], Iterable[str]]


def container_definitions(props: Mapping[str, Any]) -> list[Any]:
    """The task definition's containers; `containerDefinitions` is a JSON string input."""
    parsed = parse_json_prop(props, "containerDefinitions")
    if parsed is None:
        return []
    if isinstance(parsed, Mapping):
        return [parsed]
    return as_list(parsed)


def container_name(container: Mapping[str, Any], index: int) -> str:
    name = container.get("name") if isinstance(container, Mapping) else None
    return str(name) if name else f"#{index}"


def each_container(check: ContainerCheck) -> Callable[[Resource], Iterator[str]]:
    """A task-definition check that runs `check(name, container, resource)` on every container."""

    def run(resource: Resource) -> Iterator[str]:
        try:
            containers = container_definitions(resource.props)
        except InvalidJson as error:
            yield f"{error}; the containers cannot be checked"
            return
        indexed = [(container_name(c, i), c) for i, c in enumerate(containers)]
        yield from per_item(indexed, lambda item: check(item[0], item[1], resource))

    return run


# --- Containers -------------------------------------------------------------------------------------------


def is_root_user(user: str) -> bool:
    """`root`, `0`, and `uid:gid` forms whose uid is root or 0."""
    uid = user.strip().split(":", 1)[0].strip().lower()
    return uid in ("root", "0")


def check_non_root(name: str, container: Mapping[str, Any], _: Resource) -> Iterator[str]:
    user = container.get("user")
    if user is None or not str(user).strip():
        yield f"container '{name}' sets no user, so it runs as root"
    elif is_root_user(str(user)):
        yield f"container '{name}' runs as root (user '{user}')"


def check_not_privileged(name: str, container: Mapping[str, Any], _: Resource) -> Iterator[str]:
    if is_true(container.get("privileged")):
        yield f"container '{name}' is privileged"


def check_environment(name: str, container: Mapping[str, Any], resource: Resource) -> Iterator[str]:
    detector = SecretDetector.from_config(resource.config)
    for variable in as_list(container.get("environment")):
        reason = detector.reason(variable.get("name"), variable.get("value"))
        if reason:
            fix = "pass it through secrets[].valueFrom (Secrets Manager or SSM Parameter Store)"
            yield secret_message(f"container '{name}'", variable.get("name"), reason, fix)


def check_readonly_root(name: str, container: Mapping[str, Any], _: Resource) -> Iterator[str]:
    if not is_true(container.get("readonlyRootFilesystem")):
        yield f"container '{name}' has a writable root filesystem"


def check_logging(name: str, container: Mapping[str, Any], _: Resource) -> Iterator[str]:
    log_configuration = container.get("logConfiguration")
    if not isinstance(log_configuration, Mapping) or not log_configuration.get("logDriver"):
        yield f"container '{name}' has no logConfiguration.logDriver, so its output is lost"


def check_image_registry(name: str, container: Mapping[str, Any], resource: Resource) -> Iterator[str]:
    image = container.get("image")
    if not image:
        yield f"container '{name}' has no image"
        return
    ref = parse_image(str(image))
    accounts = [str(a) for a in resource.config.get("allowedAccountIds", [])]
    if ref.ecr_account is not None:
        if accounts and ref.ecr_account not in accounts:
            yield (
                f"container '{name}' image '{image}' comes from ECR account {ref.ecr_account}, "
                f"which is not one of the allowed accounts {accounts}"
            )
        return
    allowed = [str(prefix) for prefix in resource.config.get("allowedRegistries", [])]
    if any(ref.full_name.startswith(prefix) or str(image).startswith(prefix) for prefix in allowed):
        return
    yield (
        f"container '{name}' image '{image}' comes from {ref.registry}, not from a private ECR repository "
        "of an allowed account"
    )


def check_image_tag(name: str, container: Mapping[str, Any], _: Resource) -> Iterator[str]:
    image = container.get("image")
    if image and parse_image(str(image)).uses_latest:
        yield f"container '{name}' image '{image}' uses the mutable 'latest' tag"


# --- Task definition --------------------------------------------------------------------------------------


def check_pid_mode(resource: Resource) -> Iterator[str]:
    if str(resource.props.get("pidMode") or "").lower() == "host":
        yield "pidMode is 'host', which shares the host's process namespace with the containers"


def check_network_mode(resource: Resource) -> Iterator[str]:
    if str(resource.props.get("networkMode") or "").lower() == "host":
        yield "networkMode is 'host', which bypasses task network isolation"


def check_efs_transit_encryption(resource: Resource) -> Iterator[str]:
    def check(volume: Mapping[str, Any]) -> Iterator[str]:
        efs = volume.get("efsVolumeConfiguration")
        if isinstance(efs, Mapping) and str(efs.get("transitEncryption") or "").upper() != "ENABLED":
            yield f"EFS volume '{volume.get('name')}' does not set transitEncryption to ENABLED"

    yield from per_item(as_list(resource.props.get("volumes")), check)


# --- Service and cluster ----------------------------------------------------------------------------------


def check_service_public_ip(resource: Resource) -> Iterator[str]:
    network = resource.props.get("networkConfiguration")
    if isinstance(network, Mapping) and is_true(network.get("assignPublicIp")):
        yield "networkConfiguration.assignPublicIp is true, so every task gets a public IP address"


def check_platform_version(resource: Resource) -> Iterator[str]:
    version = resource.props.get("platformVersion")
    allowed = [str(v).upper() for v in resource.config.get("allowedPlatformVersions", [])]
    if version is not None and str(version).upper() not in allowed:
        yield f"platformVersion is '{version}'; allowed: {allowed}"


def check_container_insights(resource: Resource) -> Iterator[str]:
    for setting in as_list(resource.props.get("settings")):
        if setting.get("name") == "containerInsights" and str(setting.get("value")).lower() in (
            "enabled",
            "enhanced",
        ):
            return
    yield "the containerInsights setting is not 'enabled' or 'enhanced'"


# --- Policies ---------------------------------------------------------------------------------------------

USE_SECRETS = (
    "Move the value to Secrets Manager or SSM Parameter Store and reference it from the container's "
    "`secrets` list (`valueFrom`), then rotate the exposed credential."
)

POLICIES = [
    resource_policy(
        name="aws-ecs-taskdefinition-disallow-root-user",
        description="ECS containers must run as a non-root user.",
        resource_types=[TASK_DEFINITION],
        check=each_container(check_non_root),
        severity=HIGH,
        level=MANDATORY,
        fsbp="ECS.20",
        remediation="Set `user` on every container definition to a non-root uid (e.g. `1000:1000`), and build "
        "the image so it runs as that user.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-disallow-privileged-containers",
        description="ECS containers must not run in privileged mode.",
        resource_types=[TASK_DEFINITION],
        check=each_container(check_not_privileged),
        severity=CRITICAL,
        level=MANDATORY,
        fsbp="ECS.4",
        remediation="Remove `privileged: true` from the container definition; grant single Linux capabilities "
        "through `linuxParameters.capabilities` if one is really needed.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-disallow-plaintext-secrets",
        description="ECS container environment variables must not hold plaintext secrets.",
        resource_types=[TASK_DEFINITION],
        check=each_container(check_environment),
        severity=CRITICAL,
        level=MANDATORY,
        fsbp="ECS.8",
        config=SECRET_CONFIG,
        remediation=USE_SECRETS,
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-allowed-image-registries",
        description="ECS container images must come from private ECR repositories of allowed accounts.",
        resource_types=[TASK_DEFINITION],
        check=each_container(check_image_registry),
        severity=HIGH,
        level=MANDATORY,
        config=option(
            {
                "allowedAccountIds": string_list(
                    "AWS account ids whose ECR registries are allowed; empty allows any account's private ECR.",
                    [],
                ),
                "allowedRegistries": string_list(
                    "Image prefixes allowed besides private ECR, e.g. `public.ecr.aws/aws-observability/`.", []
                ),
            }
        ),
        remediation="Push the image to a scanned ECR repository in an allowed account and reference it by its "
        "repository URL; list deliberate exceptions in `allowedRegistries`.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-disallow-latest-tag",
        description="ECS container images must be pinned to an immutable tag or digest, never `latest`.",
        resource_types=[TASK_DEFINITION],
        check=each_container(check_image_tag),
        severity=HIGH,
        level=MANDATORY,
        remediation="Reference images by digest (`repo@sha256:...`) or by a unique version tag in an "
        "immutable repository.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-enable-readonly-root-filesystem",
        description="ECS containers should mount their root filesystem read-only.",
        resource_types=[TASK_DEFINITION],
        check=each_container(check_readonly_root),
        severity=MEDIUM,
        fsbp="ECS.5",
        remediation="Set `readonlyRootFilesystem: true` and mount writable paths (e.g. /tmp) as volumes.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-configure-logging",
        description="ECS containers should send their logs to a log driver.",
        resource_types=[TASK_DEFINITION],
        check=each_container(check_logging),
        severity=MEDIUM,
        fsbp="ECS.9",
        remediation="Add a `logConfiguration` with `logDriver: awslogs` (or `awsfirelens`) pointing at a log "
        "group with a retention period.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-disallow-host-pid-mode",
        description="ECS task definitions must not share the host's process namespace.",
        resource_types=[TASK_DEFINITION],
        check=check_pid_mode,
        severity=HIGH,
        fsbp="ECS.3",
        remediation="Remove `pidMode: host` (use `task` if containers must see each other's processes).",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-disallow-host-network-mode",
        description="ECS task definitions must not use the host network mode.",
        resource_types=[TASK_DEFINITION],
        check=check_network_mode,
        severity=HIGH,
        fsbp="ECS.17",
        remediation="Use `networkMode: awsvpc` so each task gets its own network interface and security group.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-enable-efs-transit-encryption",
        description="ECS task definitions should encrypt EFS volumes in transit.",
        resource_types=[TASK_DEFINITION],
        check=check_efs_transit_encryption,
        severity=MEDIUM,
        fsbp="ECS.18",
        remediation="Set `efsVolumeConfiguration.transitEncryption: ENABLED` on every EFS volume.",
    ),
    resource_policy(
        name="aws-ecs-service-disallow-public-ip",
        description="ECS services must not assign public IP addresses to their tasks.",
        resource_types=[SERVICE],
        check=check_service_public_ip,
        severity=HIGH,
        level=MANDATORY,
        fsbp="ECS.2",
        remediation="Set `networkConfiguration.assignPublicIp: false`, run tasks in private subnets and reach "
        "them through a load balancer.",
    ),
    resource_policy(
        name="aws-ecs-service-use-latest-platform-version",
        description="ECS Fargate services should run on the latest platform version.",
        resource_types=[SERVICE],
        check=check_platform_version,
        severity=MEDIUM,
        fsbp="ECS.10",
        config=option(
            {
                "allowedPlatformVersions": string_list(
                    "Platform versions accepted besides an absent one.", ["LATEST", "1.4.0"]
                )
            }
        ),
        remediation="Remove `platformVersion` or set it to `LATEST`.",
    ),
    resource_policy(
        name="aws-ecs-cluster-enable-container-insights",
        description="ECS clusters should have Container Insights enabled.",
        resource_types=[CLUSTER],
        check=check_container_insights,
        severity=LOW,
        fsbp="ECS.12",
        remediation="Add the cluster setting `containerInsights` with value `enabled` (or `enhanced`).",
    ),
]
