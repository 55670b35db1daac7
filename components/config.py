"""Typed, validated stack configuration.

The only module besides `__main__.py` that knows about Pulumi config. `load_stack_config` reads every key of the
project namespace, applies the environment's profile from `PROFILES` (the one sizing table), lets the stack file
override it, and returns a frozen `StackConfig`, or raises `ConfigError` listing one problem per line, each
naming the key, the value and what is allowed. Nothing is registered before this succeeds.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin

ENVIRONMENTS = ("dev", "staging", "prod")
Environment = Literal["dev", "staging", "prod"]
NatStrategy = Literal["single", "onePerAz"]
ContainerInsights = Literal["enhanced", "enabled", "disabled"]
CpuArchitecture = Literal["X86_64", "ARM64"]

# Fargate task sizes: cpu units -> allowed memory MiB.
FARGATE_MEMORY_BY_CPU: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
EMAIL_PATTERN = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
ACM_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,22}[a-z0-9]$")


class ConfigError(ValueError):
    """Stack config is invalid; `problems` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid stack config:\n" + "\n".join(f"  - {p}" for p in problems))


def _check(predicate: Callable[[Any], bool], allowed: str) -> dict[str, Any]:
    """Field metadata: a validator and the sentence that says what is allowed."""
    return {"check": predicate, "allowed": allowed}


def _positive(value: int) -> bool:
    return value >= 1


def _non_negative(value: int) -> bool:
    return value >= 0


# --- Sections ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkConfig:
    cidrBlock: str = field(default="10.0.0.0/16", metadata=_check(lambda v: _is_vpc_cidr(v), "an IPv4 CIDR /16 to /24"))
    """VPC CIDR block. Default: 10.0.0.0/16."""
    maxAzs: int = field(default=3, metadata=_check(lambda v: 2 <= v <= 3, "2 or 3"))
    """Availability zones to spread subnets over. Default: 3 (the seed's maxAzs)."""
    natGateways: NatStrategy = "single"
    """NAT gateways: `single` (one, cheap) or `onePerAz` (HA). Default: per environment."""
    flowLogRetentionDays: int = field(
        default=30, metadata=_check(lambda v: v in LOG_RETENTION_DAYS, "a CloudWatch retention value")
    )
    """VPC flow log retention in days. Default: per environment."""


@dataclass(frozen=True)
class ServiceConfig:
    cpu: int = field(
        default=512, metadata=_check(lambda v: v in FARGATE_MEMORY_BY_CPU, f"one of {sorted(FARGATE_MEMORY_BY_CPU)}")
    )
    """Task CPU units. Default: per environment (512/1024/2048)."""
    memory: int = field(default=1024, metadata=_check(_positive, "a positive number of MiB"))
    """Task memory MiB; must be a valid Fargate size for `cpu`. Default: per environment (1024/2048/4096)."""
    desiredCount: int = field(default=1, metadata=_check(_non_negative, "0 or more"))
    """Tasks to run. Default: per environment (1/2/3)."""
    minCount: int | None = field(default=None, metadata=_check(_non_negative, "0 or more"))
    """Autoscaling minimum. Default: max(1, desiredCount - 1) (the seed's rule)."""
    maxCount: int = field(default=3, metadata=_check(_positive, "1 or more"))
    """Autoscaling maximum. Default: per environment (3/5/10)."""
    containerPort: int = field(default=8080, metadata=_check(lambda v: 1024 <= v <= 65535, "1024-65535 (non-root)"))
    """Container port (unprivileged, since the container runs as non-root). Default: 8080."""
    healthCheckPath: str = field(
        default="/health", metadata=_check(lambda v: v.startswith("/"), "a path starting with /")
    )
    """Target group and container health check path. Default: /health."""
    image: str | None = field(
        default=None,
        metadata=_check(lambda v: _is_pinned_image(v), "an image pinned by tag (not latest) or @sha256 digest"),
    )
    """Image to run instead of the one built from services/api. Default: built and pushed by the program."""
    cpuArchitecture: CpuArchitecture = "X86_64"
    """Fargate CPU architecture (ARM64 is ~20% cheaper). Default: X86_64."""
    spotWeight: int = field(default=0, metadata=_check(_non_negative, "0 or more"))
    """Relative weight of FARGATE_SPOT in the capacity provider strategy. Default: per environment."""
    onDemandBase: int = field(default=1, metadata=_check(_non_negative, "0 or more"))
    """Tasks always placed on on-demand FARGATE before weights apply. Default: 1."""
    enableExecuteCommand: bool = False
    """Allow ECS Exec into running tasks (audited to the cluster's exec log group). Default: false."""


@dataclass(frozen=True)
class StackConfig:
    environment: Environment
    """Which profile from the sizing table applies: dev, staging or prod. Required."""
    applicationName: str = field(
        default="jobs",
        metadata=_check(
            lambda v: bool(NAME_PATTERN.match(v)),
            "3-24 chars: lowercase letters, digits, hyphens; starts with a letter",
        ),
    )
    """Prefix of every resource name. Default: jobs."""
    region: str = "us-east-1"
    """AWS region: set it as `aws:region`, not in this namespace. Default: us-east-1."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """VPC settings (object)."""
    service: ServiceConfig = field(default_factory=ServiceConfig)
    """Web service sizing and scaling (object)."""
    alertEmail: str | None = field(
        default=None, metadata=_check(lambda v: bool(EMAIL_PATTERN.match(v)), "an email address like ops@example.com")
    )
    """Email subscribed to the alert topic. Default: none."""
    certificateArn: str | None = field(
        default=None,
        metadata=_check(
            lambda v: bool(ACM_ARN_PATTERN.match(v)),
            "an ACM certificate ARN, arn:aws:acm:<region>:<account>:certificate/<uuid>",
        ),
    )
    """ACM certificate for the HTTPS listener; HTTP then redirects to HTTPS. Default: none (HTTP only)."""
    logRetentionDays: int = field(
        default=30,
        metadata=_check(
            lambda v: v in LOG_RETENTION_DAYS, "a CloudWatch retention value (1, 3, 5, 7, 14, 30, 60, 90, ...)"
        ),
    )
    """Retention of service and platform log groups. Default: per environment."""
    containerInsights: ContainerInsights = "enabled"
    """ECS Container Insights mode. Default: per environment."""
    deletionProtection: bool = False
    """Deletion protection on the ALB (and data stores). Default: true in prod only."""

    @property
    def name_prefix(self) -> str:
        return f"{self.applicationName}-{self.environment}"

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"


# --- The sizing table -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvProfile:
    """Per-environment defaults: the seed's maps in one place. Stack files override any of them."""

    cpu: int
    memory: int
    desired_count: int
    max_count: int
    nat_gateways: NatStrategy
    log_retention_days: int
    container_insights: ContainerInsights
    deletion_protection: bool
    spot_weight: int

    def defaults(self) -> dict[str, Any]:
        return {
            "network": {"natGateways": self.nat_gateways, "flowLogRetentionDays": self.log_retention_days},
            "service": {
                "cpu": self.cpu,
                "memory": self.memory,
                "desiredCount": self.desired_count,
                "maxCount": self.max_count,
                "spotWeight": self.spot_weight,
            },
            "logRetentionDays": self.log_retention_days,
            "containerInsights": self.container_insights,
            "deletionProtection": self.deletion_protection,
        }


PROFILES: dict[str, EnvProfile] = {
    "dev": EnvProfile(
        cpu=512, memory=1024, desired_count=1, max_count=3, nat_gateways="single",
        log_retention_days=30, container_insights="enabled", deletion_protection=False, spot_weight=1,
    ),
    "staging": EnvProfile(
        cpu=1024, memory=2048, desired_count=2, max_count=5, nat_gateways="single",
        log_retention_days=30, container_insights="enabled", deletion_protection=False, spot_weight=1,
    ),
    "prod": EnvProfile(
        cpu=2048, memory=4096, desired_count=3, max_count=10, nat_gateways="onePerAz",
        log_retention_days=90, container_insights="enhanced", deletion_protection=True, spot_weight=0,
    ),
}  # fmt: skip


# --- Loading ----------------------------------------------------------------------------------------------

T = TypeVar("T")


def parse_stack_config(raw: Mapping[str, Any], region: str | None = None) -> StackConfig:
    """Validate raw project config (values already JSON-decoded) into a StackConfig."""
    problems: list[str] = []
    environment = raw.get("environment")
    if environment not in ENVIRONMENTS:
        shown = "missing" if environment is None else repr(environment)
        raise ConfigError([f"environment: {shown}; allowed: {', '.join(ENVIRONMENTS)}"])
    if "region" in raw:
        problems.append(f"region: {raw['region']!r} in the project namespace; allowed: set `aws:region` instead")
    merged = _deep_merge(PROFILES[environment].defaults(), dict(raw))
    if region is not None:
        merged["region"] = region
    config = _parse_dataclass(StackConfig, merged, "", problems)
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


def _parse_dataclass(cls: type[T], raw: Any, path: str, problems: list[str]) -> T | None:
    if not isinstance(raw, Mapping):
        problems.append(
            f"{path.rstrip('.')}: {raw!r} is not an object; allowed: an object with keys {_field_names(cls)}"
        )
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for unknown in sorted(set(raw) - set(fields)):
        problems.append(f"{path}{unknown}: unknown key; allowed keys here: {_field_names(cls)}")
    values: dict[str, Any] = {}
    before = len(problems)
    for name, spec in fields.items():
        if name not in raw:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                problems.append(f"{path}{name}: missing; it is required")
            continue
        values[name] = _parse_value(hints[name], raw[name], f"{path}{name}", spec.metadata, problems)
    if len(problems) > before:
        return None
    return cls(**values)


def _field_names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _parse_value(hint: Any, value: Any, key: str, metadata: Mapping[str, Any], problems: list[str]) -> Any:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        hint = options[0]
        origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _parse_dataclass(hint, value, f"{key}.", problems)  # type: ignore[arg-type]
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            problems.append(f"{key}: {value!r}; allowed: {', '.join(map(str, allowed))}")
        return value
    if not _is_instance(value, hint):
        problems.append(
            f"{key}: {value!r} is not {_type_name(hint)}; allowed: {metadata.get('allowed', _type_name(hint))}"
        )
        return value
    check = metadata.get("check")
    if check is not None and not check(value):
        problems.append(f"{key}: {value!r}; allowed: {metadata['allowed']}")
    return value


def _is_instance(value: Any, hint: Any) -> bool:
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return {int: "a whole number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def _cross_field_problems(config: StackConfig) -> list[str]:
    problems: list[str] = []
    service = config.service
    allowed_memory = FARGATE_MEMORY_BY_CPU.get(service.cpu, ())
    if service.memory not in allowed_memory:
        problems.append(
            f"service.memory: {service.memory} is not a Fargate size for service.cpu {service.cpu}; "
            f"allowed: {allowed_memory[0]}-{allowed_memory[-1]} in steps of {allowed_memory[1] - allowed_memory[0]}"
        )
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
    if config.is_prod and config.certificateArn is None:
        problems.append(
            "certificateArn: missing in prod; allowed in prod: an ACM certificate ARN (prod serves HTTPS only)"
        )
    if config.is_prod and config.network.natGateways != "onePerAz":
        problems.append(
            f"network.natGateways: {config.network.natGateways!r} in prod; allowed in prod: onePerAz "
            "(a single NAT gateway is a single point of failure for every private subnet)"
        )
    return problems


def min_count(service: ServiceConfig) -> int:
    """The seed's rule: min = max(1, desired - 1), unless set."""
    return service.minCount if service.minCount is not None else max(1, service.desiredCount - 1)


def _is_vpc_cidr(value: str) -> bool:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        return False
    return 16 <= network.prefixlen <= 24


def _is_pinned_image(value: str) -> bool:
    if "@sha256:" in value:
        return bool(re.search(r"@sha256:[0-9a-f]{64}$", value))
    name, _, tag = value.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")
