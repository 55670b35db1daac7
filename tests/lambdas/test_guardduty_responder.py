"""The GuardDuty responder end to end against moto (ECS, EC2, S3 with KMS, SNS), driven by a Runtime Monitoring
finding in GuardDuty's documented shape for ECS Fargate (tests/lambdas/events/guardduty-runtime-fargate.json:
the EventBridge envelope around a finding as GetFindings describes it, `resourceType: ECSCluster`,
`ecsClusterDetails.taskDetails`, `service.runtimeDetails.process`)."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.ec2.models.elastic_network_interfaces import NetworkInterface

from lambdas.guardduty_responder import handler

EVENTS = Path(__file__).parent / "events"
REGION = "us-east-1"
CLUSTER = "jobs-prod"

# moto 5.2.5's RunTask with awsvpc reads `private_dns_name` from an ENI class that does not define it.
if not hasattr(NetworkInterface, "private_dns_name"):
    NetworkInterface.private_dns_name = property(  # pyright: ignore[reportAttributeAccessIssue]
        lambda eni: f"ip-{eni.private_ip_address.replace('.', '-')}.ec2.internal"
    )


def finding_event(task_arn: str, *, severity: float = 8.0, cluster_arn: str | None = None) -> dict[str, Any]:
    """The documented sample, pointed at a task moto runs, at the given severity."""
    event = json.loads((EVENTS / "guardduty-runtime-fargate.json").read_text())
    details = event["detail"]["resource"]["ecsClusterDetails"]
    details["taskDetails"]["arn"] = task_arn
    if cluster_arn is not None:
        details["arn"] = cluster_arn
    event["detail"]["severity"] = severity
    return event


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Two Fargate tasks on our cluster and one on another, their VPC and groups, the audit bucket (KMS), the alert
    topic with a queue subscribed to read what was published, and the function's env."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    clear_clients = handler._client.cache_clear
    clear_clients()
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        ecs = boto3.client("ecs", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        service_group = ec2.create_security_group(GroupName="api", Description="api tasks", VpcId=vpc)["GroupId"]
        quarantine = ec2.create_security_group(GroupName="quarantine", Description="no egress", VpcId=vpc)["GroupId"]
        task_definition = ecs.register_task_definition(
            family="jobs-prod-api", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256",
            memory="512", containerDefinitions=[{"name": "api", "image": "api", "memory": 512}],
        )["taskDefinition"]["taskDefinitionArn"]  # fmt: skip
        network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [service_group]}}

        def run(cluster: str, count: int) -> list[str]:
            ecs.create_cluster(clusterName=cluster)
            tasks = ecs.run_task(cluster=cluster, taskDefinition=task_definition, launchType="FARGATE",
                                 count=count, networkConfiguration=network)["tasks"]  # fmt: skip
            return [task["taskArn"] for task in tasks]

        ours = run(CLUSTER, 2)
        theirs = run("other-team", 1)
        kms = boto3.client("kms", region_name=REGION)
        key = kms.create_key(Description="audit")["KeyMetadata"]["Arn"]
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="jobs-prod-guardduty-audit")
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="jobs-prod-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        cluster_arn = ecs.describe_clusters(clusters=[CLUSTER])["clusters"][0]["clusterArn"]
        monkeypatch.setenv("ALERT_TOPIC_ARN", topic)
        monkeypatch.setenv("CLUSTER_ARN", cluster_arn)
        monkeypatch.setenv("AUDIT_BUCKET", "jobs-prod-guardduty-audit")
        monkeypatch.setenv("AUDIT_KMS_KEY_ARN", key)
        monkeypatch.setenv("RESPONSE_SEVERITY", "HIGH")
        monkeypatch.setenv("QUARANTINE_SECURITY_GROUP_ID", quarantine)
        yield {"ecs": ecs, "ec2": ec2, "s3": s3, "sqs": sqs, "queue": queue, "ours": ours, "theirs": theirs,
               "quarantine": quarantine, "service_group": service_group, "key": key}  # fmt: skip
    clear_clients()


TASK = f"arn:aws:ecs:{REGION}:123456789012:task/{CLUSTER}/0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture
def settings_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The function's configuration without any AWS service: for events it must drop before calling one."""
    for key, value in {
        "ALERT_TOPIC_ARN": f"arn:aws:sns:{REGION}:123456789012:jobs-prod-alerts",
        "CLUSTER_ARN": f"arn:aws:ecs:{REGION}:123456789012:cluster/{CLUSTER}",
        "AUDIT_BUCKET": "jobs-prod-guardduty-audit", "RESPONSE_SEVERITY": "HIGH",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)


def published(aws: dict[str, Any]) -> list[dict[str, Any]]:
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(json.loads(m["Body"])["Message"]) | {"subject": json.loads(m["Body"])["Subject"]}
            for m in messages]  # fmt: skip


def task(aws: dict[str, Any], arn: str) -> dict[str, Any]:
    cluster = arn.split(":task/")[1].split("/")[0]
    return aws["ecs"].describe_tasks(cluster=cluster, tasks=[arn], include=["TAGS"])["tasks"][0]


def interface_groups(aws: dict[str, Any], arn: str) -> list[str]:
    (interface,) = handler._network_interfaces(task(aws, arn))
    described = aws["ec2"].describe_network_interfaces(NetworkInterfaceIds=[interface])["NetworkInterfaces"][0]
    return [group["GroupId"] for group in described["Groups"]]


def audit_records(aws: dict[str, Any]) -> dict[str, dict[str, Any]]:
    listed = aws["s3"].list_objects_v2(Bucket="jobs-prod-guardduty-audit").get("Contents", [])
    return {item["Key"]: aws["s3"].get_object(Bucket="jobs-prod-guardduty-audit", Key=item["Key"]) for item in listed}


def test_a_high_severity_finding_quarantines_tags_and_stops_exactly_that_task_and_alerts(
    aws: dict[str, Any],
) -> None:
    target, bystander = aws["ours"]
    result = handler.handle(finding_event(target), None)

    assert result["status"] == "contained"
    assert result["isolated"] is True and result["stopped"] is True
    stopped = task(aws, target)
    assert stopped["lastStatus"] == "STOPPED"
    assert "Execution:Runtime/NewBinaryExecuted" in stopped["stoppedReason"]
    tags = {tag["key"]: tag["value"] for tag in stopped["tags"]}
    assert tags["guardduty-finding-id"] == "a6c5e1f0b2d34c7e9f8a1b2c3d4e5f60"
    assert tags["guardduty-response"] == "quarantined-and-stopped"
    assert interface_groups(aws, target) == [aws["quarantine"]]
    # The other task of our cluster and the other team's task are untouched.
    for other in (bystander, aws["theirs"][0]):
        assert task(aws, other)["desiredStatus"] == "RUNNING"
        assert task(aws, other)["stoppedReason"] == ""
        assert interface_groups(aws, other) == [aws["service_group"]]
    (alert,) = published(aws)
    assert alert["subject"] == "GuardDuty HIGH: Stopped task Execution:Runtime/NewBinaryExecuted"
    assert alert["finding"]["task_arn"] == target
    assert alert["finding"]["process"]["executablePath"] == "/tmp/.x/xmrig"
    (record,) = audit_records(aws).values()
    assert record["ServerSideEncryption"] == "aws:kms"
    assert record["SSEKMSKeyId"] == aws["key"]
    assert json.loads(record["Body"].read())["response"]["stopped"] is True


@pytest.mark.parametrize(
    ("severity", "cluster"),
    [(5.0, None), (8.0, "arn:aws:ecs:us-east-1:123456789012:cluster/other-team")],
    ids=["medium-severity", "another-cluster"],
)
def test_a_low_severity_finding_or_another_clusters_only_alerts(
    aws: dict[str, Any], severity: float, cluster: str | None
) -> None:
    target = aws["theirs"][0] if cluster else aws["ours"][0]
    result = handler.handle(finding_event(target, severity=severity, cluster_arn=cluster), None)

    assert result["status"] == "alerted"
    assert result["stopped"] is False and result["tagged"] is False
    for arn in [*aws["ours"], *aws["theirs"]]:
        assert task(aws, arn)["desiredStatus"] == "RUNNING"
        assert task(aws, arn)["tags"] == []
        assert interface_groups(aws, arn) == [aws["service_group"]]
    (alert,) = published(aws)
    assert alert["response"]["action"] == "alerted"
    assert ("not ours" in alert["response"]["reason"]) if cluster else ("below HIGH" in alert["response"]["reason"])


def test_a_replayed_event_is_a_no_op(aws: dict[str, Any]) -> None:
    event = finding_event(aws["ours"][0])
    assert handler.handle(event, None)["status"] == "contained"
    assert len(published(aws)) == 1

    replay = handler.handle(copy.deepcopy(event), None)

    assert replay["status"] == "duplicate"
    assert published(aws) == []
    assert len(audit_records(aws)) == 1


def test_a_refused_quarantine_is_recorded_and_the_task_still_stops(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # ECS manages a Fargate task's interface, and EC2 may refuse to change it: the refusal must not stop the response.
    ec2 = boto3.client("ec2", region_name=REGION)
    stubber = Stubber(ec2)
    stubber.add_client_error(
        "modify_network_interface_attribute",
        service_error_code="OperationNotPermitted",
        service_message="The network interface is managed by another service.",
    )
    real = handler._client
    monkeypatch.setattr(handler, "_client", lambda service: ec2 if service == "ec2" else real(service))
    with stubber:
        result = handler.handle(finding_event(aws["ours"][0]), None)

    assert result["status"] == "contained"
    assert result["isolated"] is False
    assert result["isolation_error"] == "OperationNotPermitted: The network interface is managed by another service."
    assert task(aws, aws["ours"][0])["lastStatus"] == "STOPPED"
    (alert,) = published(aws)
    assert alert["response"]["isolation_error"].startswith("OperationNotPermitted")


def test_a_malformed_event_is_logged_and_dropped(aws: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    event = json.loads((EVENTS / "guardduty-malformed.json").read_text())
    with caplog.at_level(logging.WARNING, logger="guardduty_responder"):
        result = handler.handle(event, None)

    assert result == {"status": "ignored", "reason": "severity 'HIGH' is not a number"}
    (record,) = caplog.records
    assert json.loads(record.getMessage())["event_id"] == "0badf00d-1111-2222-3333-444455556666"
    assert published(aws) == []
    assert audit_records(aws) == {}
    assert all(task(aws, arn)["desiredStatus"] == "RUNNING" for arn in aws["ours"])


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: ["not", "an", "event"], "event is a list"),
        (lambda e: {**e, "source": "aws.inspector2"}, "is not a finding"),
        (lambda e: {**e, "detail": None}, "no `detail` object"),
        (lambda e: {**e, "detail": {**e["detail"], "id": ""}}, "is not an id"),
        (lambda e: {**e, "detail": {**e["detail"], "resource": {"resourceType": "Instance"}}}, "'Instance' is not"),
    ],
)
def test_events_it_cannot_use_are_dropped_with_the_reason(
    settings_only: None, monkeypatch: pytest.MonkeyPatch, mutate: Any, reason: str
) -> None:
    monkeypatch.setattr(handler, "_client", lambda service: pytest.fail(f"dropped events call no AWS API ({service})"))
    result = handler.handle(mutate(finding_event(TASK)), None)
    assert result["status"] == "ignored"
    assert reason in result["reason"]


def test_a_bad_configuration_raises(settings_only: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPONSE_SEVERITY", "SEVERE")
    with pytest.raises(RuntimeError, match="RESPONSE_SEVERITY='SEVERE' is not one of LOW, MEDIUM, HIGH, CRITICAL"):
        handler.handle(finding_event(TASK), None)
