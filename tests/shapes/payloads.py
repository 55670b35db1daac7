"""JSON (and number-as-text) payloads AWS parses server-side, where botocore's model has only a string.

- IAM policy documents: cfn-lint's IAM policy schemas and rules (maintained by AWS CloudFormation): Version,
  Effect, Action/NotAction forms and that each action exists, Principal and Resource ARN shapes, per kind
  (identity, trust, resource policy).
- EventBridge event patterns: moto's parser (values must be arrays, non-empty) plus the content-filter operators
  as the EventBridge user guide defines them ("Content filtering in Amazon EventBridge event patterns").
- CloudWatch dashboard bodies: "Dashboard body structure and syntax" (CloudWatch API reference).
- ECR lifecycle policies: "Lifecycle policy properties" (ECR user guide).
- SQS queue attributes: the ranges CreateQueue's reference gives for each attribute.
- Alarm metric math: PutMetricAlarm's rules for `Metrics` (ids, one ReturnData, expressions' references).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from moto.events.exceptions import InvalidEventPatternException
from moto.events.models import EventPatternParser

# --- IAM policy documents (cfn-lint) -------------------------------------------------------------------

# Where each kind of policy lives in a CloudFormation template, so cfn-lint applies the matching schema.
POLICY_KINDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "identity": ("AWS::IAM::RolePolicy", "PolicyDocument", {"RoleName": "r", "PolicyName": "p"}),
    "trust": ("AWS::IAM::Role", "AssumeRolePolicyDocument", {}),
    "s3-bucket": ("AWS::S3::BucketPolicy", "PolicyDocument", {"Bucket": "b"}),
    "sqs-queue": ("AWS::SQS::QueuePolicy", "PolicyDocument", {"Queues": ["q"]}),
    "kms-key": ("AWS::KMS::Key", "KeyPolicy", {}),
    "efs-file-system": ("AWS::EFS::FileSystem", "FileSystemPolicy", {}),
    "sns-topic": ("AWS::SNS::TopicPolicy", "PolicyDocument", {"Topics": ["t"]}),
}


@dataclass(frozen=True)
class PolicyDocument:
    label: str
    """Who it belongs to, e.g. `aws:iam/role:Role api-task-role`."""
    kind: str
    """A key of POLICY_KINDS."""
    text: str


# cfn-lint findings by (kind, text): linting costs ~0.1 s a document, so every stack's documents go in one run.
_LINTED: dict[tuple[str, str], list[str]] = {}


def policy_problems(documents: Iterable[PolicyDocument]) -> dict[str, list[str]]:
    """cfn-lint's findings on each document (errors and warnings), by label."""
    documents = list(documents)
    _lint([(d.kind, d.text) for d in documents if (d.kind, d.text) not in _LINTED])
    return {d.label: _LINTED[(d.kind, d.text)] for d in documents if _LINTED[(d.kind, d.text)]}


def _lint(documents: list[tuple[str, str]]) -> None:
    from cfnlint.api import ManualArgs, lint

    documents = list(dict.fromkeys(documents))
    resources: dict[str, Any] = {}
    for index, (kind, text) in enumerate(documents):
        _LINTED[(kind, text)] = []
        resource_type, property_name, other_properties = POLICY_KINDS[kind]
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            _LINTED[(kind, text)].append(f"not JSON: {error}")
            continue
        resources[f"Doc{index}"] = {"Type": resource_type, "Properties": {**other_properties, property_name: parsed}}
    if not resources:
        return
    template = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources}
    for match in lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"])):
        path = list(getattr(match, "path", []))
        if len(path) < 4 or path[0] != "Resources" or path[2] != "Properties":
            continue
        kind, text = documents[int(str(path[1]).removeprefix("Doc"))]
        if path[3] != POLICY_KINDS[kind][1]:
            continue  # about the stand-in resource around the document, not the document
        where = "/".join(str(p) for p in path[4:]) or "document"
        _LINTED[(kind, text)].append(f"{match.rule.id} at {where}: {match.message}")


# --- EventBridge event patterns --------------------------------------------------------------------------

_COMPARISONS = ("<", "<=", "=", ">", ">=")
_FILTERS: dict[str, Callable[[Any], str | None]] = {}


def _filter(name: str) -> Callable[[Callable[[Any], str | None]], Callable[[Any], str | None]]:
    def register(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
        _FILTERS[name] = check
        return check

    return register


@_filter("prefix")
@_filter("suffix")
def _prefix_or_suffix(value: Any) -> str | None:
    if isinstance(value, str):
        return None
    if (
        isinstance(value, Mapping)
        and set(value) == {"equals-ignore-case"}
        and isinstance(value["equals-ignore-case"], str)
    ):
        return None
    return 'takes a string, or {"equals-ignore-case": string}'


@_filter("equals-ignore-case")
@_filter("wildcard")
def _string_filter(value: Any) -> str | None:
    return None if isinstance(value, str) else "takes a string"


@_filter("exists")
def _exists(value: Any) -> str | None:
    return None if isinstance(value, bool) else "takes true or false"


@_filter("cidr")
def _cidr(value: Any) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except (TypeError, ValueError):
        return "takes a CIDR block such as 10.0.0.0/24"
    return None


@_filter("numeric")
def _numeric(value: Any) -> str | None:
    allowed = 'takes [operator, number] or a range [">", n, "<=", m]; operators ' + ", ".join(_COMPARISONS)
    if not isinstance(value, list) or len(value) not in (2, 4):
        return allowed
    operators, numbers = value[0::2], value[1::2]
    if any(op not in _COMPARISONS for op in operators):
        return allowed
    if any(isinstance(n, bool) or not isinstance(n, int | float) for n in numbers):
        return allowed
    if len(value) == 4 and ("=" in operators or operators[0][0] == operators[1][0]):
        return allowed + " (a range needs one lower and one upper bound)"
    return None


@_filter("anything-but")
def _anything_but(value: Any) -> str | None:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return None
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value)
    ):
        return None
    if isinstance(value, Mapping) and len(value) == 1:
        ((name, inner),) = value.items()
        if name in ("prefix", "suffix", "wildcard") and isinstance(inner, str):
            return None
        if name == "equals-ignore-case" and (isinstance(inner, str) or (isinstance(inner, list) and inner)):
            return None
    return "takes a value, a non-empty list of values, or one of prefix/suffix/wildcard/equals-ignore-case"


def event_pattern_problems(text: str) -> list[str]:
    """What EventBridge's PutRule would refuse in this pattern (InvalidEventPatternException)."""
    try:
        pattern = EventPatternParser(text).parse()
    except InvalidEventPatternException as error:
        return [f"invalid event pattern: {error.message}"]
    if not isinstance(pattern, Mapping) or not pattern:
        return ["an event pattern is a non-empty JSON object"]
    return list(_pattern_problems(pattern, ""))


def _pattern_problems(node: Mapping[str, Any], path: str) -> Iterable[str]:
    for key, value in node.items():
        where = f"{path}.{key}" if path else key
        if isinstance(value, Mapping):
            yield from _pattern_problems(value, where)
            continue
        for item in value:
            if isinstance(item, Mapping):
                yield from _content_filter_problems(item, where)
            elif isinstance(item, list):
                yield f"{where}: nested arrays are not allowed"


def _content_filter_problems(item: Mapping[str, Any], where: str) -> Iterable[str]:
    if len(item) != 1:
        yield f"{where}: a content filter has exactly one operator, got {sorted(item)}"
        return
    ((name, value),) = item.items()
    check = _FILTERS.get(name)
    if check is None:
        yield f"{where}: unknown content filter {name!r}; EventBridge has {', '.join(sorted(_FILTERS))}"
        return
    problem = check(value)
    if problem:
        yield f"{where}: {name} {problem}, got {json.dumps(value)}"


# --- CloudWatch dashboard bodies ------------------------------------------------------------------------

_WIDGET_TYPES = frozenset({"metric", "text", "log", "alarm", "explorer", "custom"})
_METRIC_VIEWS = frozenset({"timeSeries", "singleValue", "gauge", "bar", "pie", "table"})
_STATS = re.compile(
    r"^(SampleCount|Average|Sum|Minimum|Maximum|IQM|(p|tm|wm|tc|ts|pr)\d{1,2}(\.\d+)?|(TM|WM|TC|TS|PR)\(.+\))$"
)
_RENDERING_KEYS = frozenset(
    {"accountId", "color", "expression", "id", "label", "period", "stat", "visible", "yAxis", "region", "returnData"}
)


def dashboard_problems(text: str) -> list[str]:
    """What PutDashboard would refuse (DashboardInvalidInputError) or what would not render."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        return [f"dashboard body is not JSON: {error}"]
    if not isinstance(body, Mapping) or not isinstance(body.get("widgets"), list):
        return ["a dashboard body is an object with a `widgets` array"]
    problems: list[str] = []
    for index, widget in enumerate(body["widgets"]):
        problems.extend(f"widgets[{index}]: {p}" for p in _widget_problems(widget))
    if body.get("periodOverride") not in (None, "auto", "inherit"):
        problems.append(f"periodOverride is `auto` or `inherit`, got {body['periodOverride']!r}")
    return problems


def _widget_problems(widget: Any) -> Iterable[str]:
    if not isinstance(widget, Mapping):
        yield "a widget is an object"
        return
    kind = widget.get("type")
    if kind not in _WIDGET_TYPES:
        yield f"type {kind!r} is not one of {sorted(_WIDGET_TYPES)}"
    # Grid: 24 columns; x 0-23, width 1-24, height 1-1000, y >= 0 (integers).
    for name, low, high in (("x", 0, 23), ("y", 0, None), ("width", 1, 24), ("height", 1, 1000)):
        if name in widget:
            yield from _integer_in_range(name, widget[name], low, high)
    if (
        isinstance(widget.get("x"), int)
        and isinstance(widget.get("width", 6), int)
        and widget.get("x", 0) + widget.get("width", 6) > 24
    ):
        yield f"x + width = {widget['x'] + widget.get('width', 6)} goes past the grid's 24 columns"
    properties = widget.get("properties")
    if not isinstance(properties, Mapping):
        yield "`properties` (an object) is required"
        return
    if kind == "metric":
        yield from _metric_widget_problems(properties)
    elif kind == "text" and not isinstance(properties.get("markdown"), str):
        yield "a text widget needs `markdown` (a string)"
    elif kind == "log" and not (isinstance(properties.get("query"), str) and isinstance(properties.get("region"), str)):
        yield "a log widget needs `query` and `region` (strings)"
    elif kind == "alarm" and not isinstance(properties.get("alarms"), list):
        yield "an alarm widget needs `alarms` (a list of alarm ARNs)"


def _integer_in_range(name: str, value: Any, low: int, high: int | None) -> Iterable[str]:
    allowed = f"an integer from {low}" + (f" to {high}" if high is not None else "")
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        yield f"{name} is {allowed}, got {value!r}"


def _metric_widget_problems(properties: Mapping[str, Any]) -> Iterable[str]:
    if not isinstance(properties.get("region"), str):
        yield "a metric widget needs `region`"
    if properties.get("view", "timeSeries") not in _METRIC_VIEWS:
        yield f"view {properties['view']!r} is not one of {sorted(_METRIC_VIEWS)}"
    if "stat" in properties and not _STATS.match(str(properties["stat"])):
        yield f"stat {properties['stat']!r} is not a CloudWatch statistic"
    if "period" in properties:
        yield from _period_problems(properties["period"], "period")
    metrics = properties.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        if not properties.get("annotations"):
            yield "a metric widget needs `metrics` (a non-empty array of metric arrays)"
        return
    for index, metric in enumerate(metrics):
        yield from (f"metrics[{index}]: {p}" for p in _metric_array_problems(metric))


def _metric_array_problems(metric: Any) -> Iterable[str]:
    """[Namespace, MetricName, DimName, DimValue, ..., {rendering}] or [{"expression": ...}]; `.`/`...` repeat the
    previous row."""
    if not isinstance(metric, list) or not metric:
        yield "each metric is a non-empty array"
        return
    options = metric[-1] if isinstance(metric[-1], Mapping) else None
    names = metric[:-1] if options is not None else metric
    if options is not None:
        unknown = sorted(set(options) - _RENDERING_KEYS)
        if unknown:
            yield f"unknown rendering properties {unknown}; allowed: {sorted(_RENDERING_KEYS)}"
        if "stat" in options and not _STATS.match(str(options["stat"])):
            yield f"stat {options['stat']!r} is not a CloudWatch statistic"
        if "period" in options:
            yield from _period_problems(options["period"], "period")
        if options.get("yAxis", "left") not in ("left", "right"):
            yield f"yAxis is `left` or `right`, got {options['yAxis']!r}"
    if not names:
        if options is None or "expression" not in options:
            yield "a metric without namespace and name must be an expression"
        return
    if any(not isinstance(n, str) for n in names):
        yield "namespace, metric name and dimensions are strings"
    if names[0] == "...":
        return
    if len(names) < 2:
        yield "a metric needs a namespace and a metric name"
    elif len(names) % 2:
        yield "dimensions come in name/value pairs"
    elif len(names) > 2 + 2 * 30:
        yield "a metric has at most 30 dimensions"


# Graphs take 1, 5, 10, 30 (high resolution) or multiples of 60 s; alarms 10, 20, 30 or multiples of 60 s.
_GRAPH_PERIODS = (1, 5, 10, 30)
_ALARM_PERIODS = (10, 20, 30)


def _period_problems(period: Any, name: str, short_periods: tuple[int, ...] = _GRAPH_PERIODS) -> Iterable[str]:
    valid = (
        isinstance(period, int)
        and not isinstance(period, bool)
        and (period in short_periods or (period > 0 and period % 60 == 0))
    )
    if not valid:
        allowed = ", ".join(map(str, short_periods))
        yield f"{name} is {allowed} or a multiple of 60 seconds, got {period!r}"


# --- ECR lifecycle policies ------------------------------------------------------------------------------

_TAG_STATUSES = ("tagged", "untagged", "any")
_COUNT_TYPES = ("imageCountMoreThan", "sinceImagePushed")


def lifecycle_policy_problems(text: str) -> list[str]:
    """What PutLifecyclePolicy would refuse (InvalidParameterException / LifecyclePolicyNotFound)."""
    try:
        policy = json.loads(text)
    except json.JSONDecodeError as error:
        return [f"not JSON: {error}"]
    rules = policy.get("rules") if isinstance(policy, Mapping) else None
    if not isinstance(rules, list) or not rules:
        return ["a lifecycle policy is an object with a non-empty `rules` array"]
    problems: list[str] = []
    priorities = [r.get("rulePriority") for r in rules if isinstance(r, Mapping)]
    if len(set(map(str, priorities))) != len(priorities):
        problems.append(f"rulePriority values must be unique, got {priorities}")
    for index, rule in enumerate(rules):
        problems.extend(f"rules[{index}]: {p}" for p in _lifecycle_rule_problems(rule))
    any_rules = [r for r in rules if isinstance(r, Mapping) and r.get("selection", {}).get("tagStatus") == "any"]
    numeric = [p for p in priorities if isinstance(p, int)]
    if any_rules and numeric and any(r.get("rulePriority") != max(numeric) for r in any_rules):
        problems.append("a rule with tagStatus `any` must have the highest rulePriority (it is evaluated last)")
    return problems


def _lifecycle_rule_problems(rule: Any) -> Iterable[str]:
    if not isinstance(rule, Mapping):
        yield "a rule is an object"
        return
    priority = rule.get("rulePriority")
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < 1:
        yield f"rulePriority is an integer >= 1, got {priority!r}"
    selection = rule.get("selection")
    if not isinstance(selection, Mapping):
        yield "`selection` is required"
        return
    status = selection.get("tagStatus")
    if status not in _TAG_STATUSES:
        yield f"tagStatus {status!r} is not one of {list(_TAG_STATUSES)}"
    has_tag_list = bool(selection.get("tagPrefixList") or selection.get("tagPatternList"))
    if status == "tagged" and not has_tag_list:
        yield "a `tagged` selection needs tagPrefixList or tagPatternList"
    if status != "tagged" and has_tag_list:
        yield "tagPrefixList/tagPatternList are only for tagStatus `tagged`"
    count_type = selection.get("countType")
    if count_type not in _COUNT_TYPES:
        yield f"countType {count_type!r} is not one of {list(_COUNT_TYPES)}"
    if (count_type == "sinceImagePushed") != (selection.get("countUnit") == "days"):
        yield "countUnit `days` goes with countType sinceImagePushed, and only with it"
    number = selection.get("countNumber")
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        yield f"countNumber is an integer >= 1, got {number!r}"
    action = rule.get("action")
    if not isinstance(action, Mapping) or action.get("type") != "expire":
        yield f'action is {{"type": "expire"}}, got {action!r}'


# --- SQS queue attributes --------------------------------------------------------------------------------

# CreateQueue: "DelaySeconds ... from 0 to 900", "MaximumMessageSize ... from 1,024 bytes to 1,048,576",
# "MessageRetentionPeriod ... from 60 to 1,209,600", "ReceiveMessageWaitTimeSeconds ... from 0 to 20",
# "VisibilityTimeout ... from 0 to 43,200"; RedrivePolicy maxReceiveCount 1-1,000.
SQS_ATTRIBUTE_RANGES: dict[str, tuple[int, int]] = {
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, 1_048_576),
    "MessageRetentionPeriod": (60, 1_209_600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "VisibilityTimeout": (0, 43_200),
}


def sqs_attribute_problems(attributes: Mapping[str, Any]) -> list[str]:
    """What CreateQueue / SetQueueAttributes would refuse (InvalidAttributeValue)."""
    problems: list[str] = []
    for name, (low, high) in SQS_ATTRIBUTE_RANGES.items():
        value = attributes.get(name)
        if isinstance(value, str) and not (value.isdigit() and low <= int(value) <= high):
            problems.append(f"{name} is an integer from {low} to {high}, got {value!r}")
    for name in ("SqsManagedSseEnabled", "FifoQueue", "ContentBasedDeduplication"):
        value = attributes.get(name)
        if isinstance(value, str) and value not in ("true", "false"):
            problems.append(f"{name} is `true` or `false`, got {value!r}")
    redrive = attributes.get("RedrivePolicy")
    if isinstance(redrive, str):
        problems.extend(f"RedrivePolicy: {p}" for p in _redrive_problems(redrive))
    return problems


def _redrive_problems(text: str) -> Iterable[str]:
    try:
        policy = json.loads(text)
    except json.JSONDecodeError as error:
        yield f"not JSON: {error}"
        return
    count = policy.get("maxReceiveCount")
    if isinstance(count, str) and count.isdigit():
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
        yield f"maxReceiveCount is an integer from 1 to 1000, got {policy.get('maxReceiveCount')!r}"
    target = policy.get("deadLetterTargetArn")
    if not (isinstance(target, str) and target.startswith("arn:") and ":sqs:" in target):
        yield f"deadLetterTargetArn is an SQS queue ARN, got {target!r}"
    unknown = sorted(set(policy) - {"maxReceiveCount", "deadLetterTargetArn"})
    if unknown:
        yield f"unknown keys {unknown}"


# --- Alarm metric math -----------------------------------------------------------------------------------

_METRIC_ID = re.compile(r"^[a-z][A-Za-z0-9_]*$")
_SINGLE_METRIC_MEMBERS = ("MetricName", "Namespace", "Statistic", "ExtendedStatistic", "Dimensions", "Period", "Unit")


def alarm_problems(request: Mapping[str, Any]) -> list[str]:
    """PutMetricAlarm's rules beyond the shape: a single metric (Statistic or ExtendedStatistic, not both) or
    `Metrics`, never both; the metric math rules for `Metrics`; periods of 10, 20, 30 or n x 60 seconds."""
    metrics = request.get("Metrics")
    problems: list[str] = []
    if "Statistic" in request and "ExtendedStatistic" in request:
        problems.append("Statistic and ExtendedStatistic are exclusive: set one")
    if metrics is None:
        if not request.get("MetricName") or not (request.get("Statistic") or request.get("ExtendedStatistic")):
            problems.append("a single-metric alarm needs MetricName and Statistic or ExtendedStatistic")
        if "Period" in request:
            problems.extend(_period_problems(request["Period"], "Period", _ALARM_PERIODS))
        return problems
    both = [m for m in _SINGLE_METRIC_MEMBERS if m in request]
    if both:
        problems.append(f"an alarm on Metrics must not also set {both}")
    return problems + metric_math_problems(metrics)


def scaling_metric_problems(specification: Any) -> list[str]:
    """A target tracking policy's customized metric math: the same rules as an alarm's `Metrics`."""
    metrics = specification.get("Metrics") if isinstance(specification, Mapping) else None
    return metric_math_problems(metrics) if isinstance(metrics, list) else []


def metric_math_problems(metrics: list[Mapping[str, Any]]) -> list[str]:
    """Ids start with a lowercase letter and are unique, exactly one entry returns data, each entry is a
    metric or an expression, expressions name only known ids, periods are valid."""
    problems: list[str] = []
    ids = [m.get("Id") for m in metrics]
    problems.extend(
        f"metric id {i!r} must start with a lowercase letter (letters, digits, _)"
        for i in ids
        if not _METRIC_ID.match(str(i))
    )
    if len(set(ids)) != len(ids):
        problems.append(f"metric ids must be unique, got {ids}")
    returning = [m.get("Id") for m in metrics if m.get("ReturnData", "Expression" in m and len(metrics) == 1)]
    if len(returning) != 1:
        problems.append(f"exactly one metric or expression must have ReturnData true, got {returning}")
    for metric in metrics:
        if ("Expression" in metric) == ("MetricStat" in metric):
            problems.append(f"{metric.get('Id')}: exactly one of Expression and MetricStat")
        period = metric.get("MetricStat", {}).get("Period")
        if period is not None:
            problems.extend(f"{metric.get('Id')}: {p}" for p in _period_problems(period, "Period", _ALARM_PERIODS))
        if isinstance(metric.get("Expression"), str):
            referenced = set(re.findall(r"\b[a-z][A-Za-z0-9_]*\b", metric["Expression"])) - _MATH_FUNCTIONS
            missing = sorted(referenced - set(ids))
            if missing:
                problems.append(f"{metric.get('Id')}: the expression names unknown ids {missing}")
    return problems


# Metric math functions and keywords written in lowercase (the rest are upper case and cannot clash with ids).
_MATH_FUNCTIONS = frozenset({"and", "or", "not"})
