"""The scan alerts handler against recorded ECR / Inspector scan events, with ECR and SNS served by moto."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from lambdas.scan_alerts import handler

EVENTS = Path(__file__).parent / "events"
REGION = "us-east-1"
REPOSITORIES = "app-dev-api,app-dev-worker"


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """moto ECR + SNS, a topic with a queue subscribed to read what was published, and the function's env."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    handler._client.cache_clear()
    with mock_aws():
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="app-dev-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        monkeypatch.setenv("ALERT_TOPIC_ARN", topic)
        monkeypatch.setenv("SEVERITY_THRESHOLD", "HIGH")
        monkeypatch.setenv("ALLOWED_FINDINGS", "{}")
        monkeypatch.setenv("REPOSITORIES", REPOSITORIES)
        yield {"topic": topic, "queue": queue, "sqs": sqs}
    handler._client.cache_clear()


def published(aws: dict[str, Any]) -> list[dict[str, Any]]:
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_criticals_publish_one_alert_with_the_counts_that_exceeded(aws: dict[str, Any]) -> None:
    result = handler.handler(event("ecr-scan-critical"), None)
    assert result["status"] == "alerted"
    assert result["exceeded"] == {"HIGH": 5, "CRITICAL": 2}
    (notification,) = published(aws)
    assert notification["Subject"] == "Image scan: 2 CRITICAL, 5 HIGH in app-dev-api"
    message = json.loads(notification["Message"])
    assert message["repository"] == "app-dev-api"
    assert message["image_digest"] == event("ecr-scan-critical")["detail"]["image-digest"]
    assert message["image_tags"] == ["0123abc"]
    assert message["exceeded"] == {"CRITICAL": 2, "HIGH": 5}
    assert message["allowed"] == {"HIGH": 0, "CRITICAL": 0}
    assert message["severity_counts"]["MEDIUM"] == 9
    assert message["findings_url"].startswith("https://us-east-1.console.aws.amazon.com/ecr/repositories/private/")


def test_a_clean_scan_publishes_nothing(aws: dict[str, Any]) -> None:
    result = handler.handler(event("ecr-scan-clean"), None)
    assert result["status"] == "clean"
    assert result["counts"] == {"MEDIUM": 2, "LOW": 6}
    assert published(aws) == []


def test_allowances_tolerate_that_many_findings_per_severity(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOWED_FINDINGS", '{"HIGH": 5, "CRITICAL": 2}')
    assert handler.handler(event("ecr-scan-critical"), None)["status"] == "clean"
    monkeypatch.setenv("ALLOWED_FINDINGS", '{"HIGH": 4, "CRITICAL": 2}')
    assert handler.handler(event("ecr-scan-critical"), None)["exceeded"] == {"HIGH": 5}


def test_a_lower_threshold_counts_medium_findings(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEVERITY_THRESHOLD", "MEDIUM")
    result = handler.handler(event("ecr-scan-clean"), None)
    assert result["status"] == "alerted"
    assert result["exceeded"] == {"MEDIUM": 2}


def test_a_malformed_event_is_logged_and_ignored_without_raising(
    aws: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="scan_alerts"):
        result = handler.handler(event("ecr-scan-malformed"), None)
    assert result == {"status": "ignored", "reason": "repository-name None is not a repository name"}
    (record,) = caplog.records
    assert json.loads(record.getMessage()) == {
        "message": "scan event ignored",
        "reason": "repository-name None is not a repository name",
        "event_id": "c0ffee00-1111-2222-3333-444455556666",
    }
    assert published(aws) == []


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: "not an event", "event is a str, not a JSON object"),
        (lambda e: {**e, "detail-type": "ECR Image Action"}, "detail-type 'ECR Image Action' is not one of"),
        (lambda e: {**e, "detail": "COMPLETE"}, "event has no `detail` object"),
        (lambda e: {**e, "detail": {**e["detail"], "scan-status": "FAILED"}}, "scan-status is 'FAILED'"),
        (lambda e: {**e, "detail": {**e["detail"], "repository-name": "other"}}, "repository 'other' is not one of"),
        (lambda e: {**e, "detail": {**e["detail"], "image-digest": "abc"}}, "image-digest 'abc' is not a sha256"),
        (
            lambda e: {**e, "detail": {**e["detail"], "finding-severity-counts": {"HIGH": -1}}},
            "finding-severity-counts .* is not a map of counts",
        ),
    ],
)
def test_events_it_cannot_use_are_ignored_with_the_reason(aws: dict[str, Any], mutate: Any, reason: str) -> None:
    result = handler.handler(mutate(event("ecr-scan-critical")), None)
    assert result["status"] == "ignored"
    assert re.search(reason, result["reason"])
    assert published(aws) == []


def test_inspector_events_name_the_repository_by_arn_and_carry_a_total(aws: dict[str, Any]) -> None:
    result = handler.handler(event("inspector-initial-scan"), None)
    assert result["status"] == "alerted"
    assert result["repository"] == "app-dev-worker"
    assert result["counts"] == {"CRITICAL": 0, "HIGH": 3, "MEDIUM": 12}
    assert result["exceeded"] == {"HIGH": 3}


def push_and_scan(repository: str) -> str:
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName=repository)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {}, "layers": []})  # fmt: skip
    digest = ecr.put_image(repositoryName=repository, imageManifest=manifest, imageTag="0123abc")["image"]["imageId"]
    ecr.start_image_scan(repositoryName=repository, imageId={"imageTag": "0123abc"})
    return digest["imageDigest"]


def configure_findings(repository: str, digest: str, findings: dict[str, Any]) -> None:
    """moto's documented way to set what DescribeImageScanFindings returns."""
    response = {"registryId": "123456789012", "repositoryName": repository, "imageId": {"imageDigest": digest},
                "imageScanStatus": {"status": "COMPLETE"}, "imageScanFindings": findings}  # fmt: skip
    requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/ecr/scan-finding-results",
        json={"results": [response], "region": REGION},
        timeout=5,
    ).raise_for_status()


def test_without_counts_in_the_event_it_reads_them_from_ecr(aws: dict[str, Any]) -> None:
    digest = push_and_scan("app-dev-api")
    configure_findings("app-dev-api", digest, {"findingSeverityCounts": {"CRITICAL": 1, "LOW": 4}})
    scan = event("ecr-scan-without-counts")
    scan["detail"]["image-digest"] = digest
    result = handler.handler(scan, None)
    assert result["status"] == "alerted"
    assert result["counts"] == {"CRITICAL": 1, "LOW": 4}
    assert len(published(aws)) == 1


def test_without_totals_from_ecr_it_tallies_the_findings_of_every_page(aws: dict[str, Any]) -> None:
    ecr = handler._client("ecr")  # the client the handler will use, stubbed page by page
    scan = handler.parse_event(event("ecr-scan-without-counts"), frozenset(REPOSITORIES.split(",")))
    request = {"repositoryName": "app-dev-api", "imageId": {"imageDigest": scan.image_digest}}
    pages = [
        {"imageScanFindings": {"enhancedFindings": [{"severity": "CRITICAL"}, {"severity": "HIGH"}]}, "nextToken": "2"},
        {"imageScanFindings": {"enhancedFindings": [{"severity": "HIGH"}, {"severity": "UNTRIAGED"}],
                               "findings": [{"severity": "LOW"}]}},
    ]  # fmt: skip
    with Stubber(ecr) as stub:
        stub.add_response("describe_image_scan_findings", pages[0], request)
        stub.add_response("describe_image_scan_findings", pages[1], {**request, "nextToken": "2"})
        counts = handler.fetch_counts(scan)
        stub.assert_no_pending_responses()
    assert counts == {"CRITICAL": 1, "HIGH": 2, "LOW": 1}


def test_aws_errors_are_raised_so_the_event_is_retried(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    scan = event("ecr-scan-without-counts")  # the image does not exist in ECR
    with pytest.raises(ClientError, match="RepositoryNotFoundException"):
        handler.handler(scan, None)
    monkeypatch.setenv("ALERT_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:deleted-topic")
    with pytest.raises(ClientError, match="NotFound"):
        handler.handler(event("ecr-scan-critical"), None)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SEVERITY_THRESHOLD", "SEVERE", "SEVERITY_THRESHOLD='SEVERE' is not one of"),
        ("ALLOWED_FINDINGS", "{high: 1}", "ALLOWED_FINDINGS is not JSON"),
        ("ALLOWED_FINDINGS", '{"HIGH": -1}', "ALLOWED_FINDINGS must map severities to counts >= 0"),
        ("REPOSITORIES", "", "REPOSITORIES not set"),
    ],
)
def test_misconfiguration_is_a_deployment_error(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(RuntimeError, match=message):
        handler.handler(event("ecr-scan-critical"), None)


# --- Documented sample events ---
# Each is AWS's published sample, unchanged except for the repository name (ours instead of `my-repository-name` /
# `amazon/amazon-ecs-sample`), from github.com/awsdocs/amazon-ecr-user-guide:
# - ecr-scan-documented.json: doc_source/ecr-eventbridge.md @ 1e8d7c3f, "Event for an image scan completed
#   (basic scanning)";
# - inspector-scan-documented.json and inspector-finding-documented.json: doc_source/image-scanning-enhanced.md
#   @ 002ce73d, "Event for an initial image scan (enhanced scanning)" and "Event for an image scan finding update
#   (enhanced scanning)". The same finding sample is in the Inspector user guide (eventbridge-integration).
# The sample digests end in `EXAMPLE` and are shorter than real ones; the handler only requires `sha256:`.


def test_the_documented_basic_scan_event_alerts_on_its_criticals(aws: dict[str, Any]) -> None:
    result = handler.handler(event("ecr-scan-documented"), None)
    assert result["status"] == "alerted"
    assert result["exceeded"] == {"CRITICAL": 10}
    assert published(aws)[0]["Subject"] == "Image scan: 10 CRITICAL in app-dev-api"


def test_the_documented_inspector_initial_scan_event_alerts_on_its_totals(aws: dict[str, Any]) -> None:
    result = handler.handler(event("inspector-scan-documented"), None)
    assert result["status"] == "alerted"
    assert result["repository"] == "app-dev-worker"
    assert result["exceeded"] == {"HIGH": 61, "CRITICAL": 7}


def finding(pushed_at: str = "Aug 1, 2021, 9:00:00 AM", **detail: Any) -> dict[str, Any]:
    """The documented finding, as continuous scanning reports a new CVE in an image pushed months before."""
    sample = event("inspector-finding-documented")
    sample["detail"] |= {"severity": "HIGH", **detail}
    sample["detail"]["resources"][0]["details"]["awsEcrContainerImage"]["pushedAt"] = pushed_at
    return sample


def test_a_new_finding_on_an_image_scanned_long_ago_publishes_one_alert_naming_the_cve(aws: dict[str, Any]) -> None:
    result = handler.handler(finding(fixAvailable="YES"), None)
    assert result["status"] == "alerted"
    assert result["severity"] == "HIGH"
    (notification,) = published(aws)
    assert notification["Subject"] == "New HIGH finding CVE-2019-17498 in app-dev-api"
    message = json.loads(notification["Message"])
    assert message == {
        "repository": "app-dev-api",
        "image_digest": "sha256:36c7b282abd0186e01419f2e58743e1bf635808231049bbc9d77e5EXAMPLE",
        "image_tags": ["latest"],
        "severity": "HIGH",
        "title": "CVE-2019-17498 - libssh2",
        "vulnerability_id": "CVE-2019-17498",
        "vulnerable_packages": ["libssh2 1.4.3"],
        "fix_available": "YES",
        "finding_arn": "arn:aws:inspector2:us-east-2:123456789012:finding/be674aaddd0f75ac632055EXAMPLE",
        "first_observed_at": "2021-12-03T18:02:30+00:00",
        "findings_url": "https://us-east-2.console.aws.amazon.com/ecr/repositories/private/123456789012/app-dev-api/_/"
        "image/sha256:36c7b282abd0186e01419f2e58743e1bf635808231049bbc9d77e5EXAMPLE/scan-results?region=us-east-2",
    }


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        # The sample as published: a MEDIUM finding 17 s after the push (the rule filters severity too).
        (lambda: event("inspector-finding-documented"), "severity 'MEDIUM' is below the threshold HIGH"),
        (lambda: finding(pushed_at="Dec 3, 2021, 6:02:13 PM"), "found by the image's initial scan"),
        (lambda: finding(status="CLOSED"), "finding status is 'CLOSED'"),
        (lambda: {**finding(), "time": "2021-12-10T09:00:00Z"}, "an update of a finding first observed at"),
        (lambda: {**finding(), "detail": {**finding()["detail"], "resources": []}}, "no AWS_ECR_CONTAINER_IMAGE"),
    ],
    ids=["documented-medium", "initial-scan", "closed", "later-update", "no-image"],
)
def test_findings_that_need_no_alert_are_ignored_with_the_reason(aws: dict[str, Any], sample: Any, reason: str) -> None:
    result = handler.handler(sample(), None)
    assert result["status"] == "ignored"
    assert reason in result["reason"]
    assert published(aws) == []


def test_a_finding_in_another_repository_is_ignored(aws: dict[str, Any]) -> None:
    other = finding()
    other["detail"]["resources"][0]["details"]["awsEcrContainerImage"]["repositoryName"] = "team-b-api"
    assert "repository 'team-b-api' is not one of" in handler.handler(other, None)["reason"]


def test_unreadable_times_never_suppress_an_alert(aws: dict[str, Any]) -> None:
    result = handler.handler(finding(pushed_at="yesterday", firstObservedAt=None), None)
    assert result["status"] == "alerted"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Dec 3, 2021, 6:02:30 PM", "2021-12-03T18:02:30+00:00"), ("2023-01-19T22:46:15Z", "2023-01-19T22:46:15+00:00"),
     ("2023-01-19T22:46:15.123+01:00", "2023-01-19T21:46:15.123000+00:00"), ("soon", None), (None, None)],
)  # fmt: skip
def test_inspector_and_iso_times_are_read_as_utc(text: Any, expected: str | None) -> None:
    parsed = handler.parse_time(text)
    assert (parsed.isoformat() if parsed else None) == expected
