"""Cost estimate of a stack from its resource graph: what it would cost per day and per month to run.

Only the recorded resources and their inputs are read (never a program's own config), so the estimate works on
any Pulumi program, a `pulumi stack export` or a preview. Prices come from `prices.json` (one region's list
prices, each with its source); usage that the graph cannot show (traffic, log volume, stored GB, ...) comes
from `Assumptions`, every one documented and configurable. Each resource ends up in exactly one of three lists:
priced (with its line items), free (with why), or unpriced (with why): never a silent zero.

Lives inside the policy pack (the `cost-budget` policy uses it), so it imports only the standard library, the
policy SDK and the pack itself.

    python -m policy.rules.costing REPORT.json [--region R] [--assumptions FILE]   # report: `runner.check --json`
    python -m policy.rules.costing --table dev=dev.json staging=staging.json ...   # markdown table per stack
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from pulumi_policy.proxy import UnknownValueError

DAYS_PER_MONTH = 30.4
PRICES_FILE = Path(__file__).with_name("prices.json")
DEFAULT_REGION = "us-east-1"

# Pulumi's wire markers (the same as runner/records.py; repeated because the pack imports nothing outside it).
_SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270"
_UNKNOWN_VALUE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


class CostError(ValueError):
    """Bad input to the estimate (assumptions, region, price table); the message names what and what is allowed."""


# --- Assumptions ------------------------------------------------------------------------------------------

AVERAGE_TASK_MODES = ("min", "desired", "max")


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True)
class Assumptions:
    """Usage the resource graph cannot show. Every field is documented in docs/cost.md (generated from here)."""

    hours_per_day: float = field(
        default=24.0, metadata=_doc("Hours a day the stack runs; every hourly charge scales with it (0-24).")
    )
    average_tasks: str | float = field(
        default="desired",
        metadata=_doc(
            "Running tasks per ECS service: `min`, `desired` or `max` of its autoscaling target, or a fraction 0-1 "
            "between min and max. Without a target, the service's desiredCount."
        ),
    )
    alb_lcu: float = field(
        default=0.5,
        metadata=_doc(
            "Average capacity units per load balancer-hour (1 LCU: 25 new connections/s, 3,000 active connections/min "
            "or 1 GB/hour processed; an idle load balancer bills a fraction)."
        ),
    )
    nat_gb_per_day: float = field(
        default=1.0,
        metadata=_doc(
            "GB a day through the NAT gateways of one VPC (image pulls, AWS APIs, the internet), split across them."
        ),
    )
    log_gb_per_day: float = field(
        default=0.05,
        metadata=_doc(
            "GB a day ingested into each CloudWatch log group; stored for its retention (one year if it never expires)."
        ),
    )
    flow_log_gb_per_day: float = field(default=0.1, metadata=_doc("GB a day of VPC flow log records per flow log."))
    event_log_gb_per_day: float = field(
        default=0.002,
        metadata=_doc(
            "GB a day into each log group that only events write: a Lambda function's, a CodeBuild project's, the ECS "
            "Exec audit log, an RDS upgrade log (runs, builds, sessions and upgrades, not traffic)."
        ),
    )
    # Counted from the metric table of "Amazon ECS Container Insights metrics" (CloudWatch user guide,
    # https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Container-Insights-metrics-ECS.html):
    # 10 metrics on all three dimension sets (Cpu/Memory Utilized and Reserved, Network Rx/Tx, Storage Read/Write,
    # EphemeralStorage Reserved/Utilized), 3 on ClusterName only and 5 on ServiceName only.
    container_insights_metrics_per_cluster: float = field(
        default=12,
        metadata=_doc(
            "Container Insights custom metrics per cluster (ClusterName: the 10 resource metrics, ServiceCount, "
            "TaskCount; ContainerInstanceCount counts EC2 instances, none on Fargate)."
        ),
    )
    container_insights_metrics_per_service: float = field(
        default=25,
        metadata=_doc(
            "Container Insights custom metrics per service with running tasks (ServiceName: the 10 resource metrics, "
            "Deployment, DesiredTask, PendingTask, RunningTask and TaskSet counts; TaskDefinitionFamily: the 10 "
            "again)."
        ),
    )
    container_insights_metrics_per_task: float = field(
        default=20,
        metadata=_doc("Extra per-task and per-container metrics with enhanced observability, per running task."),
    )
    container_insights_log_gb_per_task_per_day: float = field(
        default=0.003, metadata=_doc("GB a day of Container Insights performance log events per running task.")
    )
    sqs_requests_per_day: float = field(
        default=10_000, metadata=_doc("Requests a day per SQS queue (sends, receives incl. empty long polls, deletes).")
    )
    vpc_endpoint_gb_per_day: float = field(default=0.1, metadata=_doc("GB a day through each interface VPC endpoint."))
    s3_gb: float = field(default=1.0, metadata=_doc("GB stored in each S3 bucket (Standard class)."))
    ecr_gb: float = field(default=1.0, metadata=_doc("GB of images stored in each ECR repository."))
    efs_gb: float = field(
        default=1.0, metadata=_doc("GB stored in each EFS file system (and in its backup, if enabled).")
    )
    efs_read_gb_per_day: float = field(
        default=0.1, metadata=_doc("GB a day read from each EFS file system in Elastic throughput mode.")
    )
    efs_write_gb_per_day: float = field(
        default=0.05, metadata=_doc("GB a day written to each EFS file system in Elastic throughput mode.")
    )
    codebuild_minutes_per_day: float = field(default=10, metadata=_doc("Build minutes a day per CodeBuild project."))
    lambda_invocations_per_day: float = field(default=1_000, metadata=_doc("Invocations a day per Lambda function."))
    lambda_seconds_per_invocation: float = field(
        default=0.5, metadata=_doc("Average duration of one Lambda invocation, in seconds.")
    )
    kms_key_age_days: float = field(
        default=0,
        metadata=_doc(
            "Age of each KMS key in days (0: a new key). With automatic rotation, every `rotationPeriodInDays` "
            "(default 365) of age is one rotation; the first and second add $1/month each, later ones nothing."
        ),
    )
    ebs_root_volume_gb: float = field(
        default=8,
        metadata=_doc("GB of an instance's root EBS volume when its launch template leaves the size to the AMI."),
    )
    inspector_images_pushed_per_month: float = field(
        default=40,
        metadata=_doc(
            "Images pushed a month to a registry with ENHANCED scanning: Amazon Inspector scans each once on push."
        ),
    )
    inspector_images_continuously_scanned: float = field(
        default=10,
        metadata=_doc(
            "Images under continuous scanning (in repositories a CONTINUOUS_SCAN rule matches, pushed or used within "
            "Inspector's re-scan duration, 14 days by default)."
        ),
    )
    inspector_rescans_per_image_per_month: float = field(
        default=4,
        metadata=_doc("Rescans a month of each continuously scanned image (Inspector rescans when new CVEs appear)."),
    )
    guardduty_cloudtrail_million_events_per_month: float = field(
        default=1.0,
        metadata=_doc(
            "Millions of CloudTrail management events a month GuardDuty analyzes in the account and region of a "
            "detector (foundational threat detection, account-wide)."
        ),
    )
    guardduty_flow_dns_gb_per_month: float = field(
        default=5.0,
        metadata=_doc("GB a month of VPC flow logs and DNS query logs a GuardDuty detector analyzes (account-wide)."),
    )
    http_api_requests_per_day: float = field(
        default=10_000,
        metadata=_doc(
            "Requests a day per API Gateway HTTP API (metered in 512 KB increments: a larger request counts as several)."
        ),
    )
    overrides: tuple[UsageOverride, ...] = field(
        default=(),
        metadata=_doc(
            "Per-resource usage: a list of {match, usage}; `match` is a resource URN or an fnmatch pattern on "
            "resource names, `usage` any of the keys above. Later entries win; every entry must match a resource."
        ),
    )

    def __post_init__(self) -> None:
        if not all(isinstance(o, UsageOverride) for o in self.overrides):
            object.__setattr__(self, "overrides", _parse_overrides(self.overrides, "assumptions"))
        problems = [
            p
            for f in dataclasses.fields(self)
            if f.name != "overrides" and (p := _assumption_problem(f.name, getattr(self, f.name)))
        ]
        if problems:
            raise CostError("invalid cost assumptions:\n" + "\n".join(f"  - {p}" for p in problems))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], origin: str = "assumptions") -> Assumptions:
        """Assumptions from a mapping of field names to values; unknown keys and bad values name the key."""
        if not isinstance(data, Mapping):
            raise CostError(f"{origin}: expected an object of assumption names to values, got {type(data).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise CostError(f"{origin}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        values = dict(data)
        if "overrides" in values:
            values["overrides"] = _parse_overrides(values["overrides"], origin)
        try:
            return cls(**values)
        except CostError as error:
            raise CostError(f"{origin}: {error}") from None

    @classmethod
    def from_file(cls, path: Path | str) -> Assumptions:
        """Assumptions from a JSON file holding one object (see docs/cost.md for the keys)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise CostError(f"{path}: cannot be read ({error.strerror})") from error
        except json.JSONDecodeError as error:
            raise CostError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from error
        return cls.from_mapping(data, str(path))

    def describe(self) -> list[tuple[str, Any, str]]:
        return [(f.name, getattr(self, f.name), f.metadata["doc"]) for f in dataclasses.fields(self)]

    def to_json(self) -> dict[str, Any]:
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["overrides"] = [o.to_json() for o in self.overrides]
        return values

    def for_resource(self, urn: str, name: str) -> Assumptions:
        """These assumptions with the usage of every override matching the resource applied (later ones win)."""
        usage: dict[str, Any] = {}
        for override in self.overrides:
            if override.matches(urn, name):
                usage.update(override.usage)
        return dataclasses.replace(self, **usage) if usage else self


USAGE_KEYS = tuple(f.name for f in dataclasses.fields(Assumptions) if f.name != "overrides")


@dataclass(frozen=True)
class UsageOverride:
    """Usage assumptions for the resources `match` selects: an exact URN, or an fnmatch pattern on names."""

    match: str
    usage_items: tuple[tuple[str, Any], ...]

    @property
    def usage(self) -> dict[str, Any]:
        return dict(self.usage_items)

    def matches(self, urn: str, name: str) -> bool:
        if self.match.startswith("urn:"):
            return urn == self.match
        return fnmatchcase(name, self.match)

    def to_json(self) -> dict[str, Any]:
        return {"match": self.match, "usage": self.usage}


def _parse_overrides(raw: Any, origin: str) -> tuple[UsageOverride, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise CostError(f"{origin}: overrides: expected a list of {{match, usage}} objects, got {type(raw).__name__}")
    parsed, problems = [], []
    for index, entry in enumerate(raw):
        where = f"overrides[{index}]"
        if not isinstance(entry, Mapping) or set(entry) != {"match", "usage"}:
            keys = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
            problems.append(f"{where}: {keys}; allowed: an object with exactly the keys match and usage")
            continue
        match, usage = entry["match"], entry["usage"]
        if not isinstance(match, str) or not match:
            problems.append(f"{where}.match: {match!r}; allowed: a resource URN or an fnmatch pattern on names")
        if not isinstance(usage, Mapping) or not usage:
            problems.append(f"{where}.usage: {usage!r}; allowed: an object of usage keys to values")
            continue
        unknown = sorted(set(usage) - set(USAGE_KEYS))
        if unknown:
            problems.append(f"{where}.usage: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(USAGE_KEYS)}")
        problems += [
            f"{where}.usage.{p}"
            for key, value in usage.items()
            if key in USAGE_KEYS and (p := _assumption_problem(key, value))
        ]
        if isinstance(match, str) and match:
            parsed.append(UsageOverride(match, tuple(usage.items())))
    if problems:
        raise CostError(f"{origin}: invalid overrides:\n" + "\n".join(f"  - {p}" for p in problems))
    return tuple(parsed)


def check_overrides_match(assumptions: Assumptions, nodes: Sequence[Node]) -> None:
    """Every override must select at least one resource: a pattern matching nothing is most likely a typo."""
    problems = []
    for index, override in enumerate(assumptions.overrides):
        if not any(override.matches(n.urn, n.name) for n in nodes):
            kind = "URN" if override.match.startswith("urn:") else "name pattern"
            sample = ", ".join(sorted({n.name for n in nodes if n.type != "pulumi:pulumi:Stack"})[:5]) or "none"
            problems.append(
                f"overrides[{index}].match {override.match!r}: the {kind} matches no resource; allowed: an exact URN "
                f"or an fnmatch pattern on resource names (names here include {sample}, ...)"
            )
    if problems:
        raise CostError("cost assumptions:\n" + "\n".join(f"  - {p}" for p in problems))


def _assumption_problem(name: str, value: Any) -> str | None:
    if name == "average_tasks":
        if value in AVERAGE_TASK_MODES or (_is_number(value) and 0 <= value <= 1):
            return None
        return f"average_tasks: {value!r}; allowed: min, desired, max or a fraction from 0 to 1"
    if not _is_number(value) or value < 0:
        return f"{name}: {value!r}; allowed: a number >= 0"
    if name == "hours_per_day" and value > 24:
        return f"hours_per_day: {value!r}; allowed: 0 to 24"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- Prices -----------------------------------------------------------------------------------------------


class MissingPrice(LookupError):
    """The price table has no figure for a key in this region."""


@dataclass(frozen=True)
class Prices:
    """One region's price figures: key -> USD per unit."""

    region: str
    figures: Mapping[str, Mapping[str, Any]]

    def usd(self, key: str) -> float:
        figure = self.figures.get(key)
        if figure is None:
            raise MissingPrice(f"no price for '{key}' in {self.region} (add it to {PRICES_FILE.name})")
        return float(figure["usd"])


@cache
def price_table(path: Path = PRICES_FILE) -> Mapping[str, Any]:
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CostError(f"{path}: the price table cannot be read ({error})") from error
    return table


def prices_for(region: str) -> Prices:
    regions = price_table()["regions"]
    if region not in regions:
        raise CostError(f"region {region!r} has no prices in {PRICES_FILE.name}; priced regions: {', '.join(regions)}")
    return Prices(region=region, figures=regions[region])


# --- The resource graph -----------------------------------------------------------------------------------


class ResourceLike(Protocol):
    """A recorded resource (`runner.records.ResourceRecord`: .type, .inputs, .parent URN) or a policy resource
    (`pulumi_policy.PolicyResource`: .resource_type, .props, .parent resource); `node()` adapts both."""

    @property
    def urn(self) -> str: ...
    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class Node:
    urn: str
    type: str
    name: str
    parent: str | None
    props: Mapping[str, Any]
    custom: bool | None = None


def node(resource: Any) -> Node:
    type_ = getattr(resource, "resource_type", None) or resource.type
    props = getattr(resource, "props", None)
    if props is None:
        props = getattr(resource, "inputs", None) or {}
    parent = getattr(resource, "parent", None)
    if parent is not None and not isinstance(parent, str):
        parent = parent.urn
    custom = getattr(resource, "custom", None)
    return Node(resource.urn, type_, resource.name, parent, props, custom if isinstance(custom, bool) else None)


class Unknown(Exception):
    """An input needed for the price is not known (preview)."""


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping) and value.get(_SECRET_SIG_KEY) == _SECRET_SIG_VALUE:
        value = value.get("value")
    if value == _UNKNOWN_VALUE:
        raise Unknown
    return value


def prop(resource: Node, *path: str) -> Any:
    """A nested input, secrets unwrapped; None when absent; `Unknown` when not known until apply."""
    value: Any = resource.props
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = _plain(value.get(key))
        if value is None:
            return None
    return value


def items(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        return [_plain(value)]
    return [_plain(v) for v in value]


def number(value: Any, default: float | None = None) -> float | None:
    value = _plain(value)
    if value is None or isinstance(value, bool):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def truthy(value: Any) -> bool:
    value = _plain(value)
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _identities(resource: Node, *keys: str) -> set[str]:
    found = {resource.name}
    for key in keys:
        value = prop(resource, key)
        if isinstance(value, str) and value:
            found.add(value)
    return found


def refers_to(reference: Any, resource: Node, *keys: str) -> bool:
    """Whether an id/name/ARN string names `resource` (by logical name or one of its `keys` inputs)."""
    if not isinstance(reference, str) or not reference:
        return False
    return any(
        reference == ident or reference.endswith((f"/{ident}", f":{ident}")) for ident in _identities(resource, *keys)
    )


# --- Results ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    item: str
    quantity: float
    """Units a month."""
    unit: str
    unit_price: float
    note: str | None = None
    key: str | None = None
    """The price table key it is priced on (what the account free tier is matched against)."""
    low_unit_price: float | None = None
    """The cheapest plausible unit price when the price is a range (Fargate Spot); `unit_price` is the dearest."""

    @property
    def per_month(self) -> float:
        return self.quantity * self.unit_price

    @property
    def per_month_low(self) -> float:
        return self.quantity * (self.unit_price if self.low_unit_price is None else self.low_unit_price)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "item": self.item,
            "quantity": round(self.quantity, 6),
            "unit": self.unit,
            "unit_price": self.unit_price,
            "per_month": round(self.per_month, 4),
        }
        if self.key:
            out["key"] = self.key
        if self.low_unit_price is not None:
            out["low_unit_price"] = self.low_unit_price
            out["per_month_low"] = round(self.per_month_low, 4)
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class FreeTierDeduction:
    """One account-level free tier allowance taken off the estimate (never attributed to a resource)."""

    item: str
    quantity: float
    unit: str
    unit_price: float
    term: str
    """`always` (always free) or `12 months` (new accounts only)."""

    @property
    def per_month(self) -> float:
        return self.quantity * self.unit_price

    def to_json(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "quantity": round(self.quantity, 6),
            "unit": self.unit,
            "unit_price": self.unit_price,
            "per_month": round(self.per_month, 4),
            "term": self.term,
        }


@dataclass(frozen=True)
class Free:
    reason: str


@dataclass(frozen=True)
class Unpriced:
    reason: str


Outcome = list[Line] | Free | Unpriced


@dataclass(frozen=True)
class ResourceCost:
    urn: str
    type: str
    name: str
    component: str | None
    lines: list[Line]

    @property
    def per_month(self) -> float:
        return sum(line.per_month for line in self.lines)

    @property
    def per_month_low(self) -> float:
        return sum(line.per_month_low for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "component": self.component,
            "per_month": round(self.per_month, 4),
            "lines": [line.to_json() for line in self.lines],
        }


@dataclass(frozen=True)
class CostEstimate:
    region: str
    assumptions: Assumptions
    resources: list[ResourceCost]
    free: list[dict[str, str]]
    unpriced: list[dict[str, str]]
    currency: str = "USD"
    free_tier: list[FreeTierDeduction] = field(default_factory=list)
    """Account free tier taken off the total (only with `estimate(..., free_tier=...)`)."""
    free_tier_mode: str = "none"

    @property
    def free_tier_total(self) -> float:
        return sum(d.per_month for d in self.free_tier)

    @property
    def per_month(self) -> float:
        """The point estimate: the dearest end of every price range (what the budget policy compares)."""
        return sum(r.per_month for r in self.resources) - self.free_tier_total

    @property
    def per_month_low(self) -> float:
        """The cheapest end: every price range at its low bound (Fargate Spot at its largest discount)."""
        return sum(r.per_month_low for r in self.resources) - self.free_tier_total

    @property
    def per_day(self) -> float:
        return self.per_month / DAYS_PER_MONTH

    @property
    def per_day_low(self) -> float:
        return self.per_month_low / DAYS_PER_MONTH

    @property
    def is_range(self) -> bool:
        return round(self.per_month_low, 4) != round(self.per_month, 4)

    @property
    def by_component(self) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for resource in self.resources:
            totals[resource.component or NO_COMPONENT] += resource.per_month
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def by_type(self) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for resource in self.resources:
            totals[resource.type] += resource.per_month
        return dict(totals)

    def to_json(self) -> dict[str, Any]:
        """The report's `cost` section."""
        return {
            "currency": self.currency,
            "region": self.region,
            "per_day": round(self.per_day, 4),
            "per_month": round(self.per_month, 4),
            "range": {
                "per_day": [round(self.per_day_low, 4), round(self.per_day, 4)],
                "per_month": [round(self.per_month_low, 4), round(self.per_month, 4)],
                "point": "high",
            },
            "resources": [r.to_json() for r in self.resources],
            "unpriced": self.unpriced,
            "free": self.free,
            "free_tier": {
                "mode": self.free_tier_mode,
                "per_month": round(self.free_tier_total, 4),
                "deductions": [d.to_json() for d in self.free_tier],
            },
            "by_component": {k: round(v, 4) for k, v in self.by_component.items()},
            "assumptions": self.assumptions.to_json(),
        }

    def render_text(self) -> str:
        lines = [f"Estimated cost ({self.currency}, {self.region}, list prices; assumptions in docs/cost.md):"]
        lines.append("  Per resource (per month):")
        for resource in sorted(self.resources, key=lambda r: -r.per_month):
            where = f"  [{resource.component}]" if resource.component else ""
            lines.append(f"    {_usd(resource.per_month):>10}  {resource.type}  {resource.name}{where}")
            for line in resource.lines:
                detail = f"{line.quantity:,.4g} {line.unit} x ${line.unit_price:g}"
                note = f"  ({line.note})" if line.note else ""
                lines.append(f"    {'':>10}    {line.item}: {detail} = {_usd(line.per_month)}{note}")
        lines.append("  Per component (per month / per day):")
        for component, month in self.by_component.items():
            lines.append(f"    {_usd(month):>10}  {_usd(month / DAYS_PER_MONTH):>8}  {component}")
        if self.unpriced:
            lines.append(f"  Not priced ({len(self.unpriced)}): the total leaves these out")
            lines += [f"    {u['type']}  {u['name']}: {u['reason']}" for u in self.unpriced]
        free_types = sorted({f["type"] for f in self.free})
        lines.append(f"  Free ({len(self.free)} resources): {', '.join(free_types) or 'none'}")
        if self.free_tier:
            lines.append(f"  Account free tier ({self.free_tier_mode}), taken off the total once:")
            for deduction in self.free_tier:
                detail = f"{deduction.quantity:,.4g} {deduction.unit} x ${deduction.unit_price:g}"
                lines.append(f"    {_usd(-deduction.per_month):>10}  {deduction.item}: {detail} ({deduction.term})")
        lines.append(f"  Total: {_usd(self.per_day)}/day, {_usd(self.per_month)}/month")
        if self.is_range:
            lines.append(
                f"  Range: {_usd(self.per_day_low)}-{_usd(self.per_day)}/day, "
                f"{_usd(self.per_month_low)}-{_usd(self.per_month)}/month (Fargate Spot {_spot_range_text(self)}; "
                "the total above is the high end)"
            )
        return "\n".join(lines)


NO_COMPONENT = "(no component)"


def _usd(value: float) -> str:
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


def _spot_range_text(cost: CostEstimate) -> str:
    low, high = spot_discounts(prices_for(cost.region))
    return f"{low:.0%}-{high:.0%} off on-demand"


# --- Pricing context --------------------------------------------------------------------------------------


@dataclass
class Context:
    nodes: list[Node]
    prices: Prices
    assumptions: Assumptions
    """The assumptions of the resource being priced (the stack's, with its overrides applied)."""
    _by_type: dict[str, list[Node]] = field(default_factory=dict)
    _stack_assumptions: Assumptions | None = None

    def __post_init__(self) -> None:
        by_type: dict[str, list[Node]] = defaultdict(list)
        for n in self.nodes:
            by_type[n.type].append(n)
        self._by_type = dict(by_type)
        self._stack_assumptions = self.assumptions

    def for_resource(self, resource: Node) -> Context:
        """This context with `assumptions` for `resource` (its usage overrides applied); indexes are shared."""
        stack = self._stack_assumptions or self.assumptions
        assumptions = stack.for_resource(resource.urn, resource.name)
        if assumptions is self.assumptions:
            return self
        view = copy.copy(self)
        view.assumptions = assumptions
        return view

    def of_type(self, type_: str) -> list[Node]:
        return self._by_type.get(type_, [])

    def has_children(self, resource: Node) -> bool:
        return any(n.parent == resource.urn for n in self.nodes)

    @property
    def hours_per_month(self) -> float:
        return self.assumptions.hours_per_day * DAYS_PER_MONTH

    def line(self, item: str, quantity: float, key: str, note: str | None = None) -> Line:
        """A line of `quantity` units a month at the table's price for `key`."""
        figure = self.prices.figures.get(key)
        unit = str(figure["per"]) if figure else "unit"
        return Line(item, quantity, unit, self.prices.usd(key), note, key)

    def hourly(self, item: str, count: float, key: str, note: str | None = None) -> Line:
        return self.line(item, count * self.hours_per_month, key, note)

    def monthly(self, item: str, count: float, key: str, note: str | None = None) -> Line:
        return self.line(item, count, key, note)

    def daily(self, item: str, per_day: float, key: str, note: str | None = None) -> Line:
        return self.line(item, per_day * DAYS_PER_MONTH, key, note)


Pricer = Callable[[Node, Context], Outcome]
PRICERS: dict[str, Pricer] = {}


def prices(*types: str) -> Callable[[Pricer], Pricer]:
    def register(pricer: Pricer) -> Pricer:
        for type_ in types:
            PRICERS[type_] = pricer
        return pricer

    return register


# --- Free types -------------------------------------------------------------------------------------------

FREE_TYPES: Mapping[str, str] = {
    **dict.fromkeys(
        (
            "aws:iam/role:Role",
            "aws:iam/policy:Policy",
            "aws:iam/rolePolicy:RolePolicy",
            "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
            "aws:iam/instanceProfile:InstanceProfile",
            "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
            "aws:iam/serviceLinkedRole:ServiceLinkedRole",
            "aws:iam/user:User",
            "aws:iam/userPolicy:UserPolicy",
            "aws:iam/group:Group",
        ),
        "IAM has no charge",
    ),
    **dict.fromkeys(
        (
            "aws:ec2/securityGroup:SecurityGroup",
            "aws:ec2/securityGroupRule:SecurityGroupRule",
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
            "aws:ec2/vpc:Vpc",
            "aws:ec2/subnet:Subnet",
            "aws:ec2/routeTable:RouteTable",
            "aws:ec2/route:Route",
            "aws:ec2/routeTableAssociation:RouteTableAssociation",
            "aws:ec2/internetGateway:InternetGateway",
            "aws:ec2/networkAcl:NetworkAcl",
            "aws:ec2/networkAclRule:NetworkAclRule",
            "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
            "aws:ec2/defaultNetworkAcl:DefaultNetworkAcl",
            "aws:ec2/defaultRouteTable:DefaultRouteTable",
            "aws:ec2/networkInterface:NetworkInterface",
        ),
        "network configuration has no charge (traffic is priced on NAT gateways and endpoints)",
    ),
    **dict.fromkeys(
        (
            "aws:lb/listener:Listener",
            "aws:lb/listenerRule:ListenerRule",
            "aws:lb/targetGroup:TargetGroup",
            "aws:lb/targetGroupAttachment:TargetGroupAttachment",
            "aws:lb/listenerCertificate:ListenerCertificate",
            "aws:acm/certificate:Certificate",
            "aws:acm/certificateValidation:CertificateValidation",
            "aws:route53/record:Record",
        ),
        "priced on the load balancer / hosted zone it belongs to",
    ),
    **dict.fromkeys(
        (
            "aws:ecs/taskDefinition:TaskDefinition",
            "aws:ec2/launchTemplate:LaunchTemplate",
            "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders",
            "aws:appautoscaling/target:Target",
            "aws:appautoscaling/scheduledAction:ScheduledAction",
            "aws:servicediscovery/service:Service",
            "aws:servicediscovery/httpNamespace:HttpNamespace",
        ),
        "a definition: the tasks or instances it runs are priced on the ECS service / Auto Scaling group",
    ),
    **dict.fromkeys(
        (
            "aws:cloudwatch/eventRule:EventRule",
            "aws:cloudwatch/eventTarget:EventTarget",
            "aws:cloudwatch/logResourcePolicy:LogResourcePolicy",
            "aws:cloudwatch/logSubscriptionFilter:LogSubscriptionFilter",
            "aws:cloudwatch/logDataProtectionPolicy:LogDataProtectionPolicy",
        ),
        "no charge of its own (events from AWS services are free; logs are priced on their log group)",
    ),
    **dict.fromkeys(
        (
            "aws:kms/alias:Alias",
            "aws:kms/keyPolicy:KeyPolicy",
            "aws:kms/grant:Grant",
            "aws:secretsmanager/secretVersion:SecretVersion",
            "aws:secretsmanager/secretPolicy:SecretPolicy",
            "aws:secretsmanager/secretRotation:SecretRotation",
        ),
        "priced on its key / secret",
    ),
    **dict.fromkeys(
        (
            "aws:s3/bucketPolicy:BucketPolicy",
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
            "aws:s3/bucketVersioning:BucketVersioning",
            "aws:s3/bucketVersioningV2:BucketVersioningV2",
            "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
            "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2",
            "aws:s3/bucketLogging:BucketLogging",
            "aws:s3/bucketLoggingV2:BucketLoggingV2",
            "aws:s3/bucketNotification:BucketNotification",
            "aws:ecr/lifecyclePolicy:LifecyclePolicy",
            "aws:ecr/repositoryPolicy:RepositoryPolicy",
            "aws:sqs/queuePolicy:QueuePolicy",
            "aws:sqs/redrivePolicy:RedrivePolicy",
            "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy",
            "aws:efs/mountTarget:MountTarget",
            "aws:efs/accessPoint:AccessPoint",
            "aws:efs/fileSystemPolicy:FileSystemPolicy",
            "aws:rds/subnetGroup:SubnetGroup",
            "aws:rds/parameterGroup:ParameterGroup",
            "aws:rds/optionGroup:OptionGroup",
            "aws:elasticache/subnetGroup:SubnetGroup",
            "aws:elasticache/parameterGroup:ParameterGroup",
            "aws:lambda/permission:Permission",
            "aws:lambda/alias:Alias",
        ),
        "configuration of a resource priced on its own",
    ),
    **dict.fromkeys(
        ("aws:sns/topic:Topic", "aws:sns/topicSubscription:TopicSubscription", "aws:sns/topicPolicy:TopicPolicy"),
        "SNS bills per publish and delivery beyond a monthly free tier (1M publishes, 1,000 emails); alert volumes stay inside it",
    ),
    "aws:ecr/pullThroughCacheRule:PullThroughCacheRule": (
        "a pull-through cache rule has no charge; the images it caches are priced as ECR storage and transfer"
    ),
    **dict.fromkeys(
        ("docker-build:index:Image", "docker:index/image:Image", "docker:index/registryImage:RegistryImage"),
        "built outside AWS; its storage is priced on the ECR repository",
    ),
    **dict.fromkeys(
        (
            "aws:apigatewayv2/stage:Stage",
            "aws:apigatewayv2/route:Route",
            "aws:apigatewayv2/integration:Integration",
            "aws:apigatewayv2/authorizer:Authorizer",
            "aws:apigatewayv2/apiMapping:ApiMapping",
            "aws:apigatewayv2/domainName:DomainName",
            "aws:apigatewayv2/deployment:Deployment",
        ),
        "configuration of an API: requests are priced on the API (custom domains and JWT authorizers have no charge)",
    ),
    "aws:apigatewayv2/vpcLink:VpcLink": "VPC links for HTTP APIs have no charge (REST API VPC links bill their NLB)",
    "aws:lambda/invocation:Invocation": "one call of its function per deploy that changes it, priced on the function",
    "aws:scheduler/schedule:Schedule": (
        "EventBridge Scheduler: the first 14 million invocations a month are free (then $1 per million); what it "
        "stops is priced for its running hours"
    ),
    "aws:autoscaling/schedule:Schedule": (
        "a scheduled action has no charge; the group's instances are priced for their running hours"
    ),
    **dict.fromkeys(
        (
            "aws:cloudfront/originAccessControl:OriginAccessControl",
            "aws:cloudfront/cachePolicy:CachePolicy",
            "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy",
            "aws:cloudfront/originRequestPolicy:OriginRequestPolicy",
            "aws:cloudwatch/logDeliverySource:LogDeliverySource",
            "aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination",
        ),
        "configuration of a CloudFront distribution or a log delivery: no charge of its own",
    ),
    "aws:cloudfront/distribution:Distribution": (
        "CloudFront's always-free tier (1 TB out, 10M requests and 2M function calls a month) covers a console's "
        "traffic; beyond it $0.085/GB and $0.01 per 10,000 HTTPS requests (North America and Europe)"
    ),
    "aws:s3/bucketObjectv2:BucketObjectv2": "an object in a bucket: storage is priced on the bucket",
    "aws:cloudfront/function:Function": "CloudFront Functions: 2M invocations a month free, then $0.10 per million",
    "aws:cloudwatch/logDelivery:LogDelivery": (
        "vended CloudFront logs to S3 bill $0.25/GB delivered; a console's access logs are megabytes a month"
    ),
    "pulumi:pulumi:Stack": "the stack itself",
}
FREE_PACKAGES: Mapping[str, str] = {
    "random": "generated locally by the provider",
    "tls": "generated locally by the provider",
}


def _free_reason(resource: Node, ctx: Context) -> str | None:
    if resource.type in FREE_TYPES:
        return FREE_TYPES[resource.type]
    if resource.type.startswith("pulumi:providers:"):
        return "a provider configuration"
    package = resource.type.split(":", 1)[0]
    if package in FREE_PACKAGES:
        return FREE_PACKAGES[package]
    if resource.custom is False or ctx.has_children(resource):
        return "a component: its children are priced"
    return None


# --- Office hours ---------------------------------------------------------------------------------------
# Schedules in the graph that stop and start a resource (components/office_hours.py, AWS Instance Scheduler's
# lever): each resource's hourly charges are priced for the hours a week it runs. Time zones do not change a
# weekly fraction, so they are not read.

SCHEDULER_SCHEDULE = "aws:scheduler/schedule:Schedule"
SCHEDULED_ACTION = "aws:appautoscaling/scheduledAction:ScheduledAction"
GROUP_SCHEDULE = "aws:autoscaling/schedule:Schedule"
RDS_UNIVERSAL_TARGET = re.compile(r"^arn:aws[a-z-]*:scheduler:::aws-sdk:rds:(stop|start)DBInstance$")
MINUTES_PER_DAY = 24 * 60
HOURS_PER_WEEK = 7 * 24
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


def _day(token: str, aws: bool) -> int:
    """A day-of-week token as 0 (Sunday) to 6: a name, AWS's 1-7 from Sunday or Unix's 0-7 (7 is Sunday too)."""
    if token.upper() in DAY_NAMES:
        return DAY_NAMES.index(token.upper())
    if not token.isdigit() or not (1 <= int(token) <= 7 if aws else 0 <= int(token) <= 7):
        raise ValueError(f"day of week {token!r}")
    return (int(token) - 1) % 7 if aws else int(token) % 7


def _days_of_week(field_: str, aws: bool) -> set[int]:
    if field_ in ("*", "?"):
        return set(range(7))
    days: set[int] = set()
    for part in field_.split(","):
        first, _, last = part.partition("-")
        start, end = _day(first, aws), _day(last or first, aws)
        if end < start:
            raise ValueError(f"day range {part!r}")
        days.update(range(start, end + 1))
    return days


def cron_times(expression: str) -> list[int]:
    """Minutes into the week (Monday 00:00 is 0) at which a cron expression fires, for the forms that start and
    stop a resource: AWS's `cron(m h ? * dow *)` (EventBridge Scheduler, Application Auto Scaling) or Unix's
    `m h * * dow` (EC2 Auto Scaling), a fixed minute and hour, every day of the month, days of the week as names
    or numbers with lists and ranges. ValueError for anything else."""
    text = expression.strip()
    aws = text.startswith("cron(") and text.endswith(")")
    fields = text[5:-1].split() if aws else text.split()
    if len(fields) != (6 if aws else 5):
        raise ValueError(f"{expression!r}: not a {'6' if aws else '5'}-field cron expression")
    minute, hour, day_of_month, month, day_of_week = fields[:5]
    if not (minute.isdigit() and hour.isdigit() and int(minute) < 60 and int(hour) < 24):
        raise ValueError(f"{expression!r}: only a fixed minute and hour are read")
    if day_of_month not in ("*", "?") or month != "*" or (aws and fields[5] not in ("*", "?")):
        raise ValueError(f"{expression!r}: only every day of the month, every month and every year are read")
    at = int(hour) * 60 + int(minute)
    return sorted(((day + 6) % 7) * MINUTES_PER_DAY + at for day in _days_of_week(day_of_week, aws))


def running_fraction(starts: Iterable[int], stops: Iterable[int]) -> float:
    """Share of the week between each start and the next stop (minutes into the week; the week wraps)."""
    events = sorted([(minute, True) for minute in starts] + [(minute, False) for minute in stops])
    if not any(on for _, on in events) or all(on for _, on in events):
        raise ValueError("a schedule needs both a start and a stop")
    week = 7 * MINUTES_PER_DAY
    running = 0
    for index, (minute, on) in enumerate(events):
        following = events[(index + 1) % len(events)][0] + (week if index + 1 == len(events) else 0)
        if on:
            running += following - minute
    return running / week


@dataclass(frozen=True)
class RunningHours:
    """The share of the week a scheduled resource runs."""

    fraction: float
    schedules: tuple[str, ...]

    @property
    def note(self) -> str:
        return f"office hours: {self.fraction * HOURS_PER_WEEK:g} h/week ({self.fraction:.0%})"

    def apply(self, line: Line) -> Line:
        """The line for the hours it runs."""
        note = f"{line.note}; {self.note}" if line.note else self.note
        return dataclasses.replace(line, quantity=line.quantity * self.fraction, note=note)


def _running_hours(schedules: Sequence[tuple[str, str, bool]]) -> RunningHours | None:
    """From (name, cron expression, starts) of one resource's schedules; None without a start and a stop (or with
    an expression this reader does not take: then the resource is priced as always on)."""
    times: dict[bool, list[int]] = {True: [], False: []}
    try:
        for _, expression, starts in schedules:
            times[starts] += cron_times(expression)
        fraction = running_fraction(times[True], times[False])
    except ValueError:
        return None
    return RunningHours(fraction, tuple(name for name, _, _ in schedules))


def _enabled(schedule: Node) -> bool:
    return str(prop(schedule, "state") or "ENABLED") == "ENABLED"


def database_running_hours(instance: Node, ctx: Context) -> RunningHours | None:
    """EventBridge Scheduler schedules that stop and start this instance through RDS's universal target."""
    names = _identities(instance, "identifier")
    found: list[tuple[str, str, bool]] = []
    for schedule in ctx.of_type(SCHEDULER_SCHEDULE):
        match = RDS_UNIVERSAL_TARGET.match(str(prop(schedule, "target", "arn") or ""))
        if not match or not _enabled(schedule):
            continue
        try:
            payload = json.loads(str(prop(schedule, "target", "input") or "{}"))
        except json.JSONDecodeError:
            continue
        if isinstance(payload, Mapping) and payload.get("DbInstanceIdentifier") in names:
            found.append((schedule.name, str(prop(schedule, "scheduleExpression")), match.group(1) == "start"))
    return _running_hours(found)


def service_running_hours(service: Node, ctx: Context) -> RunningHours | None:
    """Application Auto Scaling scheduled actions on the service's scalable target: a maximum of 0 stops it."""
    names = _identities(service, "name")
    found: list[tuple[str, str, bool]] = []
    for action in ctx.of_type(SCHEDULED_ACTION):
        resource_id = prop(action, "resourceId")
        if prop(action, "serviceNamespace") != "ecs" or not isinstance(resource_id, str):
            continue
        if resource_id.rsplit("/", 1)[-1] in names:
            maximum = number(prop(action, "scalableTargetAction", "maxCapacity"))
            if maximum is not None:
                found.append((action.name, str(prop(action, "schedule")), maximum > 0))
    return _running_hours(found)


def group_running_hours(group: Node, ctx: Context) -> RunningHours | None:
    """EC2 Auto Scaling scheduled actions on the group: a desired capacity of 0 stops its instances."""
    found: list[tuple[str, str, bool]] = []
    for schedule in ctx.of_type(GROUP_SCHEDULE):
        if not refers_to(prop(schedule, "autoscalingGroupName"), group, "name"):
            continue
        desired = number(prop(schedule, "desiredCapacity"), -1)
        size = desired if desired is not None and desired >= 0 else number(prop(schedule, "maxSize"), 0)
        found.append((schedule.name, str(prop(schedule, "recurrence")), bool(size)))
    return _running_hours(found)


def _for_hours(lines: list[Line], hours: RunningHours | None) -> list[Line]:
    return lines if hours is None else [hours.apply(line) for line in lines]


# --- ECS / Fargate ----------------------------------------------------------------------------------------

ECS_SERVICE = "aws:ecs/service:Service"
ECS_CLUSTER = "aws:ecs/cluster:Cluster"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SCALING_TARGET = "aws:appautoscaling/target:Target"
CAPACITY_PROVIDERS = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
FARGATE_PROVIDERS = ("FARGATE", "FARGATE_SPOT")
INCLUDED_EPHEMERAL_GB = 20


def task_definition_of(service: Node, ctx: Context) -> Node | None:
    reference = prop(service, "taskDefinition")
    if not isinstance(reference, str):
        return None
    family = re.sub(r":\d+$", "", reference.split("task-definition/")[-1])
    for candidate in ctx.of_type(TASK_DEFINITION):
        if refers_to(reference, candidate, "arn") or refers_to(family, candidate, "family"):
            return candidate
    return None


def scaling_range(service: Node, ctx: Context) -> tuple[float, float] | None:
    names = _identities(service, "name")
    for target in ctx.of_type(SCALING_TARGET):
        resource_id = prop(target, "resourceId")
        if prop(target, "serviceNamespace") != "ecs" or not isinstance(resource_id, str):
            continue
        if resource_id.rsplit("/", 1)[-1] in names:
            return number(prop(target, "minCapacity"), 0) or 0.0, number(prop(target, "maxCapacity"), 0) or 0.0
    return None


def average_tasks(service: Node, ctx: Context) -> tuple[float, str]:
    """Running tasks under the `average_tasks` assumption, and how it was chosen."""
    desired = number(prop(service, "desiredCount"), 0) or 0.0
    bounds = scaling_range(service, ctx)
    mode = ctx.assumptions.average_tasks
    if bounds is None:
        return desired, f"desiredCount {desired:g} (no autoscaling target)"
    low, high = bounds
    if mode == "desired":
        return min(max(desired, low), high), f"desiredCount {desired:g} within autoscaling {low:g}-{high:g}"
    if mode == "min":
        return low, f"autoscaling minimum {low:g}"
    if mode == "max":
        return high, f"autoscaling maximum {high:g}"
    fraction = float(mode)
    return low + fraction * (high - low), f"{fraction:g} of the way from {low:g} to {high:g}"


def capacity_strategy(service: Node, ctx: Context) -> list[tuple[str, float, float]]:
    """(provider, base, weight) for the service: its own strategy, else its cluster's default, else FARGATE."""
    strategy = items(prop(service, "capacityProviderStrategies"))
    if not strategy and not prop(service, "launchType"):
        cluster_ref = prop(service, "cluster")
        defaults = [
            c
            for c in ctx.of_type(CAPACITY_PROVIDERS)
            if refers_to(cluster_ref, c, "clusterName") or _names_same_cluster(cluster_ref, c, ctx)
        ]
        if len(defaults) == 1:
            strategy = items(prop(defaults[0], "defaultCapacityProviderStrategies"))
    parsed = [
        (str(_plain(s.get("capacityProvider"))), number(s.get("base"), 0) or 0.0, number(s.get("weight"), 0) or 0.0)
        for s in strategy
        if isinstance(s, Mapping)
    ]
    return parsed or [("FARGATE", 0.0, 1.0)]


def _names_same_cluster(cluster_ref: Any, providers: Node, ctx: Context) -> bool:
    cluster_name = prop(providers, "clusterName")
    return any(
        refers_to(cluster_ref, cluster, "name", "arn") and cluster_name in _identities(cluster, "name")
        for cluster in ctx.of_type(ECS_CLUSTER)
    )


def split_tasks(tasks: float, strategy: Sequence[tuple[str, float, float]]) -> dict[str, float]:
    """How ECS places `tasks` over capacity providers: each provider's base first, the rest by weight."""
    split = dict.fromkeys((provider for provider, _, _ in strategy), 0.0)
    remaining = tasks
    for provider, base, _ in strategy:
        placed = min(base, remaining)
        split[provider] += placed
        remaining -= placed
    total_weight = sum(weight for _, _, weight in strategy)
    for provider, _, weight in strategy:
        if total_weight > 0:
            split[provider] += remaining * weight / total_weight
    return split


def task_size(task_definition: Node) -> tuple[float, float] | None:
    """(vCPU, GB) of a task definition's task-level cpu/memory ("512" units / "0.5 vCPU"; "1024" MiB / "1 GB")."""
    cpu, memory = prop(task_definition, "cpu"), prop(task_definition, "memory")
    vcpu = _size(cpu, "vcpu", 1024)
    gb = _size(memory, "gb", 1024)
    return None if vcpu is None or gb is None else (vcpu, gb)


def _size(value: Any, unit: str, per_unit: float) -> float | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if text.endswith(unit):
        return number(text[: -len(unit)].strip())
    raw = number(text)
    return None if raw is None else raw / per_unit


@prices(ECS_SERVICE)
def price_ecs_service(service: Node, ctx: Context) -> Outcome:
    launch_type = prop(service, "launchType")
    if launch_type not in (None, "FARGATE"):
        return Unpriced(f"launchType {launch_type}: its tasks run on instances this estimate does not price")
    task_definition = task_definition_of(service, ctx)
    if task_definition is None:
        return Unpriced(f"task definition {prop(service, 'taskDefinition')!r} is not in the graph")
    size = task_size(task_definition)
    if size is None:
        return Unpriced(f"task definition {task_definition.name} has no task-level cpu and memory (Fargate needs both)")
    os_family = prop(task_definition, "runtimePlatform", "operatingSystemFamily") or "LINUX"
    if os_family != "LINUX":
        return Unpriced(f"operatingSystemFamily {os_family}: only Linux Fargate is in the price table")
    architecture = prop(task_definition, "runtimePlatform", "cpuArchitecture") or "X86_64"
    vcpu, gb = size
    tasks, how = average_tasks(service, ctx)
    hours = service_running_hours(service, ctx)
    lines: list[Line] = []
    for provider, count in split_tasks(tasks, capacity_strategy(service, ctx)).items():
        if provider not in FARGATE_PROVIDERS:
            return Unpriced(f"capacity provider {provider}: its tasks run on instances this estimate does not price")
        if count <= 0:
            continue
        note = f"{count:g} task(s) of {vcpu:g} vCPU / {gb:g} GB; {how}"
        vcpu_line = ctx.hourly(
            f"Fargate vCPU ({architecture}, {provider})", count * vcpu, f"fargate.vcpu.{architecture}.FARGATE", note
        )
        gb_line = ctx.hourly(
            f"Fargate memory ({architecture}, {provider})", count * gb, f"fargate.gb.{architecture}.FARGATE"
        )
        if provider == "FARGATE_SPOT":
            vcpu_line, gb_line = spot_priced(vcpu_line, ctx), spot_priced(gb_line, ctx)
        lines += [vcpu_line, gb_line]
    extra_storage = (number(prop(task_definition, "ephemeralStorage", "sizeInGib"), 0) or 0) - INCLUDED_EPHEMERAL_GB
    if extra_storage > 0 and tasks > 0:
        lines.append(
            ctx.hourly("Fargate ephemeral storage above 20 GB", tasks * extra_storage, "fargate.ephemeralStorage")
        )
    if truthy(prop(service, "networkConfiguration", "assignPublicIp")) and tasks > 0:
        lines.append(ctx.hourly("Public IPv4 address per task", tasks, "publicIpv4.hour"))
    lines = _for_hours(lines, hours)
    if prop(service, "serviceRegistries") and tasks > 0:
        lines.append(ctx.monthly("Cloud Map registered instances", tasks, "cloudmap.instance"))
    return lines or Free(f"runs no tasks ({how})")


def spot_discounts(prices: Prices) -> tuple[float, float]:
    """(smallest, largest) Fargate Spot discount off on-demand, as fractions."""
    low, high = prices.usd("fargate.spotDiscount.conservative"), prices.usd("fargate.spotDiscount.optimistic")
    if not 0 <= low <= high < 1:
        raise CostError(f"{PRICES_FILE.name}: fargate.spotDiscount must satisfy 0 <= conservative <= optimistic < 1")
    return low, high


def spot_priced(on_demand: Line, ctx: Context) -> Line:
    """An on-demand Fargate line re-priced for Spot: the conservative discount as the price, the largest as low."""
    low, high = spot_discounts(ctx.prices)
    spot_note = f"Spot {low:.0%}-{high:.0%} off on-demand, priced at {low:.0%}"
    return dataclasses.replace(
        on_demand,
        unit_price=on_demand.unit_price * (1 - low),
        low_unit_price=on_demand.unit_price * (1 - high),
        key=(on_demand.key or "").replace(".FARGATE", ".FARGATE_SPOT"),
        note=f"{on_demand.note}; {spot_note}" if on_demand.note else spot_note,
    )


def services_in_cluster(cluster: Node, ctx: Context) -> list[Node]:
    services = ctx.of_type(ECS_SERVICE)
    clusters = ctx.of_type(ECS_CLUSTER)
    if len(clusters) == 1:
        return services
    return [s for s in services if refers_to(prop(s, "cluster"), cluster, "name", "arn")]


@prices(ECS_CLUSTER)
def price_ecs_cluster(cluster: Node, ctx: Context) -> Outcome:
    settings = [s for s in items(prop(cluster, "settings")) if isinstance(s, Mapping)]
    mode = next((_plain(s.get("value")) for s in settings if _plain(s.get("name")) == "containerInsights"), None)
    if mode not in ("enabled", "enhanced"):
        return Free("Container Insights is off (an account-level default, if any, is not visible here)")
    a = ctx.assumptions
    # Container Insights emits metrics only for services with running tasks; CloudWatch bills a custom metric by the
    # hour it is published, so a service stopped outside office hours pays for the hours it runs.
    running: list[tuple[float, float]] = []
    scheduled: list[RunningHours] = []
    for service in services_in_cluster(cluster, ctx):
        count = average_tasks(service, ctx.for_resource(service))[0]
        hours = service_running_hours(service, ctx)
        if count > 0:
            running.append((count, hours.fraction if hours else 1.0))
            scheduled += [hours] if hours else []
    services, tasks = sum(share for _, share in running), sum(count * share for count, share in running)
    metrics = a.container_insights_metrics_per_cluster + a.container_insights_metrics_per_service * services
    note = f"{len(running)} service(s) with running tasks; billed as custom metrics, the first 10 per account are free"
    if scheduled:  # the per-service metrics for the hours those services run
        note += f"; {len(scheduled)} of them stopped outside {scheduled[0].note}"
    if mode == "enhanced":
        metrics += a.container_insights_metrics_per_task * tasks
        note += "; enhanced observability is billed per observation, modelled as per-task metrics"
    return [
        ctx.monthly(f"Container Insights metrics ({mode})", metrics, "cloudwatch.metric", note),
        ctx.daily(
            "Container Insights performance logs",
            tasks * a.container_insights_log_gb_per_task_per_day,
            "logs.ingest.standard",
        ),
    ]


# --- Load balancing and network ---------------------------------------------------------------------------


@prices("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
def price_load_balancer(balancer: Node, ctx: Context) -> Outcome:
    kind = prop(balancer, "loadBalancerType") or "application"
    if kind not in ("application", "network"):
        return Unpriced(f"loadBalancerType {kind} is not in the price table")
    lines = [
        ctx.hourly(f"{kind.capitalize()} load balancer", 1, f"lb.{kind}.hour"),
        ctx.hourly("Capacity units", ctx.assumptions.alb_lcu, f"lb.{kind}.capacityUnit", "assumed alb_lcu"),
    ]
    if not truthy(prop(balancer, "internal")):
        zones = len(items(prop(balancer, "subnets"))) or len(items(prop(balancer, "subnetMappings")))
        note = None if zones else "subnets not known: 2 zones assumed (the minimum)"
        lines.append(ctx.hourly("Public IPv4 addresses (one per zone)", zones or 2, "publicIpv4.hour", note))
    return lines


def _nat_count(ctx: Context) -> int:
    return len(ctx.of_type("aws:ec2/natGateway:NatGateway")) or 1


@prices("aws:ec2/natGateway:NatGateway")
def price_nat_gateway(gateway: Node, ctx: Context) -> Outcome:
    share = ctx.assumptions.nat_gb_per_day / _nat_count(ctx)
    return [
        ctx.hourly("NAT gateway", 1, "nat.hour"),
        ctx.daily("NAT data processed", share, "nat.gb", "assumed nat_gb_per_day, split across NAT gateways"),
    ]


@prices("aws:ec2/eip:Eip")
def price_elastic_ip(address: Node, ctx: Context) -> Outcome:
    return [ctx.hourly("Public IPv4 address", 1, "publicIpv4.hour")]


LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def launch_template_of(group: Node, ctx: Context) -> tuple[Node | None, str]:
    """The group's launch template: the one its id/name names, else the only one in the graph."""
    reference = prop(group, "launchTemplate", "id") or prop(group, "launchTemplate", "name")
    candidates = ctx.of_type(LAUNCH_TEMPLATE)
    named = [t for t in candidates if refers_to(reference, t, "name")]
    if len(named) == 1:
        return named[0], "named by the group"
    if len(candidates) == 1:
        return candidates[0], "the only launch template in the graph"
    return None, f"launch template {reference!r} is not identifiable in the graph"


@prices("aws:autoscaling/group:Group")
def price_autoscaling_group(group: Node, ctx: Context) -> Outcome:
    count = number(prop(group, "desiredCapacity"))
    count = number(prop(group, "minSize"), 0) if count is None else count
    if not count:
        return Free("runs no instances (desiredCapacity / minSize 0)")
    template, how = launch_template_of(group, ctx)
    if template is None:
        return Unpriced(how)
    instance_type = prop(template, "instanceType")
    if not isinstance(instance_type, str):
        return Unpriced(f"launch template {template.name} sets no instanceType")
    note = f"{count:g} instance(s), Linux on-demand; launch template {template.name} ({how})"
    # Scaled to 0 the instances are terminated: an auto-assigned public IPv4 address is released with them and
    # volumes deleted on termination go too; other volumes stay and bill in full.
    instance_lines = [ctx.hourly(f"EC2 {instance_type}", count, f"ec2.instance.{instance_type}", note)]
    interfaces = [n for n in items(prop(template, "networkInterfaces")) if isinstance(n, Mapping)]
    if any(truthy(n.get("associatePublicIpAddress")) for n in interfaces):
        instance_lines.append(ctx.hourly("Public IPv4 address per instance", count, "publicIpv4.hour"))
    kept: list[Line] = []
    for mapping in items(prop(template, "blockDeviceMappings")):
        ebs = mapping.get("ebs") if isinstance(mapping, Mapping) else None
        if not isinstance(ebs, Mapping):
            continue
        size = number(ebs.get("volumeSize"))
        volume_note = None if size else "size from the AMI: assumed ebs_root_volume_gb"
        volume_type = str(_plain(ebs.get("volumeType")) or "gp3")
        gb = count * (size or ctx.assumptions.ebs_root_volume_gb)
        volume = ctx.monthly(f"EBS {volume_type} volume", gb, f"ebs.{volume_type}", volume_note)
        (instance_lines if truthy(ebs.get("deleteOnTermination")) else kept).append(volume)
    return _for_hours(instance_lines, group_running_hours(group, ctx)) + kept


AWSX_NAT_STRATEGIES = {"none": 0, "single": 1}


@prices("awsx:ec2:Vpc")
def price_awsx_vpc(vpc: Node, ctx: Context) -> Outcome:
    if ctx.has_children(vpc):
        return Free("a component: its NAT gateways and addresses are priced as its children")
    strategy = str(prop(vpc, "natGateways", "strategy") or "OnePerAz")
    zones = len(items(prop(vpc, "availabilityZoneNames"))) or int(
        number(prop(vpc, "numberOfAvailabilityZones"), 3) or 3
    )
    gateways = AWSX_NAT_STRATEGIES.get(strategy.lower(), zones)
    if gateways == 0:
        return Free("natGateways strategy None: no NAT gateways")
    note = f"natGateways {strategy} over {zones} zone(s)"
    return [
        ctx.hourly("NAT gateways", gateways, "nat.hour", note),
        ctx.daily("NAT data processed", ctx.assumptions.nat_gb_per_day, "nat.gb", "assumed nat_gb_per_day"),
        ctx.hourly("Public IPv4 addresses of the NAT gateways", gateways, "publicIpv4.hour"),
    ]


@prices("aws:ec2/vpcEndpoint:VpcEndpoint")
def price_vpc_endpoint(endpoint: Node, ctx: Context) -> Outcome:
    kind = prop(endpoint, "vpcEndpointType") or "Gateway"
    if kind == "Gateway":
        return Free("gateway endpoints (S3, DynamoDB) have no charge")
    if kind != "Interface":
        return Unpriced(f"vpcEndpointType {kind} is not in the price table")
    zones = len(items(prop(endpoint, "subnetIds")))
    note = None if zones else "subnetIds not known: 1 zone assumed"
    return [
        ctx.hourly("Interface endpoint zones", zones or 1, "vpce.interface.hour", note),
        ctx.daily("Interface endpoint data", ctx.assumptions.vpc_endpoint_gb_per_day, "vpce.interface.gb"),
    ]


FLOW_LOG = "aws:ec2/flowLog:FlowLog"


@prices(FLOW_LOG)
def price_flow_log(flow_log: Node, ctx: Context) -> Outcome:
    destination = prop(flow_log, "logDestinationType") or "cloud-watch-logs"
    keys = {"cloud-watch-logs": "logs.ingest.vended", "s3": "logs.ingest.vendedToS3"}
    if destination not in keys:
        return Unpriced(f"logDestinationType {destination} is not in the price table")
    return [
        ctx.daily(
            f"Flow log delivery ({destination})",
            ctx.assumptions.flow_log_gb_per_day,
            keys[destination],
            "assumed flow_log_gb_per_day",
        )
    ]


@prices("aws:route53/zone:Zone", "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace",
        "aws:servicediscovery/publicDnsNamespace:PublicDnsNamespace")  # fmt: skip
def price_hosted_zone(zone: Node, ctx: Context) -> Outcome:
    return [ctx.monthly("Route 53 hosted zone", 1, "route53.hostedZone")]


# --- Data stores ------------------------------------------------------------------------------------------


@prices("aws:rds/instance:Instance")
def price_rds_instance(instance: Node, ctx: Context) -> Outcome:
    engine = str(prop(instance, "engine") or "")
    instance_class = prop(instance, "instanceClass")
    if engine not in ("postgres",):
        return Unpriced(f"engine {engine or '(not set)'}: only RDS for PostgreSQL is in the price table")
    multi_az = truthy(prop(instance, "multiAz"))
    copies = 2 if multi_az else 1
    deployment = "Multi-AZ: primary and standby" if multi_az else "Single-AZ"
    storage_type = str(prop(instance, "storageType") or ("io1" if prop(instance, "iops") else "gp2"))
    storage_gb = number(prop(instance, "allocatedStorage"), 0) or 0.0
    # A stopped instance bills its storage (and backups) but no instance hours.
    hourly = ctx.hourly(f"RDS {instance_class}", copies, f"rds.{engine}.{instance_class}", deployment)
    lines = [
        *_for_hours([hourly], database_running_hours(instance, ctx)),
        ctx.monthly(f"RDS storage ({storage_type})", storage_gb * copies, f"rds.storage.{storage_type}",
                    "allocated GB; backups up to the database size are free"),
    ]  # fmt: skip
    if truthy(prop(instance, "manageMasterUserPassword")):
        lines.append(ctx.monthly("Secrets Manager secret (RDS-managed master password)", 1, "secretsmanager.secret"))
    return lines


def _cache_price_key(resource: Node, ctx: Context) -> tuple[str, float, str]:
    node_type = prop(resource, "nodeType")
    engine = str(prop(resource, "engine") or "redis")
    ratio = ctx.prices.usd("elasticache.valkeyRatio") if engine == "valkey" else 1.0
    return f"elasticache.redis.{node_type}", ratio, f"{engine} {node_type}"


@prices("aws:elasticache/replicationGroup:ReplicationGroup")
def price_replication_group(group: Node, ctx: Context) -> Outcome:
    key, ratio, label = _cache_price_key(group, ctx)
    clusters = number(prop(group, "numCacheClusters"))
    if clusters is None:
        shards = number(prop(group, "numNodeGroups"), 1) or 1.0
        clusters = shards * ((number(prop(group, "replicasPerNodeGroup"), 0) or 0) + 1)
    note = f"{clusters:g} node(s)" + (f"; Valkey at {ratio:g} x the Redis OSS price" if ratio != 1 else "")
    return [ctx.hourly(f"ElastiCache nodes ({label})", clusters * ratio, key, note)]


@prices("aws:elasticache/cluster:Cluster")
def price_cache_cluster(cluster: Node, ctx: Context) -> Outcome:
    if prop(cluster, "replicationGroupId"):
        return Free("a member of a replication group, priced there")
    key, ratio, label = _cache_price_key(cluster, ctx)
    nodes = number(prop(cluster, "numCacheNodes"), 1) or 1.0
    return [ctx.hourly(f"ElastiCache nodes ({label})", nodes * ratio, key, f"{nodes:g} node(s)")]


@prices("aws:efs/fileSystem:FileSystem")
def price_file_system(file_system: Node, ctx: Context) -> Outcome:
    a = ctx.assumptions
    one_zone = bool(prop(file_system, "availabilityZoneName"))
    storage_class = "oneZone" if one_zone else "standard"
    lines = [
        ctx.monthly(
            f"EFS storage ({'One Zone' if one_zone else 'Standard'})",
            a.efs_gb,
            f"efs.storage.{storage_class}",
            "assumed efs_gb",
        )
    ]
    mode = prop(file_system, "throughputMode") or "bursting"
    if mode == "provisioned":
        mibps = number(prop(file_system, "provisionedThroughputInMibps"), 0) or 0.0
        lines.append(ctx.monthly("EFS provisioned throughput", mibps, "efs.provisionedThroughput"))
    elif mode == "elastic":
        lines.append(ctx.daily("EFS elastic reads", a.efs_read_gb_per_day, "efs.elastic.read"))
        lines.append(ctx.daily("EFS elastic writes", a.efs_write_gb_per_day, "efs.elastic.write"))
    return lines


@prices("aws:efs/backupPolicy:BackupPolicy")
def price_efs_backup(policy: Node, ctx: Context) -> Outcome:
    if prop(policy, "backupPolicy", "status") != "ENABLED":
        return Free("backups disabled")
    return [
        ctx.monthly("AWS Backup of EFS (warm storage)", ctx.assumptions.efs_gb, "backup.efs.warm", "assumed efs_gb")
    ]


@prices("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
def price_bucket(bucket: Node, ctx: Context) -> Outcome:
    return [
        ctx.monthly("S3 Standard storage", ctx.assumptions.s3_gb, "s3.standard", "assumed s3_gb; requests not priced")
    ]


@prices("aws:ecr/repository:Repository")
def price_repository(repository: Node, ctx: Context) -> Outcome:
    return [ctx.monthly("ECR image storage", ctx.assumptions.ecr_gb, "ecr.storage", "assumed ecr_gb")]


@prices("aws:sqs/queue:Queue")
def price_queue(queue: Node, ctx: Context) -> Outcome:
    kind = "fifo" if truthy(prop(queue, "fifoQueue")) else "standard"
    requests = ctx.assumptions.sqs_requests_per_day / 1_000_000
    return [
        ctx.daily(
            f"SQS requests ({kind})",
            requests,
            f"sqs.{kind}",
            "assumed sqs_requests_per_day; first 1M a month per account free",
        )
    ]


# --- API Gateway ------------------------------------------------------------------------------------------


@prices("aws:apigatewayv2/api:Api")
def price_api(api: Node, ctx: Context) -> Outcome:
    protocol = str(prop(api, "protocolType") or "")
    if protocol != "HTTP":
        return Unpriced(f"a {protocol or 'WEBSOCKET'} API bills messages and connection minutes, not priced here")
    return [
        ctx.daily(
            "API Gateway HTTP API requests",
            ctx.assumptions.http_api_requests_per_day / 1_000_000,
            "apigateway.http.requests",
            "assumed http_api_requests_per_day; first 300M a month tier; access logs priced on their log group",
        )
    ]


# --- Keys, secrets, monitoring ----------------------------------------------------------------------------


DEFAULT_ROTATION_DAYS = 365
BILLED_ROTATIONS = 2
"""Since April 2024 only a key's first and second rotation add to its monthly price."""


@prices("aws:kms/key:Key", "aws:kms/replicaKey:ReplicaKey")
def price_kms_key(key: Node, ctx: Context) -> Outcome:
    if not truthy(prop(key, "enableKeyRotation")):
        return [ctx.monthly("KMS customer managed key", 1, "kms.key")]
    period = number(prop(key, "rotationPeriodInDays"), DEFAULT_ROTATION_DAYS) or DEFAULT_ROTATION_DAYS
    age = ctx.assumptions.kms_key_age_days
    rotations = min(BILLED_ROTATIONS, math.floor(age / period))
    rotation_note = (
        f"rotates every {period:g} days; key age {age:g} days (kms_key_age_days): {rotations} rotation(s) billed"
    )
    lines = [ctx.monthly("KMS customer managed key", 1, "kms.key", rotation_note)]
    if rotations > 0:
        lines.append(
            ctx.monthly("KMS rotated key material", rotations, "kms.rotation", "first and second rotation only")
        )
    return lines


@prices("aws:secretsmanager/secret:Secret")
def price_secret(secret: Node, ctx: Context) -> Outcome:
    return [ctx.monthly("Secrets Manager secret", 1, "secretsmanager.secret")]


@prices("aws:ssm/parameter:Parameter")
def price_parameter(parameter: Node, ctx: Context) -> Outcome:
    if prop(parameter, "tier") not in ("Advanced",):
        return Free("standard Parameter Store parameters have no charge")
    return [ctx.monthly("Parameter Store advanced parameter", 1, "ssm.advancedParameter")]


@prices("aws:cloudwatch/dashboard:Dashboard")
def price_dashboard(dashboard: Node, ctx: Context) -> Outcome:
    return [
        ctx.monthly("CloudWatch dashboard", 1, "cloudwatch.dashboard", "the first 3 dashboards per account are free")
    ]


@prices("aws:cloudwatch/metricAlarm:MetricAlarm")
def price_alarm(alarm: Node, ctx: Context) -> Outcome:
    queries = [q for q in items(prop(alarm, "metricQueries")) if isinstance(q, Mapping)]
    metrics = sum(1 for q in queries if q.get("metric")) or 1
    if any("ANOMALY_DETECTION_BAND" in str(q.get("expression") or "") for q in queries):
        metrics *= 3  # an anomaly detection alarm bills the metric plus the band's upper and lower bound
    periods = [number(prop(alarm, "period"))] + [number((q.get("metric") or {}).get("period")) for q in queries]
    high_resolution = any(p is not None and p < 60 for p in periods)
    kind = "highResolution" if high_resolution else "standard"
    note = None if high_resolution else "the first 10 standard alarm metrics per account are free"
    return [
        ctx.monthly(
            f"CloudWatch alarm ({'high resolution' if high_resolution else 'standard'})",
            metrics,
            f"cloudwatch.alarm.{kind}",
            note,
        )
    ]


def _metric_identities(metric_filter: Node) -> set[tuple[str, str]]:
    """(namespace, name) of each undimensioned metric a filter publishes."""
    return {
        (str(t.get("namespace")), str(t.get("name")))
        for t in items(prop(metric_filter, "metricTransformation"))
        if isinstance(t, Mapping) and not t.get("dimensions")
    }


@prices("aws:cloudwatch/logMetricFilter:LogMetricFilter")
def price_metric_filter(metric_filter: Node, ctx: Context) -> Outcome:
    transformations = [t for t in items(prop(metric_filter, "metricTransformation")) if isinstance(t, Mapping)]
    # Filters on several log groups publishing the same metric make one metric: the first of them by URN is priced
    # (not by registration order, which varies between runs and would show up in every plan diff).
    ours = _metric_identities(metric_filter)
    for other in sorted(ctx.of_type(metric_filter.type), key=lambda node: node.urn):
        if other.urn == metric_filter.urn:
            break
        if ours and ours <= _metric_identities(other):
            return Free(f"publishes the same metric as {other.name}, which is priced")
    dimensioned = any(t.get("dimensions") for t in transformations)
    note = "one metric per dimension value combination" if dimensioned else None
    return [ctx.monthly("Custom metric from a log metric filter", len(transformations) or 1, "cloudwatch.metric", note)]


@prices("aws:cloudwatch/compositeAlarm:CompositeAlarm")
def price_composite_alarm(alarm: Node, ctx: Context) -> Outcome:
    return [ctx.monthly("CloudWatch composite alarm", 1, "cloudwatch.alarm.composite")]


TARGET_TRACKING_ALARMS = 2
"""Application Auto Scaling creates a high (scale-out) and a low (scale-in) alarm per target tracking policy."""


@prices("aws:appautoscaling/policy:Policy")
def price_scaling_policy(policy: Node, ctx: Context) -> Outcome:
    kind = prop(policy, "policyType") or "StepScaling"
    if kind != "TargetTrackingScaling":
        return Free(
            f"{kind} creates no alarms of its own (step scaling runs on your MetricAlarm resources, priced there)"
        )
    specification = prop(policy, "targetTrackingScalingPolicyConfiguration", "customizedMetricSpecification")
    queries = items(specification.get("metrics")) if isinstance(specification, Mapping) else []
    metrics = sum(1 for q in queries if isinstance(q, Mapping) and q.get("metricStat")) or 1
    note = (
        f"Application Auto Scaling creates a high and a low alarm, {metrics:g} metric(s) each; "
        "the first 10 standard alarm metrics per account are free"
    )
    return [
        ctx.monthly(
            "CloudWatch alarms of target tracking (high and low)",
            TARGET_TRACKING_ALARMS * metrics,
            "cloudwatch.alarm.standard",
            note,
        )
    ]


NEVER_EXPIRES_DAYS = 365


LAMBDA_FUNCTION = "aws:lambda/function:Function"
CODEBUILD_PROJECT = "aws:codebuild/project:Project"
RDS_UPGRADE_LOG = re.compile(r"^/aws/rds/instance/[^/]+/upgrade$")


@prices("aws:cloudwatch/logGroup:LogGroup")
def price_log_group(group: Node, ctx: Context) -> Outcome:
    flow_logs = [f for f in ctx.of_type(FLOW_LOG) if _delivers_to(f, group)]
    writer = None if flow_logs else event_writer(group, ctx)
    if flow_logs:
        per_day, assumption = ctx.assumptions.flow_log_gb_per_day * len(flow_logs), "flow_log_gb_per_day"
    elif writer:
        per_day, assumption = ctx.assumptions.event_log_gb_per_day, "event_log_gb_per_day"
    else:
        per_day, assumption = ctx.assumptions.log_gb_per_day, "log_gb_per_day"
    if per_day <= 0:
        return Free(f"no ingestion assumed ({assumption} is 0)")
    retention = number(prop(group, "retentionInDays"), 0) or 0
    stored_days = retention or NEVER_EXPIRES_DAYS
    storage_note = f"{retention:g}-day retention" if retention else "never expires: one year of logs shown, growing"
    storage = ctx.monthly("Log storage", per_day * stored_days, "logs.storage", storage_note)
    if flow_logs:
        return [storage]  # ingestion is priced on the flow log, as vended logs
    log_class = "infrequentAccess" if prop(group, "logGroupClass") == "INFREQUENT_ACCESS" else "standard"
    return [
        ctx.daily(
            f"Log ingestion ({log_class})",
            per_day,
            f"logs.ingest.{log_class}",
            f"assumed {assumption}" + (f": written by {writer}" if writer else ""),
        ),
        storage,
    ]


def event_writer(group: Node, ctx: Context) -> str | None:
    """What writes the group, when only events do (runs, builds, sessions, upgrades); None for traffic-driven logs."""
    name = prop(group, "name")
    for function in ctx.of_type(LAMBDA_FUNCTION):
        named = prop(function, "name")
        if refers_to(prop(function, "loggingConfig", "logGroup"), group, "name") or (
            isinstance(named, str) and name == f"/aws/lambda/{named}"
        ):
            return f"the Lambda function {function.name}"
    for project in ctx.of_type(CODEBUILD_PROJECT):
        if refers_to(prop(project, "logsConfig", "cloudwatchLogs", "groupName"), group, "name"):
            return f"the CodeBuild project {project.name}"
    for cluster in ctx.of_type(ECS_CLUSTER):
        exec_log = prop(cluster, "configuration", "executeCommandConfiguration", "logConfiguration")
        if isinstance(exec_log, Mapping) and refers_to(_plain(exec_log.get("cloudWatchLogGroupName")), group, "name"):
            return f"ECS Exec sessions on {cluster.name}"
    if isinstance(name, str) and RDS_UPGRADE_LOG.match(name):
        return "RDS engine upgrades"
    return None


def _delivers_to(flow_log: Node, group: Node) -> bool:
    if (prop(flow_log, "logDestinationType") or "cloud-watch-logs") != "cloud-watch-logs":
        return False
    destination = prop(flow_log, "logDestination") or prop(flow_log, "logGroupName")
    return refers_to(destination, group, "name", "arn")


# --- Build and functions ----------------------------------------------------------------------------------


@prices("aws:codebuild/project:Project")
def price_build_project(project: Node, ctx: Context) -> Outcome:
    compute = prop(project, "environment", "computeType") or "BUILD_GENERAL1_SMALL"
    kind = prop(project, "environment", "type") or "LINUX_CONTAINER"
    minutes = ctx.assumptions.codebuild_minutes_per_day
    return [
        ctx.daily(
            f"CodeBuild minutes ({kind}, {compute})",
            minutes,
            f"codebuild.{kind}.{compute}",
            "assumed codebuild_minutes_per_day",
        )
    ]


@prices("aws:lambda/function:Function")
def price_function(function: Node, ctx: Context) -> Outcome:
    a = ctx.assumptions
    architecture = "arm64" if "arm64" in items(prop(function, "architectures")) else "x86_64"
    memory_gb = (number(prop(function, "memorySize"), 128) or 128.0) / 1024
    gb_seconds = a.lambda_invocations_per_day * a.lambda_seconds_per_invocation * memory_gb
    return [
        ctx.daily(
            f"Lambda compute ({architecture})",
            gb_seconds,
            f"lambda.compute.{architecture}",
            "before the monthly free tier",
        ),
        ctx.daily("Lambda requests", a.lambda_invocations_per_day / 1_000_000, "lambda.requests"),
    ]


@prices("aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration")
def price_registry_scanning(configuration: Node, ctx: Context) -> Outcome:
    if prop(configuration, "scanType") != "ENHANCED":
        return Free("basic scanning has no charge")
    frequencies = {
        _plain(rule.get("scanFrequency"))
        for rule in items(prop(configuration, "rules"))
        if isinstance(rule, Mapping) and rule.get("repositoryFilters")
    }
    if not frequencies & {"SCAN_ON_PUSH", "CONTINUOUS_SCAN"}:
        return Free("ENHANCED scanning with no scan-on-push or continuous rule scans nothing automatically")
    a = ctx.assumptions
    lines = [
        ctx.monthly(
            "Amazon Inspector initial image scans",
            a.inspector_images_pushed_per_month,
            "inspector.ecr.initialScan",
            "assumed inspector_images_pushed_per_month, registry-wide",
        )
    ]
    if "CONTINUOUS_SCAN" in frequencies:
        rescans = a.inspector_images_continuously_scanned * a.inspector_rescans_per_image_per_month
        lines.append(
            ctx.monthly(
                "Amazon Inspector image rescans (continuous scanning)",
                rescans,
                "inspector.ecr.rescan",
                "assumed inspector_images_continuously_scanned x inspector_rescans_per_image_per_month",
            )
        )
    return lines


@prices("aws:guardduty/detector:Detector")
def price_guardduty_detector(detector: Node, ctx: Context) -> Outcome:
    if prop(detector, "enable") is False:
        return Free("a disabled detector analyzes nothing")
    a = ctx.assumptions
    return [
        ctx.monthly(
            "GuardDuty CloudTrail management event analysis",
            a.guardduty_cloudtrail_million_events_per_month,
            "guardduty.cloudtrail.events",
            "assumed guardduty_cloudtrail_million_events_per_month, account and region wide",
        ),
        ctx.monthly(
            "GuardDuty VPC flow log and DNS log analysis",
            a.guardduty_flow_dns_gb_per_month,
            "guardduty.flowDns.gb",
            "assumed guardduty_flow_dns_gb_per_month, account and region wide",
        ),
    ]


def fargate_vcpus(ctx: Context) -> float:
    """Average Fargate vCPUs the graph's ECS services run (what Runtime Monitoring bills per hour)."""
    total = 0.0
    for service in ctx.of_type(ECS_SERVICE):
        task_definition = task_definition_of(service, ctx)
        size = task_size(task_definition) if task_definition is not None else None
        if size is None or prop(service, "launchType") not in (None, "FARGATE"):
            continue
        total += average_tasks(service, ctx)[0] * size[0]
    return total


@prices("aws:guardduty/detectorFeature:DetectorFeature")
def price_guardduty_feature(feature: Node, ctx: Context) -> Outcome:
    if prop(feature, "name") != "RUNTIME_MONITORING" or prop(feature, "status") != "ENABLED":
        return Free("only Runtime Monitoring is priced per feature here; the detector carries the foundational charges")
    vcpus = fargate_vcpus(ctx)
    if vcpus <= 0:
        return Free("no Fargate tasks in this stack to monitor")
    return [
        ctx.hourly(
            "GuardDuty Runtime Monitoring (Fargate vCPU)",
            vcpus,
            "guardduty.runtime.vcpu",
            f"{vcpus:g} average vCPU of this stack's Fargate services; other stacks' tasks in the account are "
            "monitored and billed too; the guardduty-data endpoint GuardDuty creates has no charge",
        )
    ]


# --- The estimate -----------------------------------------------------------------------------------------


def _component_of(resource: Node, by_urn: Mapping[str, Node]) -> str | None:
    parent = by_urn.get(resource.parent) if resource.parent else None
    while parent is not None and parent.type == "pulumi:pulumi:Stack":
        parent = by_urn.get(parent.parent) if parent.parent else None
    return parent.name if parent is not None else None


OPAQUE_COMPONENT = Unpriced("a multi-language component: the resources it creates are not visible offline")


def _price_one(resource: Node, ctx: Context) -> Outcome:
    try:
        pricer = PRICERS.get(resource.type)
        if pricer is not None:
            return pricer(resource, ctx)
        reason = _free_reason(resource, ctx)
        if reason is not None:
            return Free(reason)
        return Unpriced("type not in the estimate's price list")
    except MissingPrice as missing:
        return Unpriced(str(missing))
    except (Unknown, UnknownValueError):
        return Unpriced("an input it is priced on is not known until apply")


def infer_region(nodes: Iterable[Node]) -> str | None:
    """The region named in the first ARN or regional endpoint found in the inputs, if any."""
    pattern = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:([a-z]{2}(?:-[a-z]+)+-\d):")
    for resource in nodes:
        try:
            for text in nested_strings(resource.props):
                match = pattern.match(text)
                if match:
                    return match.group(1)
        except (Unknown, UnknownValueError):
            continue
    return None


def nested_strings(value: Any) -> Iterator[str]:
    """Every string inside a value of nested objects and lists."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from nested_strings(item)
    elif isinstance(value, Sequence):
        for item in value:
            yield from nested_strings(item)


# --- Account free tier ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowance:
    """A monthly free tier allowance of one account, shared by the price keys it covers."""

    item: str
    quantity: float
    keys: tuple[str, ...]
    term: str


ALWAYS_FREE = "always"
TWELVE_MONTHS = "12 months"
FREE_TIER_ALLOWANCES: tuple[Allowance, ...] = (
    Allowance("Lambda requests (1M a month)", 1, ("lambda.requests",), ALWAYS_FREE),
    Allowance(
        "Lambda compute (400,000 GB-s a month)", 400_000, ("lambda.compute.x86_64", "lambda.compute.arm64"), ALWAYS_FREE
    ),
    Allowance("CloudWatch standard alarm metrics (10)", 10, ("cloudwatch.alarm.standard",), ALWAYS_FREE),
    Allowance("CloudWatch custom metrics (10)", 10, ("cloudwatch.metric",), ALWAYS_FREE),
    Allowance("CloudWatch dashboards (3)", 3, ("cloudwatch.dashboard",), ALWAYS_FREE),
    Allowance(
        "CloudWatch Logs data (5 GB of ingestion and storage)",
        5,
        ("logs.ingest.standard", "logs.ingest.infrequentAccess", "logs.storage"),
        ALWAYS_FREE,
    ),
    Allowance("SQS requests (1M a month)", 1, ("sqs.standard", "sqs.fifo"), ALWAYS_FREE),
    Allowance("S3 Standard storage (5 GB)", 5, ("s3.standard",), TWELVE_MONTHS),
    Allowance("API Gateway HTTP API requests (1M a month)", 1, ("apigateway.http.requests",), TWELVE_MONTHS),
)
"""Monthly, per account (all regions); KMS's 20,000 requests and SNS's 1M publishes are not deducted because those
requests are not priced here (SNS topics are listed as free)."""

FREE_TIER_MODES = {"none": (), "always": (ALWAYS_FREE,), "new-account": (ALWAYS_FREE, TWELVE_MONTHS)}


def free_tier_mode(value: bool | str) -> str:
    """`free_tier` of `estimate` as a mode: False/"none", True/"always" or "new-account" (adds 12-month offers)."""
    if value is True:
        return "always"
    if value is False:
        return "none"
    if value not in FREE_TIER_MODES:
        raise CostError(f"free_tier: {value!r}; allowed: {', '.join(FREE_TIER_MODES)} (or True/False)")
    return value


def free_tier_deductions(resources: Sequence[ResourceCost], mode: str) -> list[FreeTierDeduction]:
    """Each allowance of `mode` taken once from the account's usage of its keys, the cheapest unit price first."""
    usage: dict[str, list[Line]] = defaultdict(list)
    for resource in resources:
        for line in resource.lines:
            if line.key:
                usage[line.key].append(line)
    deductions = []
    for allowance in FREE_TIER_ALLOWANCES:
        if allowance.term not in FREE_TIER_MODES[mode]:
            continue
        left = allowance.quantity
        covered = sorted((line for key in allowance.keys for line in usage.get(key, [])), key=lambda li: li.unit_price)
        for line in covered:
            taken = min(left, line.quantity)
            if taken <= 0:
                break
            left -= taken
            deductions.append(FreeTierDeduction(allowance.item, taken, line.unit, line.unit_price, allowance.term))
    return _merge_deductions(deductions)


def _merge_deductions(deductions: Sequence[FreeTierDeduction]) -> list[FreeTierDeduction]:
    merged: dict[tuple[str, float], FreeTierDeduction] = {}
    for d in deductions:
        key = (d.item, d.unit_price)
        previous = merged.get(key)
        merged[key] = dataclasses.replace(d, quantity=d.quantity + (previous.quantity if previous else 0))
    return list(merged.values())


# --- The estimate (continued) -----------------------------------------------------------------------------


def estimate(
    resources: Sequence[ResourceLike],
    region: str | None = None,
    assumptions: Assumptions | None = None,
    opaque: Collection[str] = (),
    free_tier: bool | str = False,
) -> CostEstimate:
    """Price every resource of the graph for `region` (default: inferred from ARNs in the inputs, else us-east-1).

    `opaque` are URNs of components whose children the graph does not show (multi-language components run
    offline): without a price of their own they are reported as not priced, never as free. `free_tier` takes the
    account's monthly free tier off the total once (True or "always": the always-free offers; "new-account": also
    the 12-month offers); the default leaves it out, as a stack cannot know what the rest of the account uses.
    """
    mode = free_tier_mode(free_tier)
    nodes = [node(r) for r in resources]
    assumptions = assumptions or Assumptions()
    check_overrides_match(assumptions, nodes)
    region = region or infer_region(nodes) or DEFAULT_REGION
    ctx = Context(nodes=nodes, prices=prices_for(region), assumptions=assumptions)
    by_urn = {n.urn: n for n in nodes}
    priced: list[ResourceCost] = []
    free: list[dict[str, str]] = []
    unpriced: list[dict[str, str]] = []
    for resource in nodes:
        outcome = (
            OPAQUE_COMPONENT
            if resource.urn in opaque and resource.type not in PRICERS
            else _price_one(resource, ctx.for_resource(resource))
        )
        identity = {"urn": resource.urn, "type": resource.type, "name": resource.name}
        if isinstance(outcome, Free):
            free.append({**identity, "reason": outcome.reason})
        elif isinstance(outcome, Unpriced):
            unpriced.append({**identity, "reason": outcome.reason})
        else:
            priced.append(
                ResourceCost(resource.urn, resource.type, resource.name, _component_of(resource, by_urn), outcome)
            )
    return CostEstimate(
        region=region,
        assumptions=assumptions,
        resources=priced,
        free=free,
        unpriced=unpriced,
        free_tier=free_tier_deductions(priced, mode),
        free_tier_mode=mode,
    )


# --- Command line -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _JsonResource:
    urn: str
    type: str
    name: str
    parent: str | None
    inputs: Mapping[str, Any]
    custom: bool | None = None


def resources_from_report(path: Path) -> list[_JsonResource]:
    """The resources of a `python -m runner.check --json` report (or a bare list of them)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CostError(f"{path}: cannot be read as JSON ({error})") from error
    rows = data.get("resources") if isinstance(data, Mapping) else data
    if not isinstance(rows, list):
        raise CostError(f"{path}: expected a report with a `resources` list (python -m runner.check --json)")
    try:
        return [
            _JsonResource(r["urn"], r["type"], r["name"], r.get("parent"), r.get("inputs") or {}, r.get("custom"))
            for r in rows
        ]
    except (KeyError, TypeError) as error:
        raise CostError(f"{path}: each resource needs urn, type, name (missing {error})") from error


def render_table(rows: Sequence[tuple[str, CostEstimate]]) -> str:
    lines = [
        "| Stack | Per day | Per month | Range per day (Spot) | Biggest lines (per month) | Not priced |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for stack, cost in rows:
        top = sorted((line for r in cost.resources for line in r.lines), key=lambda line: -line.per_month)[:4]
        biggest = "; ".join(f"{line.item} {_usd(line.per_month)}" for line in top)
        spread = f"{_usd(cost.per_day_low)}-{_usd(cost.per_day)}" if cost.is_range else "-"
        lines.append(
            f"| {stack} | {_usd(cost.per_day)} | {_usd(cost.per_month)} | {spread} | {biggest} | {len(cost.unpriced)} |"
        )
    return "\n".join(lines)


def render_assumptions_table() -> str:
    """The markdown table of usage assumptions in docs/cost.md."""
    lines = ["| Key | Default | Meaning |", "|---|---|---|"]
    for name, default, doc in Assumptions().describe():
        shown = "[]" if name == "overrides" else default
        lines.append(f"| `{name}` | {shown} | {doc} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policy.rules.costing", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("reports", nargs="*", help="runner.check --json reports; with --table, STACK=REPORT pairs")
    parser.add_argument("--table", action="store_true", help="one markdown row per stack instead of the full estimate")
    parser.add_argument("--region", help="price table region (default: inferred from ARNs, else us-east-1)")
    parser.add_argument("--assumptions", type=Path, help="JSON file of usage assumptions (see docs/cost.md)")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    parser.add_argument(
        "--free-tier",
        nargs="?",
        const="always",
        default="none",
        choices=list(FREE_TIER_MODES),
        help="take the account free tier off the total once (default without a value: always-free offers)",
    )
    parser.add_argument("--assumptions-table", action="store_true", help="print the assumptions table of docs/cost.md")
    args = parser.parse_args(argv)
    if args.assumptions_table:
        print(render_assumptions_table())  # noqa: T201
        return 0
    if not args.reports:
        parser.error("give at least one report (or --assumptions-table)")
    try:
        assumptions = Assumptions.from_file(args.assumptions) if args.assumptions else Assumptions()
        rows: list[tuple[str, CostEstimate]] = []
        for spec in args.reports:
            stack, _, path = spec.rpartition("=") if args.table else ("", "", spec)
            cost = estimate(resources_from_report(Path(path)), args.region, assumptions, free_tier=args.free_tier)
            rows.append((stack or Path(path).stem, cost))
    except CostError as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201
        return 2
    for stack, cost in rows:
        if args.table:
            continue
        shown = json.dumps(cost.to_json(), indent=2) if args.json else f"{stack}:\n{cost.render_text()}"
        print(shown)  # noqa: T201
    if args.table:
        print(render_table(rows))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
