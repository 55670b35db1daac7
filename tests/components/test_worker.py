"""QueueWorker: queues, DLQ, least-privilege access, backlog-per-task scaling, alarms."""

from __future__ import annotations

import pytest

from components.ecs_task import Rollout
from components.worker import PRIORITIES, QueueWorker, QueueWorkerArgs
from tests.support import Recorded, actions_of, build, env_map, inputs, json_input

TOPIC = "arn:aws:sns:us-east-1:123456789012:jobs-dev-alerts"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/worker@sha256:" + "b" * 64


def worker_args(**overrides) -> QueueWorkerArgs:
    values = {
        "name_prefix": "jobs-dev",
        "image": IMAGE,
        "region": "us-east-1",
        "account_id": "123456789012",
        "vpc_id": "vpc-1",
        "private_subnet_ids": ["subnet-a", "subnet-b"],
        "cluster_arn": "arn:aws:ecs:us-east-1:123456789012:cluster/jobs-dev",
        "cluster_name": "jobs-dev",
        "log_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/k",
        "alert_topic_arn": TOPIC,
        "max_count": 10,
        "max_receives": 4,
    }
    values.update(overrides)
    return QueueWorkerArgs(**values)


@pytest.fixture(scope="module")
def recorded() -> Recorded:
    return build(lambda: QueueWorker("worker", worker_args()))


def queues(recorded: Recorded) -> dict[str, dict]:
    return {inputs(r)["name"]: inputs(r) for r in recorded.of_type("aws:sqs/queue:Queue")}


def test_priority_queues_redrive_to_an_encrypted_dlq(recorded):
    found = queues(recorded)
    assert set(found) == {
        "jobs-dev-worker-high",
        "jobs-dev-worker-normal",
        "jobs-dev-worker-low",
        "jobs-dev-worker-dlq",
    }
    dlq = found["jobs-dev-worker-dlq"]
    assert dlq["messageRetentionSeconds"] == 14 * 24 * 3600
    assert "redrivePolicy" not in dlq
    for priority in PRIORITIES:
        queue = found[f"jobs-dev-worker-{priority}"]
        redrive = __import__("json").loads(queue["redrivePolicy"])
        assert redrive == {
            "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:jobs-dev-worker-dlq",
            "maxReceiveCount": 4,
        }
        assert queue["visibilityTimeoutSeconds"] == 120
        assert queue["receiveWaitTimeSeconds"] == 20
    assert all(q["sqsManagedSseEnabled"] is True for q in found.values())


def test_queue_policies_deny_plaintext_transport(recorded):
    policies = recorded.of_type("aws:sqs/queuePolicy:QueuePolicy")
    assert len(policies) == 4
    for policy in policies:
        (statement,) = json_input(policy, "policy")["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_worker_consumes_only_its_queues_and_only_receives_from_its_dlq(recorded):
    policy = json_input(recorded.find("aws:iam/rolePolicy:RolePolicy", "jobs-dev-worker-task-queues"), "policy")
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"ConsumeOwnQueues", "SweepDeadLetterQueue"}
    consume = by_sid["ConsumeOwnQueues"]
    assert set(consume["Action"]) == {
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    }
    assert sorted(consume["Resource"]) == sorted(
        f"arn:aws:sqs:us-east-1:123456789012:jobs-dev-worker-{p}" for p in PRIORITIES
    )
    # The DLQ sweep receives (and leaves the messages for operators): nothing else on the DLQ.
    sweep = by_sid["SweepDeadLetterQueue"]
    assert sweep["Action"] == ["sqs:ReceiveMessage"]
    assert sweep["Resource"] == ["arn:aws:sqs:us-east-1:123456789012:jobs-dev-worker-dlq"]


def test_producer_attachment_can_only_send(recorded):
    holder: dict[str, object] = {}

    def make() -> None:
        worker = QueueWorker("worker", worker_args())
        holder["attachment"] = worker.producer_attachment()

    build(make)
    attachment = holder["attachment"]
    (statement,) = attachment.task_role_statements  # type: ignore[attr-defined]
    assert actions_of({"Statement": [statement]}) == {"sqs:SendMessage", "sqs:GetQueueAttributes"}
    # A producer gets the work queues only: no DLQ_URL (it has no permission on the DLQ) and no worker tuning.
    assert set(attachment.environment) == {"QUEUE_URL_HIGH", "QUEUE_URL_NORMAL", "QUEUE_URL_LOW"}  # type: ignore[attr-defined]


def test_worker_task_is_private_spot_first_and_stops_gracefully(recorded):
    service = inputs(recorded.one("aws:ecs/service:Service"))
    assert service["networkConfiguration"]["assignPublicIp"] is False
    assert {s["capacityProvider"]: s["weight"] for s in service["capacityProviderStrategies"]} == {
        "FARGATE": 1,
        "FARGATE_SPOT": 3,
    }
    assert "loadBalancers" not in service
    (container,) = json_input(recorded.one("aws:ecs/taskDefinition:TaskDefinition"), "containerDefinitions")
    assert container["stopTimeout"] == 120
    assert container["user"] == "1001:1001"
    assert container["readonlyRootFilesystem"] is True
    assert "portMappings" not in container
    env = env_map(container["environment"])
    assert env["QUEUE_URL_HIGH"].endswith("/jobs-dev-worker-high")
    assert env["DLQ_URL"].endswith("/jobs-dev-worker-dlq")
    assert env["SHUTDOWN_TIMEOUT_SECONDS"] == "100"
    assert container["healthCheck"]["command"] == ["CMD", "python", "-m", "services.worker.healthcheck"]


def policies(recorded: Recorded) -> dict[str, dict]:
    return {r.name: inputs(r) for r in recorded.of_type("aws:appautoscaling/policy:Policy")}


def test_target_tracking_on_backlog_per_task(recorded):
    found = policies(recorded)
    assert set(found) == {"jobs-dev-worker-backlog-per-task", "jobs-dev-worker-wake-from-zero"}
    config = found["jobs-dev-worker-backlog-per-task"]["targetTrackingScalingPolicyConfiguration"]
    assert config["targetValue"] == 30  # 60 s acceptable latency / 2 s per job
    metrics = {m["id"]: m for m in config["customizedMetricSpecification"]["metrics"]}
    assert metrics["backlog_per_task"]["expression"] == (
        "IF(FILL(running, 0) > 0, (FILL(visible_high, 0) + FILL(visible_normal, 0) + FILL(visible_low, 0)) "
        "/ FILL(running, 0), FILL(visible_high, 0) + FILL(visible_normal, 0) + FILL(visible_low, 0))"
    )
    assert [m["id"] for m in metrics.values() if m["returnData"]] == ["backlog_per_task"]
    for priority in PRIORITIES:
        stat = metrics[f"visible_{priority}"]["metricStat"]
        assert stat["metric"]["metricName"] == "ApproximateNumberOfMessagesVisible"
        assert stat["metric"]["dimensions"] == [{"name": "QueueName", "value": f"jobs-dev-worker-{priority}"}]
    running = metrics["running"]["metricStat"]["metric"]
    assert running["dimensions"] == [
        {"name": "ClusterName", "value": "jobs-dev"},
        {"name": "ServiceName", "value": "jobs-dev-worker"},
    ]


def test_no_cpu_rule_fights_the_queue_rule(recorded):
    for policy in policies(recorded).values():
        tracking = policy.get("targetTrackingScalingPolicyConfiguration") or {}
        assert "predefinedMetricSpecification" not in tracking


def test_first_message_wakes_the_service_from_zero(recorded):
    wake = policies(recorded)["jobs-dev-worker-wake-from-zero"]["stepScalingPolicyConfiguration"]
    assert wake["adjustmentType"] == "ExactCapacity"
    assert wake["stepAdjustments"] == [{"scalingAdjustment": 1, "metricIntervalLowerBound": "0"}]
    alarm = inputs(recorded.find("aws:cloudwatch/metricAlarm:MetricAlarm", "jobs-dev-worker-wake-from-zero-alarm"))
    assert alarm["threshold"] == 1
    assert alarm["evaluationPeriods"] == 1
    expression = next(q["expression"] for q in alarm["metricQueries"] if q.get("returnData"))
    assert expression == (
        "IF(FILL(desired, 0) == 0 AND (FILL(visible_high, 0) + FILL(visible_normal, 0) + FILL(visible_low, 0)) > 0, 1, 0)"
    )
    desired = next(q for q in alarm["metricQueries"] if q["id"] == "desired")["metric"]
    assert desired["metricName"] == "DesiredTaskCount"
    assert desired["dimensions"] == {"ClusterName": "jobs-dev", "ServiceName": "jobs-dev-worker"}
    assert alarm["alarmActions"] == ["arn:aws:appautoscaling:us-east-1:123456789012:jobs-dev-worker-wake-from-zero"]
    target = inputs(recorded.one("aws:appautoscaling/target:Target"))
    assert (target["minCapacity"], target["maxCapacity"]) == (0, 10)


def test_alarms_page_the_platform_topic(recorded):
    alarms = {r.name: inputs(r) for r in recorded.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    paging = {name: a for name, a in alarms.items() if a.get("alarmActions") == [TOPIC]}
    assert set(paging) == {
        "jobs-dev-worker-dlq-not-empty",
        "jobs-dev-worker-high-oldest-message",
        "jobs-dev-worker-normal-oldest-message",
        "jobs-dev-worker-low-oldest-message",
        "jobs-dev-worker-errors-alarm",
    }
    assert paging["jobs-dev-worker-dlq-not-empty"]["dimensions"] == {"QueueName": "jobs-dev-worker-dlq"}
    assert paging["jobs-dev-worker-high-oldest-message"]["threshold"] == 600
    metric_filter = inputs(recorded.one("aws:cloudwatch/logMetricFilter:LogMetricFilter"))
    assert metric_filter["pattern"] == '{ $.level = "ERROR" }'
    assert metric_filter["logGroupName"] == "/ecs/jobs-dev/worker"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"min_count": 5, "max_count": 2}, "min_count (5) must not exceed max_count (2)"),
        ({"stop_timeout_seconds": 300}, "exceeds Fargate's maximum of 120"),
        ({"visibility_timeout_seconds": 10}, "visibility_timeout_seconds (10) must be at least 30"),
        ({"rollout": Rollout(strategy="CANARY")}, "rollout.strategy (CANARY): the worker has no load balancer"),
    ],
)
def test_contradictory_args_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        worker_args(**overrides)


def test_rolling_by_default_without_alarm_rollback(recorded):
    service = inputs(recorded.one("aws:ecs/service:Service"))
    assert "deploymentConfiguration" not in service
    assert "alarms" not in service


def test_blue_green_keeps_the_old_revision_for_the_bake_time_and_rolls_back_on_errors():
    recorded = build(
        lambda: QueueWorker(
            "worker", worker_args(rollout=Rollout(strategy="BLUE_GREEN", bake_time_minutes=15, rollback_alarms=True))
        )
    )
    service = inputs(recorded.one("aws:ecs/service:Service"))
    assert service["deploymentConfiguration"] == {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": "15"}
    # Only the errors alarm: a dead-letter alarm already firing (its messages stay 14 days) would refuse every
    # deployment, and a queue backlog is not the new revision's fault.
    assert service["alarms"] == {"alarmNames": ["jobs-dev-worker-errors-alarm"], "enable": True, "rollback": True}
