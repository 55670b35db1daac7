"""Scan alerts: an image scan of one of our ECR repositories finished; alert when findings exceed the allowances.

Invoked by EventBridge with an `ECR Image Scan` event (basic scanning) or an `Inspector2 Scan` event (enhanced
scanning). Counts come from the event's `finding-severity-counts`, or from `DescribeImageScanFindings` when the
event has none. When the count of any severity at or above the threshold exceeds its allowance, one message goes
to the alert topic.

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
from functools import cache
from typing import Any

import boto3

SEVERITIES = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
SCAN_EVENTS = {"ECR Image Scan": "COMPLETE", "Inspector2 Scan": "INITIAL_SCAN_COMPLETE"}
SUBJECT_LIMIT = 100

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


def handler(event: Any, context: Any) -> dict[str, Any]:
    settings = Settings.from_env(os.environ)
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


def _console_url(scan: Scan) -> str | None:
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
