"""Security incident: the runtime-security responder (lambdas/guardduty_responder, docs/runtime-security.md)
handles GuardDuty Runtime Monitoring findings for running ECS tasks, under moto, as EventBridge would deliver them:
a high-severity finding for one of our cluster's tasks, the same event again (EventBridge delivers at least once,
GuardDuty re-sends a finding on each new occurrence), a low-severity one for another of our tasks, and a critical
one for another team's cluster. Expected: exactly the first task is stopped (its service replaces it), the replay
changes nothing, the others only alert, one audit record per finding handled. The findings follow GuardDuty's ECS
runtime finding shape (field names checked against botocore's model in tests/stress)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from stress.report import Result

REGION = "us-east-1"
ACCOUNT = "123456789012"
CLUSTER, OTHER_CLUSTER = "jobs-stress", "other-team"
AUDIT_BUCKET, TOPIC = "jobs-stress-guardduty-audit", "jobs-stress-alerts"


@dataclass(frozen=True)
class World:
    """The moto account the responder acts in: our cluster's two tasks, another cluster's task, topic, bucket."""

    ecs: Any
    s3: Any
    sqs: Any
    inbox: str
    cluster_arn: str
    other_cluster_arn: str
    definition_arn: str
    ours: list[str]
    theirs: str

    def status(self, cluster_arn: str, task_arn: str) -> str:
        """The task's desired status: STOPPED once StopTask was called (moto steps lastStatus on every describe)."""
        return str(self.ecs.describe_tasks(cluster=cluster_arn, tasks=[task_arn])["tasks"][0]["desiredStatus"])

    def alerts(self) -> int:
        received = self.sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10)
        return len(received.get("Messages", []))

    def audit_records(self) -> int:
        return int(self.s3.list_objects_v2(Bucket=AUDIT_BUCKET).get("KeyCount", 0))


def run(short: bool) -> Result:
    del short  # four findings either way
    from lambdas.guardduty_responder import handler

    result = Result("security-incident")
    with responder_account(handler) as world:
        high = finding_event(world.cluster_arn, world.ours[0], world.definition_arn, severity=8.0)
        findings = [
            high,
            high,
            finding_event(world.cluster_arn, world.ours[1], world.definition_arn, severity=3.0),
            finding_event(world.other_cluster_arn, world.theirs, world.definition_arn, severity=9.0),
        ]
        started = time.monotonic()
        answers = [handler.handle(event, None) for event in findings]
        result.recovery_seconds = round(time.monotonic() - started, 2)
        statuses = [world.status(world.cluster_arn, arn) for arn in world.ours]
        theirs = world.status(world.other_cluster_arn, world.theirs)
        alerts, records = world.alerts(), world.audit_records()
    result.jobs = len(findings)
    result.accepted = sum(1 for answer in answers if answer["status"] in ("contained", "alerted", "duplicate"))
    # From what the responder left behind, not from its answers: one audit record and one alert per distinct
    # finding; any more means a finding (the replay) was handled twice.
    distinct = len({event["detail"]["id"] for event in findings})
    result.succeeded = min(records, distinct)
    result.duplicated = max(records, alerts, distinct) - distinct
    result.notes += [
        f"responses: {', '.join(answer['status'] for answer in answers)}",
        f"our tasks afterwards: {statuses[0]} (high severity), {statuses[1]} (low severity); another cluster's: {theirs}",
        f"alerts published: {alerts}; audit records: {records}; recovery_seconds = time to handle all four findings",
    ]
    result.expect(
        [a["status"] for a in answers] == ["contained", "duplicate", "alerted", "alerted"], f"answers {answers}"
    )
    result.expect(statuses == ["STOPPED", "RUNNING"], f"our tasks ended {statuses}; expected only the first stopped")
    result.expect(theirs == "RUNNING", f"another cluster's task is {theirs}; the responder must never touch it")
    result.expect(alerts == 3 and records == 3, f"{alerts} alerts and {records} audit records; expected 3 of each")
    return result


@contextmanager
def responder_account(handler: Any) -> Iterator[World]:
    """A moto account with the responder's environment set (quarantine off: tests/lambdas covers it)."""
    import boto3
    from moto import mock_aws

    saved = dict(os.environ)
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    )
    handler._client.cache_clear()
    try:
        with mock_aws():
            ecs = boto3.client("ecs", region_name=REGION)
            definition = ecs.register_task_definition(
                family="api", containerDefinitions=[{"name": "api", "image": "api:stress", "memory": 512}]
            )["taskDefinition"]["taskDefinitionArn"]

            def tasks(cluster: str, count: int) -> tuple[str, list[str]]:
                arn = ecs.create_cluster(clusterName=cluster)["cluster"]["clusterArn"]
                started = ecs.run_task(cluster=arn, taskDefinition=definition, launchType="FARGATE", count=count)
                return arn, [task["taskArn"] for task in started["tasks"]]

            cluster_arn, ours = tasks(CLUSTER, 2)
            other_arn, (theirs,) = tasks(OTHER_CLUSTER, 1)
            s3, sns, sqs = (boto3.client(name, region_name=REGION) for name in ("s3", "sns", "sqs"))
            s3.create_bucket(Bucket=AUDIT_BUCKET)
            topic = sns.create_topic(Name=TOPIC)["TopicArn"]
            inbox = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
            inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
            os.environ.update(
                {"ALERT_TOPIC_ARN": topic, "CLUSTER_ARN": cluster_arn, "AUDIT_BUCKET": AUDIT_BUCKET,
                 "RESPONSE_SEVERITY": "HIGH"}
            )  # fmt: skip
            yield World(ecs, s3, sqs, inbox, cluster_arn, other_arn, definition, ours, theirs)
    finally:
        handler._client.cache_clear()
        os.environ.clear()
        os.environ.update(saved)


def finding_event(
    cluster_arn: str, task_arn: str, task_definition_arn: str, *, severity: float = 8.0
) -> dict[str, Any]:
    """EventBridge's event for a GuardDuty Runtime Monitoring finding on a Fargate task."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": ACCOUNT,
        "region": REGION,
        "resources": [],
        "detail": {
            "schemaVersion": "2.0",
            "accountId": ACCOUNT,
            "region": REGION,
            "id": uuid.uuid4().hex,
            "type": "Execution:Runtime/NewBinaryExecuted",
            "severity": severity,
            "title": "A newly created or recently modified binary file has been executed in a container.",
            "resource": {
                "resourceType": "ECSCluster",
                "ecsClusterDetails": {
                    "name": cluster_arn.rsplit("/", 1)[-1],
                    "arn": cluster_arn,
                    "status": "ACTIVE",
                    "taskDetails": {
                        "arn": task_arn,
                        "definitionArn": task_definition_arn,
                        "version": "1",
                        "launchType": "FARGATE",
                        "group": "service:api",
                        "containers": [{"name": "api", "image": "api:stress"}],
                    },
                },
            },
        },
    }
