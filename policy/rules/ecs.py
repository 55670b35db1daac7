"""ECS: task definitions (containers, images, namespaces, volumes), services and clusters.

Containers are read through `base.container_definitions` (keys matched the way the AWS provider decodes them)
and, for awsx components, from the component's own `container` / `containers` inputs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from .base import (
    CRITICAL,
    ENVIRONMENTS_OPTION,
    HIGH,
    LOW,
    MANDATORY,
    MEDIUM,
    InvalidJson,
    Resource,
    applies_to_stack,
    as_list,
    container_definitions,
    is_true,
    option,
    per_item,
    read_containers,
    resource_policy,
    string_list,
)
from .images import parse_image
from .secrets import SECRET_CONFIG, SecretDetector, container_findings, describe

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
CLUSTER = "aws:ecs/cluster:Cluster"

# awsx components are multi-language: under mocks (and to a policy) they are one resource with their own inputs,
# so the container rules read those inputs. Services carry their task definition in `taskDefinitionArgs`.
AWSX_SERVICES = ("awsx:ecs:FargateService", "awsx:ecs:EC2Service")
AWSX_TASK_DEFINITIONS = ("awsx:ecs:FargateTaskDefinition", "awsx:ecs:EC2TaskDefinition")
TASK_DEFINITION_TYPES = [TASK_DEFINITION, *AWSX_TASK_DEFINITIONS, *AWSX_SERVICES]
SERVICE_TYPES = [SERVICE, *AWSX_SERVICES]

ContainerCheck = Callable[[str, Mapping[str, Any], Resource], Iterable[str]]
NamedContainer = tuple[str, Mapping[str, Any]]


def task_definition_inputs(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The task-definition inputs of a resource: its own props, or an awsx service's `taskDefinitionArgs`
    (None when the service runs an existing `taskDefinition`, which is checked where it is defined)."""
    if resource_type in AWSX_SERVICES:
        args = props.get("taskDefinitionArgs")
        return args if isinstance(args, Mapping) else None
    return props


def containers_of(resource_type: str, props: Mapping[str, Any], resource_name: str) -> list[NamedContainer]:
    """Every container of a task definition or awsx component, named, keys normalised (`container_definitions`).

    awsx names a container by its key in `containers`, and the single `container` after the resource.
    """
    if resource_type == TASK_DEFINITION:
        return [(container_name(c, i), c) for i, c in enumerate(container_definitions(props))]
    inputs = task_definition_inputs(resource_type, props)
    if inputs is None:
        return []
    single = inputs.get("container")
    if isinstance(single, Mapping):
        return [(str(single.get("name") or resource_name), read_containers(single)[0])]
    many = inputs.get("containers")
    if not isinstance(many, Mapping):
        return []
    return [(str(key), read_containers(value)[0]) for key, value in many.items() if isinstance(value, Mapping)]


def container_name(container: Mapping[str, Any], index: int) -> str:
    name = container.get("name") if isinstance(container, Mapping) else None
    return str(name) if name else f"#{index}"


def each_container(check: ContainerCheck) -> Callable[[Resource], Iterator[str]]:
    """A task-definition check that runs `check(name, container, resource)` on every container."""

    def run(resource: Resource) -> Iterator[str]:
        try:
            containers = containers_of(resource.type, resource.props, resource.name)
        except InvalidJson as error:
            yield f"{error}; the containers cannot be checked"
            return
        yield from per_item(containers, lambda item: check(item[0], item[1], resource))

    return run


# --- Containers -------------------------------------------------------------------------------------------

# runc/moby resolve a numeric user with strconv.Atoi: an optional sign and any number of leading zeros.
GO_INTEGER = re.compile(r"[+-]?[0-9]+")
# `root` is the only name with uid 0 in the /etc/passwd of Debian, Ubuntu, Alpine, BusyBox, Amazon Linux, UBI and
# distroless images; `rootUserNames` adds others for images that define them.
DEFAULT_ROOT_NAMES = ["root"]


def is_root_user(user: str, root_names: Iterable[str] = DEFAULT_ROOT_NAMES) -> bool:
    """True when the runtime would run `user` (`name`, `uid`, `name:group`, `uid:gid`) as uid 0.

    Whitespace is ignored (the conservative reading), `:gid` alone keeps the default user (root), names are
    compared case-insensitively, and any integer spelling of 0 (`00`, `+0`, `-0`) is uid 0.
    """
    name = user.strip().split(":", 1)[0].strip()
    if not name or name.lower() in {n.lower() for n in root_names}:
        return True
    return GO_INTEGER.fullmatch(name) is not None and int(name) == 0


def check_non_root(name: str, container: Mapping[str, Any], resource: Resource) -> Iterator[str]:
    user = container.get("user")
    if user is None or not str(user).strip():
        yield f"container '{name}' sets no user, so it runs as root"
    elif is_root_user(str(user), resource.config.get("rootUserNames", DEFAULT_ROOT_NAMES)):
        yield f"container '{name}' runs as root (user '{user}')"


def check_not_privileged(name: str, container: Mapping[str, Any], _: Resource) -> Iterator[str]:
    if is_true(container.get("privileged")):
        yield f"container '{name}' is privileged"


def capability_name(value: Any) -> str:
    """`CAP_SYS_ADMIN`, `sys_admin` and `SYS_ADMIN` name the same capability (Docker accepts all three)."""
    text = str(value).strip().upper()
    return text.removeprefix("CAP_")


def check_added_capabilities(name: str, container: Mapping[str, Any], resource: Resource) -> Iterator[str]:
    linux = container.get("linuxParameters")
    capabilities = linux.get("capabilities") if isinstance(linux, Mapping) else None
    added = as_list(capabilities.get("add")) if isinstance(capabilities, Mapping) else []
    allowed = {capability_name(c) for c in resource.config.get("allowedCapabilities", [])}
    for capability in (capability_name(c) for c in added):
        if capability in allowed:
            continue
        what = "every capability" if capability == "ALL" else f"the Linux capability {capability}"
        yield f"container '{name}' adds {what} through linuxParameters.capabilities.add"


def check_secrets(name: str, container: Mapping[str, Any], resource: Resource) -> Iterator[str]:
    """Plaintext secrets anywhere in the container (environment, command, entryPoint, ...): `secrets.py`."""
    detector = SecretDetector.from_config(resource.config)
    fix = "pass it through secrets[].valueFrom (Secrets Manager or SSM Parameter Store)"
    yield from describe(f"container '{name}'", container_findings(container, detector), fix)


def check_readonly_root(name: str, container: Mapping[str, Any], _: Resource) -> Iterator[str]:
    if not is_true(container.get("readonlyRootFilesystem")):
        yield f"container '{name}' has a writable root filesystem"


def awsx_adds_log_configuration(resource: Resource) -> bool:
    """awsx gives every container without one an awslogs configuration, unless its log group is skipped."""
    inputs = task_definition_inputs(resource.type, resource.props)
    if resource.type == TASK_DEFINITION or inputs is None:
        return False
    log_group = inputs.get("logGroup")
    return not (isinstance(log_group, Mapping) and is_true(log_group.get("skip")))


def check_logging(name: str, container: Mapping[str, Any], resource: Resource) -> Iterator[str]:
    log_configuration = container.get("logConfiguration")
    if isinstance(log_configuration, Mapping) and log_configuration.get("logDriver"):
        return
    if log_configuration is None and awsx_adds_log_configuration(resource):
        return
    yield f"container '{name}' has no logConfiguration.logDriver, so its output is lost"


def container_image(name: str, container: Mapping[str, Any], resource: Resource) -> str | None:
    """The container's image; None (reported as not checked) when an awsx input is not known yet.

    Under mocks and in a preview, an awsx input computed from another resource's output is absent.
    """
    image = container.get("image")
    if image:
        return str(image)
    if resource.type != TASK_DEFINITION:
        raise UnknownValueError(UNKNOWN_STRING_VALUE, [name, "image"])
    return None


def check_image_registry(name: str, container: Mapping[str, Any], resource: Resource) -> Iterator[str]:
    image = container_image(name, container, resource)
    if not image:
        yield f"container '{name}' has no image"
        return
    ref = parse_image(image)
    accounts = [str(a) for a in resource.config.get("allowedAccountIds", [])]
    if ref.ecr_account is not None:
        if accounts and ref.ecr_account not in accounts:
            yield (
                f"container '{name}' image '{image}' comes from ECR account {ref.ecr_account}, "
                f"which is not one of the allowed accounts {accounts}"
            )
        return
    allowed = [str(prefix) for prefix in resource.config.get("allowedRegistries", [])]
    if any(ref.full_name.startswith(prefix) or image.startswith(prefix) for prefix in allowed):
        return
    yield (
        f"container '{name}' image '{image}' comes from {ref.registry}, not from a private ECR repository "
        "of an allowed account"
    )


def check_image_tag(name: str, container: Mapping[str, Any], resource: Resource) -> Iterator[str]:
    image = container_image(name, container, resource)
    if image and parse_image(image).uses_latest:
        yield f"container '{name}' image '{image}' uses the mutable 'latest' tag"


# --- Task definition ---------------------------------------------------------------------------------------


def host_mode(key: str, what: str) -> Callable[[Resource], Iterator[str]]:
    """A check that `key` (pidMode, ipcMode, networkMode) of the task definition is not `host`."""

    def check(resource: Resource) -> Iterator[str]:
        inputs = task_definition_inputs(resource.type, resource.props)
        value = inputs.get(key) if inputs is not None else None
        if str(value or "").strip().lower() == "host":
            yield f"{key} is 'host', which {what}"

    return check


def check_efs_transit_encryption(resource: Resource) -> Iterator[str]:
    def check(volume: Mapping[str, Any]) -> Iterator[str]:
        efs = volume.get("efsVolumeConfiguration")
        if isinstance(efs, Mapping) and str(efs.get("transitEncryption") or "").upper() != "ENABLED":
            yield f"EFS volume '{volume.get('name')}' does not set transitEncryption to ENABLED"

    inputs = task_definition_inputs(resource.type, resource.props) or {}
    yield from per_item(as_list(inputs.get("volumes")), check)


# --- Service and cluster ----------------------------------------------------------------------------------


def check_service_public_ip(resource: Resource) -> Iterator[str]:
    network = resource.props.get("networkConfiguration")
    if isinstance(network, Mapping) and is_true(network.get("assignPublicIp")):
        yield "networkConfiguration.assignPublicIp is true, so every task gets a public IP address"
    elif resource.type in AWSX_SERVICES and is_true(resource.props.get("assignPublicIp")):
        yield "assignPublicIp is true, so every task gets a public IP address in the default VPC's public subnets"


def check_awsx_default_security_group(resource: Resource) -> Iterator[str]:
    # awsx's FargateService/EC2Service without networkConfiguration create a security group in the default VPC
    # with ingress from 0.0.0.0/0 and ::/0 on every port (awsx/ecs/fargateService.ts, getDefaultNetworkConfiguration).
    if resource.type in AWSX_SERVICES and resource.props.get("networkConfiguration") is None:
        yield (
            "networkConfiguration is not set, so awsx creates a security group open to 0.0.0.0/0 and ::/0 on "
            "every port for the tasks"
        )


def check_platform_version(resource: Resource) -> Iterator[str]:
    version = resource.props.get("platformVersion")
    allowed = [str(v).upper() for v in resource.config.get("allowedPlatformVersions", [])]
    if version is not None and str(version).upper() not in allowed:
        yield f"platformVersion is '{version}'; allowed: {allowed}"


def check_service_connect_logs(resource: Resource) -> Iterator[str]:
    configuration = resource.props.get("serviceConnectConfiguration")
    if not isinstance(configuration, Mapping) or not is_true(configuration.get("enabled")):
        return
    logs = configuration.get("logConfiguration")
    if not isinstance(logs, Mapping) or not logs.get("logDriver"):
        yield (
            "serviceConnectConfiguration has no logConfiguration.logDriver, so the Service Connect proxy's logs are "
            "lost"
        )


def check_container_insights(resource: Resource) -> Iterator[str]:
    for setting in as_list(resource.props.get("settings")):
        if setting.get("name") == "containerInsights" and str(setting.get("value")).lower() in (
            "enabled",
            "enhanced",
        ):
            return
    yield "the containerInsights setting is not 'enabled' or 'enhanced'"


TRAFFIC_SHIFTING_STRATEGIES = ("BLUE_GREEN", "CANARY", "LINEAR")


def check_safe_deployment(resource: Resource) -> Iterator[str]:
    """Production services deploy blue/green, canary or linear (ECS native, or the CodeDeploy controller), or at
    least roll back on CloudWatch alarms: the circuit breaker alone only notices tasks that fail to start."""
    if not applies_to_stack(resource):
        return
    props = resource.props
    controller = props.get("deploymentController")
    if isinstance(controller, Mapping) and str(controller.get("type") or "ECS").upper() in ("CODE_DEPLOY", "EXTERNAL"):
        return  # traffic shifting (or the whole deployment) is another tool's, with its own checks
    configuration = props.get("deploymentConfiguration")
    strategy = configuration.get("strategy") if isinstance(configuration, Mapping) else None
    strategy = str(strategy or "ROLLING").upper()
    if strategy in TRAFFIC_SHIFTING_STRATEGIES:
        return
    alarms = props.get("alarms")
    if (
        isinstance(alarms, Mapping)
        and is_true(alarms.get("enable"))
        and is_true(alarms.get("rollback"))
        and as_list(alarms.get("alarmNames"))
    ):
        return
    yield (
        f"deploys {strategy} in stack '{resource.stack}' with no alarm-based rollback, so a revision that starts "
        "but serves errors takes all traffic until someone notices"
    )


# --- Policies ---------------------------------------------------------------------------------------------

USE_SECRETS = (
    "Move the value to Secrets Manager or SSM Parameter Store and reference it from the container's "
    "`secrets` list (`valueFrom`), then rotate the exposed credential."
)

POLICIES = [
    resource_policy(
        name="aws-ecs-taskdefinition-disallow-root-user",
        description="ECS containers must run as a non-root user.",
        resource_types=TASK_DEFINITION_TYPES,
        check=each_container(check_non_root),
        severity=HIGH,
        level=MANDATORY,
        fsbp="ECS.20",
        config=option(
            {
                "rootUserNames": string_list(
                    "User names that map to uid 0 in your images (compared case-insensitively).", DEFAULT_ROOT_NAMES
                )
            }
        ),
        remediation="Set `user` on every container definition to a non-root uid (e.g. `1000:1000`), and build "
        "the image so it runs as that user.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-disallow-privileged-containers",
        description="ECS containers must not run in privileged mode.",
        resource_types=TASK_DEFINITION_TYPES,
        check=each_container(check_not_privileged),
        severity=CRITICAL,
        level=MANDATORY,
        fsbp="ECS.4",
        remediation="Remove `privileged: true` from the container definition.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-disallow-added-capabilities",
        description="ECS containers must not add Linux capabilities such as SYS_ADMIN, NET_ADMIN or ALL.",
        resource_types=TASK_DEFINITION_TYPES,
        check=each_container(check_added_capabilities),
        severity=CRITICAL,
        level=MANDATORY,
        config=option(
            {
                "allowedCapabilities": string_list(
                    "Capabilities containers may add. Fargate accepts only SYS_PTRACE (for debuggers and APM "
                    "agents); list it here if a sidecar needs it.",
                    [],
                )
            }
        ),
        remediation="Remove `linuxParameters.capabilities.add` (Fargate only accepts SYS_PTRACE there); drop "
        "capabilities with `capabilities.drop: [ALL]` instead.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-disallow-plaintext-secrets",
        description="ECS container definitions must not hold plaintext secrets in any field.",
        resource_types=TASK_DEFINITION_TYPES,
        check=each_container(check_secrets),
        severity=CRITICAL,
        level=MANDATORY,
        fsbp="ECS.8",
        config=SECRET_CONFIG,
        remediation=USE_SECRETS,
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-allowed-image-registries",
        description="ECS container images must come from private ECR repositories of allowed accounts.",
        resource_types=TASK_DEFINITION_TYPES,
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
        resource_types=TASK_DEFINITION_TYPES,
        check=each_container(check_image_tag),
        severity=HIGH,
        level=MANDATORY,
        remediation="Reference images by digest (`repo@sha256:...`) or by a unique version tag in an "
        "immutable repository.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-enable-readonly-root-filesystem",
        description="ECS containers should mount their root filesystem read-only.",
        resource_types=TASK_DEFINITION_TYPES,
        check=each_container(check_readonly_root),
        severity=MEDIUM,
        fsbp="ECS.5",
        remediation="Set `readonlyRootFilesystem: true` and mount writable paths (e.g. /tmp) as volumes.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-configure-logging",
        description="ECS containers should send their logs to a log driver.",
        resource_types=TASK_DEFINITION_TYPES,
        check=each_container(check_logging),
        severity=MEDIUM,
        fsbp="ECS.9",
        remediation="Add a `logConfiguration` with `logDriver: awslogs` (or `awsfirelens`) pointing at a log "
        "group with a retention period.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-disallow-host-pid-mode",
        description="ECS task definitions must not share the host's process namespace.",
        resource_types=TASK_DEFINITION_TYPES,
        check=host_mode("pidMode", "shares the host's process namespace with the containers"),
        severity=HIGH,
        level=MANDATORY,
        fsbp="ECS.3",
        remediation="Remove `pidMode: host` (use `task` if containers must see each other's processes).",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-disallow-host-ipc-mode",
        description="ECS task definitions must not share the host's IPC namespace.",
        resource_types=TASK_DEFINITION_TYPES,
        check=host_mode("ipcMode", "shares the host's shared memory and semaphores with the containers"),
        severity=HIGH,
        level=MANDATORY,
        remediation="Remove `ipcMode: host` (use `task` if containers must share memory with each other).",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-disallow-host-network-mode",
        description="ECS task definitions must not use the host network mode.",
        resource_types=TASK_DEFINITION_TYPES,
        check=host_mode("networkMode", "bypasses task network isolation"),
        severity=HIGH,
        level=MANDATORY,
        fsbp="ECS.17",
        remediation="Use `networkMode: awsvpc` so each task gets its own network interface and security group.",
    ),
    resource_policy(
        name="aws-ecs-taskdefinition-enable-efs-transit-encryption",
        description="ECS task definitions should encrypt EFS volumes in transit.",
        resource_types=TASK_DEFINITION_TYPES,
        check=check_efs_transit_encryption,
        severity=MEDIUM,
        fsbp="ECS.18",
        remediation="Set `efsVolumeConfiguration.transitEncryption: ENABLED` on every EFS volume.",
    ),
    resource_policy(
        name="aws-ecs-service-disallow-public-ip",
        description="ECS services must not assign public IP addresses to their tasks.",
        resource_types=SERVICE_TYPES,
        check=check_service_public_ip,
        severity=HIGH,
        level=MANDATORY,
        fsbp="ECS.2",
        remediation="Set `networkConfiguration.assignPublicIp: false`, run tasks in private subnets and reach "
        "them through a load balancer.",
    ),
    resource_policy(
        name="aws-ecs-service-disallow-open-default-security-group",
        description="ECS services created by awsx must not use awsx's default security group, which is open to "
        "the internet on every port.",
        resource_types=list(AWSX_SERVICES),
        check=check_awsx_default_security_group,
        severity=HIGH,
        level=MANDATORY,
        remediation="Pass `networkConfiguration` with private `subnets` and a `securityGroups` list that only "
        "admits the load balancer's security group.",
    ),
    resource_policy(
        name="aws-ecs-service-use-latest-platform-version",
        description="ECS Fargate services should run on the latest platform version.",
        resource_types=SERVICE_TYPES,
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
        name="aws-ecs-service-enable-service-connect-logging",
        description="ECS services that use Service Connect should send the Service Connect proxy's logs to a log "
        "driver.",
        resource_types=SERVICE_TYPES,
        check=check_service_connect_logs,
        severity=MEDIUM,
        remediation="Set `serviceConnectConfiguration.logConfiguration` with `logDriver: awslogs` and a KMS-encrypted "
        "log group with retention in its `options`.",
    ),
    resource_policy(
        name="aws-ecs-service-configure-safe-deployments",
        description="ECS services in production stacks should deploy blue/green, canary or linear, or roll back on "
        "CloudWatch alarms.",
        resource_types=SERVICE_TYPES,
        check=check_safe_deployment,
        severity=MEDIUM,
        config=option(dict(ENVIRONMENTS_OPTION)),
        remediation="Set `deploymentConfiguration.strategy` to BLUE_GREEN, CANARY or LINEAR (ECS native, with a "
        "bake time and a test route), or set `alarms: {alarmNames: [...], enable: true, rollback: true}` with "
        "alarms on the service's errors and latency, in the stacks listed in `requiredInStacks`.",
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
