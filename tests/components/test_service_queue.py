"""A service's own queue: encrypted with the owner's key, a dead-letter queue, alarms, the owner's consume grant and
a sender's send grant each on exactly that queue, and the owner's scaling on its backlog per task."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components.microservice import Microservice
from components.service_queue import ServiceQueueArgs
from tests.components.test_microservice import args
from tests.support import Recorded, build, env_map, inputs, json_input

TOPIC = "arn:aws:sns:us-east-1:210987654321:shop-dev-alerts"
OWNER_KEY = "arn:aws:kms:us-east-1:123456789012:key/shop-dev-notifications-key-key-id"


def owner_and_sender(**queue: Any) -> Recorded:
    def program() -> None:
        owner = Microservice(
            "notifications",
            args("notifications", port=8085, alert_topic_arn=TOPIC, queue=ServiceQueueArgs(**queue)),
        )
        assert owner.queue is not None
        Microservice(
            "orders",
            args("orders", attachments=[owner.queue.sender_attachment("notifications", "NOTIFICATIONS_QUEUE_URL")]),
        )

    return build(program)


@pytest.fixture(scope="module")
def shop() -> Recorded:
    return owner_and_sender()


def queues(recorded: Recorded) -> dict[str, dict[str, Any]]:
    return {inputs(r)["name"]: inputs(r) for r in recorded.of_type("aws:sqs/queue:Queue")}


def statements(recorded: Recorded, policy: str) -> dict[str, dict[str, Any]]:
    document = json_input(recorded.find("aws:iam/rolePolicy:RolePolicy", policy), "policy")
    return {s["Sid"]: s for s in document["Statement"]}


def environment(recorded: Recorded, service: str) -> dict[str, str]:
    task = recorded.find("aws:ecs/taskDefinition:TaskDefinition", f"shop-dev-{service}-task")
    (container,) = json_input(task, "containerDefinitions")
    return env_map(container["environment"])


def test_the_queue_and_its_dead_letter_queue_use_the_owners_key_and_keep_failures_14_days(shop):
    found = queues(shop)
    assert set(found) == {"shop-dev-notifications", "shop-dev-notifications-dlq"}
    queue, dlq = found["shop-dev-notifications"], found["shop-dev-notifications-dlq"]
    assert queue["kmsMasterKeyId"] == dlq["kmsMasterKeyId"] == OWNER_KEY
    assert "sqsManagedSseEnabled" not in queue
    assert (queue["messageRetentionSeconds"], dlq["messageRetentionSeconds"]) == (4 * 86400, 14 * 86400)
    assert (queue["visibilityTimeoutSeconds"], queue["receiveWaitTimeSeconds"]) == (60, 20)
    assert re.fullmatch(
        r'\{"deadLetterTargetArn": "arn:aws:sqs:[^"]+:shop-dev-notifications-dlq", "maxReceiveCount": 5\}',
        queue["redrivePolicy"],
    )
    assert "redrivePolicy" not in dlq
    key = inputs(shop.find("aws:kms/key:Key", "shop-dev-notifications-key"))
    assert (key["enableKeyRotation"], key["deletionWindowInDays"]) == (True, 30)
    for policy in shop.of_type("aws:sqs/queuePolicy:QueuePolicy"):
        (deny,) = json_input(policy, "policy")["Statement"]
        assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    assert len(shop.of_type("aws:sqs/queuePolicy:QueuePolicy")) == 2


def test_dead_letters_and_old_messages_page_the_alert_topic(shop):
    alarms = {r.name: inputs(r) for r in shop.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    dlq = alarms["shop-dev-notifications-dlq-not-empty"]
    assert (dlq["metricName"], dlq["threshold"], dlq["comparisonOperator"]) == (
        "ApproximateNumberOfMessagesVisible",
        0,
        "GreaterThanThreshold",
    )
    assert dlq["dimensions"] == {"QueueName": "shop-dev-notifications-dlq"}
    oldest = alarms["shop-dev-notifications-oldest-message"]
    assert (oldest["metricName"], oldest["threshold"]) == ("ApproximateAgeOfOldestMessage", 600)
    assert oldest["dimensions"] == {"QueueName": "shop-dev-notifications"}
    assert dlq["alarmActions"] == oldest["alarmActions"] == [TOPIC]


def test_the_owner_consumes_its_queue_only_and_never_sends(shop):
    assert environment(shop, "notifications")["QUEUE_URL"].endswith("/shop-dev-notifications")
    found = statements(shop, "shop-dev-notifications-task-policy")
    assert set(found) == {"ConsumeOwnQueue", "DecryptOwnQueue"}
    consume = found["ConsumeOwnQueue"]
    assert consume["Action"] == [
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    ]
    assert [arn.rsplit(":", 1)[1] for arn in consume["Resource"]] == ["shop-dev-notifications-queue"]
    assert found["DecryptOwnQueue"]["Resource"] == [OWNER_KEY]
    assert found["DecryptOwnQueue"]["Action"] == ["kms:Decrypt"]


def test_a_sender_gets_the_url_and_may_only_send_to_that_queue_with_its_key(shop):
    sender = environment(shop, "orders")
    assert sender["NOTIFICATIONS_QUEUE_URL"] == environment(shop, "notifications")["QUEUE_URL"]
    assert "QUEUE_URL" not in sender
    found = statements(shop, "shop-dev-orders-task-policy")
    assert set(found) == {"SendToNotificationsQueue", "EncryptForNotificationsQueue"}
    send = found["SendToNotificationsQueue"]
    assert send["Action"] == ["sqs:GetQueueAttributes", "sqs:SendMessage"]
    assert [arn.rsplit(":", 1)[1] for arn in send["Resource"]] == ["shop-dev-notifications-queue"]
    key = found["EncryptForNotificationsQueue"]
    assert (key["Action"], key["Resource"]) == (["kms:Decrypt", "kms:GenerateDataKey"], [OWNER_KEY])
    assert not shop.of_type("aws:kms/key:Key")[1:], "only the owner has a key: a sender owns nothing"


def policies(recorded: Recorded, service: str) -> dict[str, dict[str, Any]]:
    return {
        r.name.removeprefix(f"shop-dev-{service}-"): inputs(r)
        for r in recorded.of_type("aws:appautoscaling/policy:Policy")
        if r.name.startswith(f"shop-dev-{service}-")
    }


def test_the_owner_scales_on_backlog_per_task_next_to_cpu_and_memory(shop):
    found = policies(shop, "notifications")
    assert set(found) == {"backlog-per-task", "cpu-scaling", "memory-scaling"}, "min 1: nothing to wake from zero"
    tracking = found["backlog-per-task"]["targetTrackingScalingPolicyConfiguration"]
    assert tracking["targetValue"] == 60  # 60 s acceptable latency / 1 s per message
    metrics = {m["id"]: m for m in tracking["customizedMetricSpecification"]["metrics"]}
    assert metrics["backlog_per_task"]["expression"] == (
        "IF(FILL(running, 0) > 0, (FILL(visible_queue, 0)) / FILL(running, 0), FILL(visible_queue, 0))"
    )
    queue = metrics["visible_queue"]["metricStat"]["metric"]
    assert queue["dimensions"] == [{"name": "QueueName", "value": "shop-dev-notifications"}]
    assert set(policies(shop, "orders")) == {"cpu-scaling", "memory-scaling"}


def test_an_owner_that_may_scale_to_zero_is_woken_by_the_first_message():
    recorded = build(
        lambda: Microservice(
            "notifications",
            args(
                "notifications",
                min_count=0,
                desired_count=0,
                alert_topic_arn=TOPIC,
                queue=ServiceQueueArgs(acceptable_latency_seconds=30, average_processing_seconds=0.5),
            ),
        )
    )
    found = policies(recorded, "notifications")
    assert found["backlog-per-task"]["targetTrackingScalingPolicyConfiguration"]["targetValue"] == 60
    wake = found["wake-from-zero"]["stepScalingPolicyConfiguration"]
    assert wake["stepAdjustments"] == [{"scalingAdjustment": 1, "metricIntervalLowerBound": "0"}]
    alarm = inputs(
        recorded.find("aws:cloudwatch/metricAlarm:MetricAlarm", "shop-dev-notifications-wake-from-zero-alarm")
    )
    expression = next(q["expression"] for q in alarm["metricQueries"] if q.get("returnData"))
    assert expression == "IF(FILL(desired, 0) == 0 AND (FILL(visible_queue, 0)) > 0, 1, 0)"


def test_the_queues_settings_reach_the_queues():
    found = queues(owner_and_sender(max_receives=3, visibility_timeout_seconds=300, retention_seconds=86400))
    assert found["shop-dev-notifications"]["redrivePolicy"].endswith('"maxReceiveCount": 3}')
    assert found["shop-dev-notifications"]["visibilityTimeoutSeconds"] == 300
    assert found["shop-dev-notifications"]["messageRetentionSeconds"] == 86400


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"max_receives": 0}, "max_receives=0 must be 1-1000"),
        ({"visibility_timeout_seconds": 43201}, "visibility_timeout_seconds=43201 must be 0-43200"),
        ({"retention_seconds": 15 * 86400}, "retention_seconds=1296000 must be 60-1209600"),
        ({"average_processing_seconds": 0}, "acceptable_latency_seconds and average_processing_seconds must be more"),
    ],
)
def test_bad_queue_settings_are_refused_naming_the_field(overrides: dict[str, Any], problem: str):
    with pytest.raises(ValueError, match=re.escape(problem)):
        ServiceQueueArgs(**overrides)


def test_a_queue_needs_the_topic_its_alarms_notify():
    with pytest.raises(ValueError, match=re.escape("queue: needs alert_topic_arn (the queue's alarms notify it)")):
        build(lambda: Microservice("notifications", args("notifications", queue=ServiceQueueArgs())))


def test_every_queue_resource_belongs_to_its_owner(shop):
    owner = shop.find("container-platform:microservice:Microservice", "notifications")
    for type_ in ("aws:sqs/queue:Queue", "aws:sqs/queuePolicy:QueuePolicy", "aws:kms/key:Key"):
        assert {r.parent for r in shop.of_type(type_)} == {owner.urn}
