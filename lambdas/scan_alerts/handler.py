"""Scan alerts: an image scan of one of our ECR repositories finished, or Inspector found a new vulnerability in one
of their images; alert the topic.

Invoked by EventBridge with
- an `ECR Image Scan` event (basic scanning) or an `Inspector2 Scan` event (enhanced scanning, initial scan).
  Counts come from the event's `finding-severity-counts`, or from `DescribeImageScanFindings` when the event has
  none. When the count of any severity at or above the threshold exceeds its allowance, one message goes to the
  alert topic.
- an `Inspector2 Finding` event (continuous scanning: a CVE published after the image was scanned). One message
  per new active finding at or above the threshold; allowances apply to a scan's totals, not to news about an
  image already accepted. Not alerted again: findings of the initial scan (its `Inspector2 Scan` event already
  counted them) and later events of the same finding (Inspector sends one on every change, e.g. new image tags).

- An event this function cannot use (wrong shape, another repository, scan not complete) is logged and ignored:
  raising would only make EventBridge retry something that can never succeed.
- An AWS API error is raised, so that Lambda retries the event and, after the retries, sends it to the DLQ.

Runs on the Lambda Python runtime with only the standard library and the runtime's boto3. Configuration:
`ALERT_TOPIC_ARN`, `SEVERITY_THRESHOLD` (e.g. HIGH), `ALLOWED_FINDINGS` (JSON, e.g. {"HIGH": 5}; missing
severities allow none), `REPOSITORIES` (comma-separated repository names this function answers for).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3

SEVERITIES = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
SCAN_EVENTS = {"ECR Image Scan": "COMPLETE", "Inspector2 Scan": "INITIAL_SCAN_COMPLETE"}
FINDING_EVENT = "Inspector2 Finding"
SUBJECT_LIMIT = 100
# A finding first observed this soon after its image was pushed belongs to the image's initial scan.
INITIAL_SCAN_WINDOW = timedelta(hours=1)
# An event this long after its finding was first observed is an update of a finding already alerted on.
NEW_FINDING_WINDOW = timedelta(hours=1)
# Inspector's documented samples write times as "Dec 3, 2021, 6:02:30 PM" (UTC); ISO 8601 is accepted as well.
_INSPECTOR_TIME = "%b %d, %Y, %I:%M:%S %p"

logger = logging.getLogger("scan_alerts")
logger.setLevel(logging.INFO)


class IgnoredEvent(Exception):
    """The event cannot or need not be acted on; the message says why."""


@dataclass(frozen=True)
class Settings:
    topic_arn: str
    threshold: str
    allowed: Mapping[str, int]
    repositories: frozenset[str]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read the function's configuration; a bad value is a deployment error and raises."""
        missing = [k for k in ("ALERT_TOPIC_ARN", "SEVERITY_THRESHOLD", "REPOSITORIES") if not env.get(k)]
        if missing:
            raise RuntimeError(f"scan_alerts is misconfigured: {', '.join(missing)} not set")
        threshold = env["SEVERITY_THRESHOLD"]
        if threshold not in SEVERITIES:
            raise RuntimeError(f"SEVERITY_THRESHOLD={threshold!r} is not one of {', '.join(SEVERITIES)}")
        try:
            allowed = json.loads(env.get("ALLOWED_FINDINGS") or "{}")
        except json.JSONDecodeError as error:
            raise RuntimeError(f"ALLOWED_FINDINGS is not JSON: {error}") from error
        if not isinstance(allowed, dict) or not all(
            k in SEVERITIES and isinstance(v, int) and v >= 0 for k, v in allowed.items()
        ):
            raise RuntimeError(f"ALLOWED_FINDINGS must map severities to counts >= 0, got {allowed!r}")
        repositories = frozenset(r.strip() for r in env["REPOSITORIES"].split(",") if r.strip())
        return cls(env["ALERT_TOPIC_ARN"], threshold, allowed, repositories)

    def gated(self) -> tuple[str, ...]:
        return SEVERITIES[SEVERITIES.index(self.threshold) :]


@dataclass(frozen=True)
class Scan:
    repository: str
    image_digest: str
    image_tags: tuple[str, ...]
    counts: dict[str, int] | None
    """Severity counts from the event; None when the event carries none."""
    account: str | None
    region: str | None


@dataclass(frozen=True)
class Finding:
    """One Inspector finding on one image of our repositories."""

    repository: str
    image_digest: str
    image_tags: tuple[str, ...]
    severity: str
    status: str
    title: str
    finding_arn: str
    vulnerability_id: str | None
    packages: tuple[str, ...]
    """`name version` of each vulnerable package, with ` (fixed in X)` when a fix is known."""
    fix_available: str | None
    first_observed: datetime | None
    image_pushed: datetime | None
    event_time: datetime | None
    account: str | None
    region: str | None


def handler(event: Any, context: Any) -> dict[str, Any]:
    settings = Settings.from_env(os.environ)
    if isinstance(event, Mapping) and event.get("detail-type") == FINDING_EVENT:
        return handle_finding(event, settings)
    try:
        scan = parse_event(event, settings.repositories)
    except IgnoredEvent as reason:
        log(logging.WARNING, "scan event ignored", reason=str(reason), event_id=_event_id(event))
        return {"status": "ignored", "reason": str(reason)}
    counts = scan.counts if scan.counts is not None else fetch_counts(scan)
    exceeded = exceeded_allowances(counts, settings)
    summary = {"repository": scan.repository, "image_digest": scan.image_digest, "counts": counts}
    if not exceeded:
        log(logging.INFO, "scan within allowances", **summary)
        return {"status": "clean", **summary}
    message_id = publish_alert(scan, counts, exceeded, settings)
    log(logging.WARNING, "scan alert published", exceeded=exceeded, message_id=message_id, **summary)
    return {"status": "alerted", "exceeded": exceeded, "message_id": message_id, **summary}


def handle_finding(event: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    try:
        finding = parse_finding(event, settings.repositories)
        skip_reason = why_not_alerted(finding, settings)
        if skip_reason:
            raise IgnoredEvent(skip_reason)
    except IgnoredEvent as reason:
        log(logging.WARNING, "finding event ignored", reason=str(reason), event_id=_event_id(event))
        return {"status": "ignored", "reason": str(reason)}
    message_id = publish_finding(finding, settings)
    summary = {"repository": finding.repository, "image_digest": finding.image_digest,
               "finding_arn": finding.finding_arn, "severity": finding.severity}  # fmt: skip
    log(logging.WARNING, "finding alert published", message_id=message_id, **summary)
    return {"status": "alerted", "message_id": message_id, **summary}


def parse_finding(event: Mapping[str, Any], repositories: frozenset[str]) -> Finding:
    """The ECR image finding an `Inspector2 Finding` event describes, or IgnoredEvent saying why not."""
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise IgnoredEvent("event has no `detail` object")
    image = _ecr_image(detail.get("resources"))
    repository = image.get("repositoryName")
    if repository not in repositories:
        raise IgnoredEvent(f"repository {repository!r} is not one of {sorted(repositories)}")
    digest = image.get("imageHash")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise IgnoredEvent(f"imageHash {digest!r} is not a sha256 digest")
    tags = image.get("imageTags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise IgnoredEvent(f"imageTags {tags!r} is not a list of strings")
    vulnerability = detail.get("packageVulnerabilityDetails")
    vulnerability = vulnerability if isinstance(vulnerability, Mapping) else {}
    return Finding(
        repository=repository,
        image_digest=digest,
        image_tags=tuple(tags),
        severity=str(detail.get("severity")),
        status=str(detail.get("status")),
        title=str(detail.get("title") or ""),
        finding_arn=str(detail.get("findingArn") or ""),
        vulnerability_id=_string_or_none(vulnerability.get("vulnerabilityId")),
        packages=_packages(vulnerability.get("vulnerablePackages")),
        fix_available=_string_or_none(detail.get("fixAvailable")),
        first_observed=parse_time(detail.get("firstObservedAt")),
        image_pushed=parse_time(image.get("pushedAt")),
        event_time=parse_time(event.get("time")),
        account=_string_or_none(event.get("account")),
        region=_string_or_none(event.get("region")),
    )


def why_not_alerted(finding: Finding, settings: Settings) -> str | None:
    """Why this finding needs no alert, or None. Unknown times never suppress an alert: a duplicate beats a miss."""
    if finding.status != "ACTIVE":
        return f"finding status is {finding.status!r}, not 'ACTIVE'"
    if finding.severity not in settings.gated():
        return f"severity {finding.severity!r} is below the threshold {settings.threshold}"
    first = finding.first_observed
    if first and finding.event_time and finding.event_time - first > NEW_FINDING_WINDOW:
        return f"an update of a finding first observed at {first.isoformat()}, alerted on then"
    if first and finding.image_pushed and first - finding.image_pushed <= INITIAL_SCAN_WINDOW:
        return "found by the image's initial scan, which its Inspector2 Scan event reports with the totals"
    return None


def parse_time(value: Any) -> datetime | None:
    """An event or finding timestamp as an aware UTC datetime; None when absent or in no known format."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.strptime(value, _INSPECTOR_TIME)
        except ValueError:
            return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _ecr_image(resources: Any) -> Mapping[str, Any]:
    for resource in resources if isinstance(resources, list) else []:
        if isinstance(resource, Mapping) and resource.get("type") == "AWS_ECR_CONTAINER_IMAGE":
            details = resource.get("details")
            image = details.get("awsEcrContainerImage") if isinstance(details, Mapping) else None
            if isinstance(image, Mapping):
                return image
    raise IgnoredEvent("the finding has no AWS_ECR_CONTAINER_IMAGE resource")


def _packages(value: Any) -> tuple[str, ...]:
    packages = []
    for package in value if isinstance(value, list) else []:
        if isinstance(package, Mapping) and package.get("name"):
            fixed = f" (fixed in {package['fixedInVersion']})" if package.get("fixedInVersion") else ""
            packages.append(f"{package['name']} {package.get('version', '?')}{fixed}")
    return tuple(packages)


def _string_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def publish_finding(finding: Finding, settings: Settings) -> str:
    subject = f"New {finding.severity} finding {finding.vulnerability_id or finding.title} in {finding.repository}"
    message = {
        "repository": finding.repository,
        "image_digest": finding.image_digest,
        "image_tags": list(finding.image_tags),
        "severity": finding.severity,
        "title": finding.title,
        "vulnerability_id": finding.vulnerability_id,
        "vulnerable_packages": list(finding.packages),
        "fix_available": finding.fix_available,
        "finding_arn": finding.finding_arn,
        "first_observed_at": finding.first_observed.isoformat() if finding.first_observed else None,
        "findings_url": _console_url(finding),
    }
    response = _client("sns").publish(
        TopicArn=settings.topic_arn,
        Subject=subject[:SUBJECT_LIMIT],
        Message=json.dumps(message, indent=2, sort_keys=True),
    )
    return str(response["MessageId"])


def parse_event(event: Any, repositories: frozenset[str]) -> Scan:
    """The scan an EventBridge event describes, or IgnoredEvent saying why it is not one we act on."""
    if not isinstance(event, Mapping):
        raise IgnoredEvent(f"event is a {type(event).__name__}, not a JSON object")
    detail_type = event.get("detail-type")
    if detail_type not in SCAN_EVENTS:
        raise IgnoredEvent(f"detail-type {detail_type!r} is not one of {sorted(SCAN_EVENTS)}")
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise IgnoredEvent("event has no `detail` object")
    status = detail.get("scan-status")
    if status != SCAN_EVENTS[detail_type]:
        raise IgnoredEvent(f"scan-status is {status!r}, not {SCAN_EVENTS[detail_type]!r}")
    repository = _repository_name(detail.get("repository-name"))
    if repository not in repositories:
        raise IgnoredEvent(f"repository {repository!r} is not one of {sorted(repositories)}")
    digest = detail.get("image-digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise IgnoredEvent(f"image-digest {digest!r} is not a sha256 digest")
    tags = detail.get("image-tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise IgnoredEvent(f"image-tags {tags!r} is not a list of strings")
    return Scan(
        repository=repository,
        image_digest=digest,
        image_tags=tuple(tags),
        counts=_event_counts(detail.get("finding-severity-counts")),
        account=event.get("account") if isinstance(event.get("account"), str) else None,
        region=event.get("region") if isinstance(event.get("region"), str) else None,
    )


def _repository_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise IgnoredEvent(f"repository-name {value!r} is not a repository name")
    # Inspector names the repository by ARN: arn:aws:ecr:<region>:<account>:repository/<name>.
    return value.split(":repository/", 1)[1] if value.startswith("arn:") and ":repository/" in value else value


def _event_counts(value: Any) -> dict[str, int] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(v, int) and v >= 0 for v in value.values()):
        raise IgnoredEvent(f"finding-severity-counts {value!r} is not a map of counts")
    return {str(k): int(v) for k, v in value.items() if k in SEVERITIES}


def fetch_counts(scan: Scan) -> dict[str, int]:
    """Severity counts from ECR: the reported totals, else a tally of every finding over all pages."""
    pages = (
        _client("ecr")
        .get_paginator("describe_image_scan_findings")
        .paginate(repositoryName=scan.repository, imageId={"imageDigest": scan.image_digest})
    )
    tally: dict[str, int] = {}
    for page in pages:
        findings = page.get("imageScanFindings") or {}
        totals = findings.get("findingSeverityCounts")
        if totals:
            return {k: int(v) for k, v in totals.items() if k in SEVERITIES}
        for finding in [*findings.get("findings", []), *findings.get("enhancedFindings", [])]:
            severity = finding.get("severity")
            if severity in SEVERITIES:
                tally[severity] = tally.get(severity, 0) + 1
    return tally


def exceeded_allowances(counts: Mapping[str, int], settings: Settings) -> dict[str, int]:
    """Severity -> count, for each gated severity whose count is above its allowance."""
    return {
        severity: counts.get(severity, 0)
        for severity in settings.gated()
        if counts.get(severity, 0) > settings.allowed.get(severity, 0)
    }


def publish_alert(scan: Scan, counts: Mapping[str, int], exceeded: Mapping[str, int], settings: Settings) -> str:
    worst = ", ".join(f"{count} {severity}" for severity, count in sorted(exceeded.items(), key=_by_severity))
    subject = f"Image scan: {worst} in {scan.repository}"
    message = {
        "repository": scan.repository,
        "image_digest": scan.image_digest,
        "image_tags": list(scan.image_tags),
        "severity_counts": dict(counts),
        "exceeded": dict(exceeded),
        "allowed": {s: settings.allowed.get(s, 0) for s in settings.gated()},
        "findings_url": _console_url(scan),
    }
    response = _client("sns").publish(
        TopicArn=settings.topic_arn,
        Subject=subject[:SUBJECT_LIMIT],
        Message=json.dumps(message, indent=2, sort_keys=True),
    )
    return str(response["MessageId"])


def _by_severity(item: tuple[str, int]) -> int:
    return -SEVERITIES.index(item[0])


def _console_url(scan: Scan | Finding) -> str | None:
    if not scan.account or not scan.region:
        return None
    return (
        f"https://{scan.region}.console.aws.amazon.com/ecr/repositories/private/{scan.account}/"
        f"{scan.repository}/_/image/{scan.image_digest}/scan-results?region={scan.region}"
    )


def _event_id(event: Any) -> Any:
    return event.get("id") if isinstance(event, Mapping) else None


def log(level: int, message: str, **fields: Any) -> None:
    """One JSON object per line: CloudWatch Logs Insights can filter on every field."""
    logger.log(level, json.dumps({"message": message, **fields}, sort_keys=True, default=str))


@cache
def _client(service: str) -> Any:
    return boto3.client(service)
