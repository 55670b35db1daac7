"""GuardDuty responder: a Runtime Monitoring finding on one of our cluster's Fargate tasks -> contain, record, alert.

Invoked by EventBridge with `GuardDuty Finding` events (the rule matches only findings whose resource is our
cluster). For a finding at or above `RESPONSE_SEVERITY` on a task of `CLUSTER_ARN`:
1. tag the task with the finding (id, type, severity), so the console and later audits show why it stopped;
2. with `QUARANTINE_SECURITY_GROUP_ID`, swap the task's network interface to that no-egress group first, so the
   container loses the network before it is stopped. Fargate task interfaces are managed by ECS and AWS may refuse
   the change: the refusal is recorded and the response goes on (stopping is what contains it);
3. stop the task (its service starts a replacement from the clean task definition);
4. publish an alert, and write one audit record to `AUDIT_BUCKET` (SSE-KMS with `AUDIT_KMS_KEY_ARN`).
Below the threshold, for another cluster or without a task, it only alerts (and records that it did nothing).

- Idempotent: the audit record `findings/<finding id>.json` is written last, only if absent; an event whose record
  exists is a replay or an update of a finding already handled (GuardDuty re-sends a finding when it counts a new
  occurrence) and does nothing. A run that failed before its record retries every step; each step is safe to
  repeat (tagging, stopping a stopped task), at worst the alert is sent twice.
- An event this function cannot use (wrong shape, not a GuardDuty finding) is logged and dropped: raising would
  only make EventBridge retry something that can never succeed. An AWS API error is raised, so Lambda retries the
  event and, after the retries, its dead-letter target (the alert topic) gets it.

Standard library and the runtime's boto3 only; `handle(event, context)` takes its clients from the environment.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ClientError

# GuardDuty's severity bands (numbers 1.0-10.0): Low 1.0-3.9, Medium 4.0-6.9, High 7.0-8.9, Critical 9.0-10.0.
SEVERITY_FLOORS = {"LOW": 1.0, "MEDIUM": 4.0, "HIGH": 7.0, "CRITICAL": 9.0}
FINDING_EVENT = "GuardDuty Finding"
ECS_RESOURCE = "ECSCluster"
SUBJECT_LIMIT = 100
STOP_REASON_LIMIT = 255
TAG_VALUE_LIMIT = 256
AUDIT_PREFIX = "findings/"

logger = logging.getLogger("guardduty_responder")
logger.setLevel(logging.INFO)


class IgnoredEvent(Exception):
    """The event cannot be acted on; the message says why."""


@dataclass(frozen=True)
class Settings:
    topic_arn: str
    cluster_arn: str
    audit_bucket: str
    threshold: str
    quarantine_group: str | None
    audit_key_arn: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """The function's configuration; a bad value is a deployment error and raises."""
        required = ("ALERT_TOPIC_ARN", "CLUSTER_ARN", "AUDIT_BUCKET", "RESPONSE_SEVERITY")
        missing = [key for key in required if not env.get(key)]
        if missing:
            raise RuntimeError(f"guardduty_responder is misconfigured: {', '.join(missing)} not set")
        threshold = env["RESPONSE_SEVERITY"]
        if threshold not in SEVERITY_FLOORS:
            raise RuntimeError(f"RESPONSE_SEVERITY={threshold!r} is not one of {', '.join(SEVERITY_FLOORS)}")
        return cls(
            topic_arn=env["ALERT_TOPIC_ARN"],
            cluster_arn=env["CLUSTER_ARN"],
            audit_bucket=env["AUDIT_BUCKET"],
            threshold=threshold,
            quarantine_group=env.get("QUARANTINE_SECURITY_GROUP_ID") or None,
            audit_key_arn=env.get("AUDIT_KMS_KEY_ARN") or None,
        )

    def responds_to(self, severity: float) -> bool:
        return severity >= SEVERITY_FLOORS[self.threshold]


@dataclass(frozen=True)
class Finding:
    finding_id: str
    finding_type: str
    severity: float
    title: str
    cluster_arn: str
    task_arn: str | None
    event_id: str | None
    account: str | None
    region: str | None
    updated_at: str | None
    process: dict[str, Any] = field(default_factory=dict)
    """What GuardDuty saw run (name, executable path and hash), when the finding carries runtime details."""

    @property
    def severity_label(self) -> str:
        return next(label for label, floor in reversed(SEVERITY_FLOORS.items()) if self.severity >= floor)


@dataclass
class Response:
    """What the function did about one finding: the audit record, the alert and the return value."""

    action: str
    """`contained` (stopped), `alerted` (below the threshold, or nothing of ours to act on)."""
    reason: str
    tagged: bool = False
    isolated: bool = False
    isolation_error: str | None = None
    stopped: bool = False
    network_interfaces: list[str] = field(default_factory=list)
    message_id: str | None = None


def handle(event: Any, context: Any) -> dict[str, Any]:
    settings = Settings.from_env(os.environ)
    try:
        finding = parse_finding(event)
    except IgnoredEvent as reason:
        log(logging.WARNING, "finding event dropped", reason=str(reason), event_id=_event_id(event))
        return {"status": "ignored", "reason": str(reason)}
    summary = {"finding_id": finding.finding_id, "finding_type": finding.finding_type, "severity": finding.severity,
               "cluster_arn": finding.cluster_arn, "task_arn": finding.task_arn}  # fmt: skip
    if audit_record_exists(settings, finding):
        log(logging.INFO, "finding already handled; nothing to do", **summary)
        return {"status": "duplicate", **summary}
    response = respond(finding, settings)
    response.message_id = publish_alert(finding, response, settings)
    write_audit_record(finding, response, settings)
    log(logging.WARNING, "finding handled", action=response.action, reason=response.reason, **summary)
    return {"status": response.action, **summary, **asdict(response)}


def parse_finding(event: Any) -> Finding:
    """The ECS finding an EventBridge `GuardDuty Finding` event carries, or IgnoredEvent saying why not."""
    if not isinstance(event, Mapping):
        raise IgnoredEvent(f"event is a {type(event).__name__}, not a JSON object")
    if event.get("detail-type") != FINDING_EVENT or event.get("source") != "aws.guardduty":
        raise IgnoredEvent(f"detail-type {event.get('detail-type')!r} from {event.get('source')!r} is not a finding")
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise IgnoredEvent("event has no `detail` object")
    finding_id = detail.get("id")
    if not isinstance(finding_id, str) or not finding_id:
        raise IgnoredEvent(f"finding id {finding_id!r} is not an id")
    severity = detail.get("severity")
    if isinstance(severity, bool) or not isinstance(severity, int | float):
        raise IgnoredEvent(f"severity {severity!r} is not a number")
    resource = detail.get("resource")
    if not isinstance(resource, Mapping) or resource.get("resourceType") != ECS_RESOURCE:
        shown = resource.get("resourceType") if isinstance(resource, Mapping) else resource
        raise IgnoredEvent(f"resourceType {shown!r} is not {ECS_RESOURCE!r}")
    cluster = resource.get("ecsClusterDetails")
    cluster_arn = cluster.get("arn") if isinstance(cluster, Mapping) else None
    if not isinstance(cluster_arn, str) or ":cluster/" not in cluster_arn:
        raise IgnoredEvent(f"ecsClusterDetails.arn {cluster_arn!r} is not a cluster ARN")
    task = cluster.get("taskDetails") if isinstance(cluster, Mapping) else None
    task_arn = task.get("arn") if isinstance(task, Mapping) else None
    return Finding(
        finding_id=finding_id,
        finding_type=str(detail.get("type") or ""),
        severity=float(severity),
        title=str(detail.get("title") or ""),
        cluster_arn=cluster_arn,
        task_arn=task_arn if isinstance(task_arn, str) and ":task/" in task_arn else None,
        event_id=_string_or_none(event.get("id")),
        account=_string_or_none(event.get("account")),
        region=_string_or_none(event.get("region")),
        updated_at=_string_or_none(detail.get("updatedAt")),
        process=_process(detail.get("service")),
    )


def respond(finding: Finding, settings: Settings) -> Response:
    """Contain the finding's task when it is ours and severe enough; otherwise say why only an alert goes out."""
    if finding.cluster_arn != settings.cluster_arn:
        return Response("alerted", f"the finding is for cluster {finding.cluster_arn}, not ours; no action")
    if not settings.responds_to(finding.severity):
        return Response("alerted", f"severity {finding.severity:g} is below {settings.threshold}; alert only")
    if finding.task_arn is None:
        return Response("alerted", "the finding names no task; alert only")
    task = describe_task(settings, finding.task_arn)
    if task is None:
        return Response("alerted", "the task no longer exists; alert only")
    response = Response("contained", f"severity {finding.severity:g} is at or above {settings.threshold}")
    tag_task(settings, finding)
    response.tagged = True
    response.network_interfaces = _network_interfaces(task)
    if settings.quarantine_group:
        isolate(settings, response)
    if task.get("lastStatus") != "STOPPED":
        _client("ecs").stop_task(cluster=settings.cluster_arn, task=finding.task_arn, reason=_stop_reason(finding))
    response.stopped = True
    return response


def describe_task(settings: Settings, task_arn: str) -> Mapping[str, Any] | None:
    tasks = _client("ecs").describe_tasks(cluster=settings.cluster_arn, tasks=[task_arn]).get("tasks") or []
    return tasks[0] if tasks else None


def tag_task(settings: Settings, finding: Finding) -> None:
    tags = {
        "guardduty-finding-id": finding.finding_id,
        "guardduty-finding-type": finding.finding_type,
        "guardduty-severity": f"{finding.severity:g}",
        "guardduty-response": "quarantined-and-stopped" if settings.quarantine_group else "stopped",
    }
    _client("ecs").tag_resource(
        resourceArn=finding.task_arn,
        tags=[{"key": key, "value": _tag_value(value)} for key, value in tags.items() if value],
    )


def isolate(settings: Settings, response: Response) -> None:
    """Swap every interface of the task to the quarantine group; a refusal is recorded, not raised."""
    try:
        for interface in response.network_interfaces:
            _client("ec2").modify_network_interface_attribute(
                NetworkInterfaceId=interface, Groups=[settings.quarantine_group]
            )
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "Unknown")
        response.isolation_error = f"{code}: {error.response.get('Error', {}).get('Message', '')}".strip()
        log(logging.WARNING, "quarantine refused; stopping the task anyway", error=response.isolation_error)
        return
    response.isolated = bool(response.network_interfaces)


def publish_alert(finding: Finding, response: Response, settings: Settings) -> str:
    verb = "Stopped task" if response.stopped else "Finding"
    subject = f"GuardDuty {finding.severity_label}: {verb} {finding.finding_type}"
    message = {**_record(finding, response), "console_url": _console_url(finding)}
    result = _client("sns").publish(
        TopicArn=settings.topic_arn,
        Subject=subject[:SUBJECT_LIMIT],
        Message=json.dumps(message, indent=2, sort_keys=True),
    )
    return str(result["MessageId"])


def audit_key(finding: Finding) -> str:
    return f"{AUDIT_PREFIX}{finding.finding_id}.json"


def audit_record_exists(settings: Settings, finding: Finding) -> bool:
    try:
        _client("s3").head_object(Bucket=settings.audit_bucket, Key=audit_key(finding))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def write_audit_record(finding: Finding, response: Response, settings: Settings) -> None:
    """The record, written only if no other invocation wrote it first (S3 conditional write)."""
    encryption: dict[str, str] = {"ServerSideEncryption": "aws:kms"}
    if settings.audit_key_arn:
        encryption["SSEKMSKeyId"] = settings.audit_key_arn
    try:
        _client("s3").put_object(
            Bucket=settings.audit_bucket,
            Key=audit_key(finding),
            Body=json.dumps(_record(finding, response), indent=2, sort_keys=True).encode(),
            ContentType="application/json",
            IfNoneMatch="*",
            **encryption,
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise
        log(logging.INFO, "audit record written by a concurrent invocation", key=audit_key(finding))


def _record(finding: Finding, response: Response) -> dict[str, Any]:
    return {"finding": asdict(finding), "severity_label": finding.severity_label, "response": asdict(response)}


def _network_interfaces(task: Mapping[str, Any]) -> list[str]:
    interfaces = []
    for attachment in task.get("attachments") or []:
        if attachment.get("type") != "ElasticNetworkInterface":
            continue
        for detail in attachment.get("details") or []:
            if detail.get("name") == "networkInterfaceId" and detail.get("value"):
                interfaces.append(str(detail["value"]))
    return interfaces


def _process(service: Any) -> dict[str, Any]:
    runtime = service.get("runtimeDetails") if isinstance(service, Mapping) else None
    process = runtime.get("process") if isinstance(runtime, Mapping) else None
    if not isinstance(process, Mapping):
        return {}
    return {key: process[key] for key in ("name", "executablePath", "executableSha256", "pid") if key in process}


def _stop_reason(finding: Finding) -> str:
    return f"GuardDuty {finding.finding_type} severity {finding.severity:g} finding {finding.finding_id}"[
        :STOP_REASON_LIMIT
    ]


def _tag_value(value: str) -> str:
    # ECS tag values allow letters, digits, spaces and _ . : / = + - @ (the rest becomes "-").
    allowed = set("_.:/=+-@ ")
    return "".join(c if c.isalnum() or c in allowed else "-" for c in value)[:TAG_VALUE_LIMIT]


def _console_url(finding: Finding) -> str | None:
    if not finding.region:
        return None
    return (
        f"https://{finding.region}.console.aws.amazon.com/guardduty/home?region={finding.region}"
        f"#/findings?search=id%3D{finding.finding_id}"
    )


def _string_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _event_id(event: Any) -> Any:
    return event.get("id") if isinstance(event, Mapping) else None


def log(level: int, message: str, **fields: Any) -> None:
    """One JSON object per line: CloudWatch Logs Insights can filter on every field."""
    logger.log(level, json.dumps({"message": message, **fields}, sort_keys=True, default=str))


@cache
def _client(service: str) -> Any:
    return boto3.client(service)
