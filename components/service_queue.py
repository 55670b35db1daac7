"""A service's own queue, and the backlog-per-task scaling of whatever consumes a queue.

`ServiceQueue` is the queue a microservice owns (`services.<name>.queue`): an SQS queue and its dead-letter queue,
both encrypted with the service's own KMS key and refusing anything but TLS, alarms on the dead-letter queue's depth
and on the oldest message's age, and the two ways to use it: `consumer_attachment()` for the owner (`QUEUE_URL`;
receive, delete, change visibility) and `sender_attachment()` for a service that `sendsTo` it
(`<OWNER>_QUEUE_URL`; send only). A customer-managed key, not SSE-SQS, so that the key's use is an IAM grant too:
a sender may generate data keys for this queue's key and nothing else.

`backlog_per_task_scaling` and `wake_from_zero` are the job platform worker's scaling rules (components/worker.py)
for any set of queues: target tracking on visible messages per running task, and a step policy that takes a
service from 0 to its minimum on the first message (target tracking multiplies the current capacity, so it cannot
leave zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.ecs_task import ServiceAttachment
from components.iam import allow, deny_insecure_transport, policy_document
from components.monitoring import alarm

DLQ_RETENTION_SECONDS = 14 * 24 * 3600
# Long polling: a receive waits up to 20 s for a message instead of returning empty at once (fewer, cheaper calls).
RECEIVE_WAIT_SECONDS = 20
CONSUME_ACTIONS = ("sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage")
SEND_ACTIONS = ("sqs:GetQueueAttributes", "sqs:SendMessage")
# What SQS asks KMS for on a caller's behalf: a data key to encrypt a message with (senders), the key to read one
# (both; a sender needs Decrypt too, to reuse a cached data key: SQS developer guide, "Configure KMS permissions").
SEND_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")
CONSUME_KEY_ACTIONS = ("kms:Decrypt",)
SCALE_IN_COOLDOWN = 300
SCALE_OUT_COOLDOWN = 60


@dataclass(frozen=True)
class ServiceQueueArgs:
    max_receives: int = 5
    """Receives before a message moves to the dead-letter queue. Default: 5."""
    visibility_timeout_seconds: int = 60
    """How long a received message stays hidden before it is delivered again. Default: 60."""
    retention_seconds: int = 4 * 24 * 3600
    """How long an unconsumed message is kept (the dead-letter queue keeps its messages 14 days). Default: 4 days."""
    acceptable_latency_seconds: float = 60
    """How long a message may wait in the queue. Default: 60."""
    average_processing_seconds: float = 1
    """Average time one task spends per message. Default: 1."""
    oldest_message_alarm_seconds: int = 600
    """Alarm when the oldest message is older. Default: 600."""

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.max_receives <= 1000:
            problems.append(f"max_receives={self.max_receives} must be 1-1000")
        if not 0 <= self.visibility_timeout_seconds <= 43200:
            problems.append(f"visibility_timeout_seconds={self.visibility_timeout_seconds} must be 0-43200")
        if not 60 <= self.retention_seconds <= DLQ_RETENTION_SECONDS:
            problems.append(f"retention_seconds={self.retention_seconds} must be 60-{DLQ_RETENTION_SECONDS}")
        if self.acceptable_latency_seconds <= 0 or self.average_processing_seconds <= 0:
            problems.append("acceptable_latency_seconds and average_processing_seconds must be more than 0")
        if problems:
            raise ValueError("invalid ServiceQueueArgs:\n" + "\n".join(f"  - {p}" for p in problems))

    @property
    def backlog_per_task_target(self) -> float:
        return self.acceptable_latency_seconds / self.average_processing_seconds


class ServiceQueue:
    """Creates the queue's children under `parent`. Not a component: it is part of the service that owns it."""

    def __init__(
        self,
        prefix: str,
        args: ServiceQueueArgs,
        *,
        kms_key_arn: pulumi.Input[str],
        alert_topic_arn: pulumi.Input[str],
        parent: pulumi.Resource,
    ) -> None:
        self.args = args
        self.kms_key_arn = kms_key_arn
        self._prefix = prefix
        self._opts = pulumi.ResourceOptions(parent=parent)
        self.dead_letter_queue = self._queue(f"{prefix}-dlq", f"{prefix}-dlq", DLQ_RETENTION_SECONDS, redrive=None)
        redrive = pulumi.Output.json_dumps(
            {"deadLetterTargetArn": self.dead_letter_queue.arn, "maxReceiveCount": args.max_receives}
        )
        self.queue = self._queue(f"{prefix}-queue", prefix, args.retention_seconds, redrive=redrive)
        self.url: pulumi.Output[str] = self.queue.url
        self.arn: pulumi.Output[str] = self.queue.arn
        self.name: pulumi.Output[str] = self.queue.name
        self._alarms(alert_topic_arn)

    def consumer_attachment(self) -> ServiceAttachment:
        """The owner's: `QUEUE_URL`, and receive, delete and change visibility on its queue (not the DLQ)."""
        return ServiceAttachment(
            name="queue",
            environment={"QUEUE_URL": self.url},
            task_role_statements=[
                allow(list(CONSUME_ACTIONS), [self.arn], sid="ConsumeOwnQueue"),
                allow(list(CONSUME_KEY_ACTIONS), [self.kms_key_arn], sid="DecryptOwnQueue"),
            ],
        )

    def sender_attachment(self, owner: str, variable: str) -> ServiceAttachment:
        """A sender's: the queue's URL as `variable`, and permission to send to exactly this queue."""
        sid = "".join(part.title() for part in owner.split("-"))
        return ServiceAttachment(
            name=f"sends-to-{owner}",
            environment={variable: self.url},
            task_role_statements=[
                allow(list(SEND_ACTIONS), [self.arn], sid=f"SendTo{sid}Queue"),
                allow(list(SEND_KEY_ACTIONS), [self.kms_key_arn], sid=f"EncryptFor{sid}Queue"),
            ],
        )

    def _queue(
        self, name: str, queue_name: str, retention_seconds: int, redrive: pulumi.Input[str] | None
    ) -> aws.sqs.Queue:
        queue = aws.sqs.Queue(
            name,
            name=queue_name,
            kms_master_key_id=self.kms_key_arn,
            # SQS reuses a data key this long before asking KMS again (its default, stated: fewer KMS calls).
            kms_data_key_reuse_period_seconds=300,
            message_retention_seconds=retention_seconds,
            visibility_timeout_seconds=self.args.visibility_timeout_seconds,
            receive_wait_time_seconds=RECEIVE_WAIT_SECONDS,
            redrive_policy=redrive,
            opts=self._opts,
        )
        aws.sqs.QueuePolicy(
            f"{name}-policy",
            queue_url=queue.url,
            policy=policy_document([deny_insecure_transport("sqs:*", queue.arn)]),
            opts=self._opts,
        )
        return queue

    def _alarms(self, topic_arn: pulumi.Input[str]) -> None:
        args = self.args
        alarm(
            f"{self._prefix}-dlq-not-empty",
            description=f"{self._prefix}: messages failed {args.max_receives} times and reached the dead-letter queue",
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": self.dead_letter_queue.name},
            statistic="Maximum",
            threshold=0,
            evaluation_periods=1,
            period=60,
            topic_arn=topic_arn,
            opts=self._opts,
        )
        alarm(
            f"{self._prefix}-oldest-message",
            description=f"{self._prefix}: messages wait longer than {args.oldest_message_alarm_seconds} s",
            namespace="AWS/SQS",
            metric_name="ApproximateAgeOfOldestMessage",
            dimensions={"QueueName": self.queue.name},
            statistic="Maximum",
            threshold=args.oldest_message_alarm_seconds,
            evaluation_periods=3,
            period=60,
            treat_missing_data="notBreaching",
            topic_arn=topic_arn,
            opts=self._opts,
        )


# --- Scaling on backlog per task ---------------------------------------------------------------------------


def backlog_expression(queue_ids: Mapping[str, pulumi.Input[str]]) -> str:
    """Visible messages of every queue; SQS stops publishing metrics for queues idle for hours, so a missing term
    counts as an empty queue."""
    return " + ".join(f"FILL(visible_{key}, 0)" for key in queue_ids)


def backlog_per_task_scaling(
    prefix: str,
    target: aws.appautoscaling.Target,
    *,
    queues: Mapping[str, pulumi.Input[str]],
    cluster_name: pulumi.Input[str],
    service_name: pulumi.Input[str],
    target_value: float,
    opts: pulumi.ResourceOptions,
) -> aws.appautoscaling.Policy:
    """Target tracking on visible messages of `queues` (metric id suffix -> queue name) per running task."""
    tracking = aws.appautoscaling
    metric = tracking.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricArgs
    stat = tracking.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatArgs
    inner = (
        tracking.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatMetricArgs
    )
    dimension = tracking.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatMetricDimensionArgs

    def sqs_metric(key: str, queue_name: pulumi.Input[str]) -> object:
        return metric(
            id=f"visible_{key}",
            return_data=False,
            metric_stat=stat(
                stat="Sum",
                metric=inner(
                    namespace="AWS/SQS",
                    metric_name="ApproximateNumberOfMessagesVisible",
                    dimensions=[dimension(name="QueueName", value=queue_name)],
                ),
            ),
        )

    running = metric(
        id="running",
        return_data=False,
        metric_stat=stat(
            stat="Average",
            metric=inner(
                namespace="ECS/ContainerInsights",
                metric_name="RunningTaskCount",
                dimensions=[
                    dimension(name="ClusterName", value=cluster_name),
                    dimension(name="ServiceName", value=service_name),
                ],
            ),
        ),
    )
    backlog = backlog_expression(queues)
    per_task = metric(
        id="backlog_per_task",
        label="Visible messages per running task",
        expression=f"IF(FILL(running, 0) > 0, ({backlog}) / FILL(running, 0), {backlog})",
        return_data=True,
    )
    return aws.appautoscaling.Policy(
        f"{prefix}-backlog-per-task",
        policy_type="TargetTrackingScaling",
        resource_id=target.resource_id,
        scalable_dimension=target.scalable_dimension,
        service_namespace=target.service_namespace,
        target_tracking_scaling_policy_configuration=tracking.PolicyTargetTrackingScalingPolicyConfigurationArgs(
            target_value=target_value,
            scale_in_cooldown=SCALE_IN_COOLDOWN,
            scale_out_cooldown=SCALE_OUT_COOLDOWN,
            customized_metric_specification=tracking.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationArgs(
                metrics=[*(sqs_metric(k, q) for k, q in queues.items()), running, per_task],  # type: ignore[list-item]
            ),
        ),
        opts=opts,
    )


def wake_from_zero(
    prefix: str,
    target: aws.appautoscaling.Target,
    *,
    queues: Mapping[str, pulumi.Input[str]],
    cluster_name: pulumi.Input[str],
    service_name: pulumi.Input[str],
    min_count: int,
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    """A step policy to `max(1, min_count)` tasks, and the alarm that fires it when a message waits and the
    service's desired count is 0 (never while tasks start or crash, so it does not fight target tracking)."""
    wake = aws.appautoscaling.Policy(
        f"{prefix}-wake-from-zero",
        policy_type="StepScaling",
        resource_id=target.resource_id,
        scalable_dimension=target.scalable_dimension,
        service_namespace=target.service_namespace,
        step_scaling_policy_configuration=aws.appautoscaling.PolicyStepScalingPolicyConfigurationArgs(
            adjustment_type="ExactCapacity",
            cooldown=SCALE_OUT_COOLDOWN,
            metric_aggregation_type="Maximum",
            step_adjustments=[
                aws.appautoscaling.PolicyStepScalingPolicyConfigurationStepAdjustmentArgs(
                    scaling_adjustment=max(1, min_count), metric_interval_lower_bound="0"
                )
            ],
        ),
        opts=opts,
    )
    query = aws.cloudwatch.MetricAlarmMetricQueryArgs
    visible = [
        query(
            id=f"visible_{key}",
            metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": queue_name},
                period=60,
                stat="Maximum",
            ),
        )
        for key, queue_name in queues.items()
    ]
    desired = query(
        id="desired",
        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
            namespace="ECS/ContainerInsights",
            metric_name="DesiredTaskCount",
            dimensions={"ClusterName": cluster_name, "ServiceName": service_name},
            period=60,
            stat="Maximum",
        ),
    )
    idle_with_work = query(
        id="idle_with_work",
        label="Work waiting and no task running",
        expression=f"IF(FILL(desired, 0) == 0 AND ({backlog_expression(queues)}) > 0, 1, 0)",
        return_data=True,
    )
    return aws.cloudwatch.MetricAlarm(
        f"{prefix}-wake-from-zero-alarm",
        alarm_description=f"{prefix}: work is waiting and no task runs; start one",
        comparison_operator="GreaterThanOrEqualToThreshold",
        threshold=1,
        evaluation_periods=1,
        metric_queries=[*visible, desired, idle_with_work],
        treat_missing_data="notBreaching",
        alarm_actions=[wake.arn],
        opts=opts,
    )
