"""QueueWorker: priority SQS queues with a dead-letter queue, and a Fargate worker that scales on backlog per task.

Scaling (what CDK's QueueProcessingFargateService and Copilot's worker lack):
- target tracking on *backlog per task*: visible messages of every priority queue / running tasks, with target
  acceptable latency / average processing time (AWS's recommended queue metric);
- a step policy that takes the service from 0 to 1 task on the first visible message (target tracking cannot
  leave zero, since it multiplies the current capacity);
- no CPU rule: it would fight the queue rule. Scale-in is safe because the worker finishes or releases its
  job on SIGTERM within `stop_timeout_seconds`, and SQS redelivers anything unfinished.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.ecs_task import DeploymentWait, FargateTask, FargateTaskSpec, Rollout, ServiceAttachment
from components.iam import allow, deny_insecure_transport, policy_document
from components.monitoring import alarm
from components.service_queue import backlog_per_task_scaling, wake_from_zero

PRIORITIES = ("high", "normal", "low")
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
CONSUME_ACTIONS = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
# The DLQ sweep (services/worker/runner.py `sweep_dlq`) only receives: it marks the jobs failed and leaves the
# messages in the DLQ for operators; ReceiveMessage's VisibilityTimeout needs no ChangeMessageVisibility.
SWEEP_DLQ_ACTIONS = ["sqs:ReceiveMessage"]
PRODUCE_ACTIONS = ["sqs:GetQueueAttributes", "sqs:SendMessage"]


@dataclass(frozen=True)
class QueueWorkerArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    image: pulumi.Input[str]
    """Worker image, pinned by digest."""
    region: str
    """Region (awslogs driver, metrics)."""
    account_id: pulumi.Input[str]
    """Account (trust policy conditions)."""
    vpc_id: pulumi.Input[str]
    """VPC of the worker security group."""
    private_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets the tasks run in (never public)."""
    cluster_arn: pulumi.Input[str]
    """ECS cluster ARN."""
    cluster_name: pulumi.Input[str]
    """ECS cluster name (scaling resource id, metric dimension)."""
    log_kms_key_arn: pulumi.Input[str]
    """KMS key for the worker log group."""
    alert_topic_arn: pulumi.Input[str]
    """Topic the queue and worker alarms notify."""
    service_name: str = "worker"
    """Short service name. Default: worker."""
    cpu: int = 1024
    """Task CPU units. Default: 1024."""
    memory: int = 2048
    """Task memory MiB. Default: 2048."""
    min_count: int = 0
    """Fewest tasks; 0 lets an idle platform cost nothing for workers. Default: 0."""
    max_count: int = 10
    """Most tasks. Default: 10."""
    on_demand_base: int = 0
    """Tasks always on on-demand FARGATE. Default: 0."""
    spot_weight: int = 3
    """FARGATE_SPOT weight relative to FARGATE's 1 (work is retried, so Spot is safe). Default: 3."""
    acceptable_latency_seconds: float = 60
    """How long a job may wait in the queue. Default: 60."""
    average_processing_seconds: float = 2
    """Average time one task takes per job. Default: 2."""
    max_receives: int = 5
    """Receives before a message moves to the dead-letter queue. Default: 5."""
    visibility_timeout_seconds: int = 120
    """Queue visibility timeout (the worker extends it while a job runs). Default: 120."""
    stop_timeout_seconds: int = 120
    """ECS stop timeout; the worker's graceful shutdown finishes within it (Fargate max 120). Default: 120."""
    oldest_message_alarm_seconds: int = 600
    """Alarm when a queue's oldest message is older. Default: 600."""
    error_alarm_count: int = 10
    """Alarm when the worker logs more errors in 5 minutes. Default: 10."""
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Plain environment variables (never secrets). Default: none."""
    deployment: DeploymentWait = field(default_factory=DeploymentWait)
    """Whether `pulumi up` waits for deployments and fails on a circuit-breaker rollback. Default: wait, 30 min."""
    rollout: Rollout = field(default_factory=Rollout)
    """Deployment strategy: ROLLING or BLUE_GREEN (no load balancer: the new revision runs at full size beside the
    old one for the bake time, both consuming the queues, then the old one stops). With `rollback_alarms` the
    error and dead-letter alarms roll a deployment back. Default: rolling."""
    attachments: Sequence[ServiceAttachment] = ()
    """Shared storage, database, cache the worker uses. Default: none."""
    log_retention_days: int = 30
    """Log retention. Default: 30."""
    cpu_architecture: str = "X86_64"
    """X86_64 or ARM64. Default: X86_64."""
    health_check_command: Sequence[str] = ("CMD", "python", "-m", "services.worker.healthcheck")
    """Container health check (the worker's heartbeat-file freshness). Default: the worker's module."""

    def __post_init__(self) -> None:
        if self.min_count > self.max_count:
            raise ValueError(f"min_count ({self.min_count}) must not exceed max_count ({self.max_count})")
        if self.stop_timeout_seconds > 120:
            raise ValueError(f"stop_timeout_seconds ({self.stop_timeout_seconds}) exceeds Fargate's maximum of 120")
        if self.rollout.strategy not in ("ROLLING", "BLUE_GREEN"):
            raise ValueError(
                f"rollout.strategy ({self.rollout.strategy}): the worker has no load balancer or Service Connect to "
                "shift traffic on; allowed: ROLLING, BLUE_GREEN"
            )
        if self.visibility_timeout_seconds < 30:
            raise ValueError(
                f"visibility_timeout_seconds ({self.visibility_timeout_seconds}) must be at least 30: the worker "
                "extends it while a job runs, and a shorter one redelivers jobs between extensions"
            )

    @property
    def backlog_per_task_target(self) -> float:
        return self.acceptable_latency_seconds / self.average_processing_seconds


class QueueWorker(pulumi.ComponentResource):
    queue_urls: dict[str, pulumi.Output[str]]
    """Queue URL per priority."""
    queue_arns: dict[str, pulumi.Output[str]]
    """Queue ARN per priority."""
    dead_letter_queue_url: pulumi.Output[str]
    """Dead-letter queue URL."""
    service_name: pulumi.Output[str]
    """ECS service name."""
    security_group_id: pulumi.Output[str]
    """Worker task security group."""

    def __init__(self, name: str, args: QueueWorkerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:worker:QueueWorker", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        self._args = args
        prefix = f"{args.name_prefix}-{args.service_name}"
        self.dead_letter_queue = self._queue(f"{prefix}-dlq", f"{prefix}-dlq", DLQ_RETENTION_SECONDS, redrive=None)
        redrive = pulumi.Output.json_dumps(
            {"deadLetterTargetArn": self.dead_letter_queue.arn, "maxReceiveCount": args.max_receives}
        )
        self.queues = {p: self._queue(f"{prefix}-{p}", f"{prefix}-{p}", 4 * 24 * 3600, redrive) for p in PRIORITIES}
        self.queue_urls = {p: q.url for p, q in self.queues.items()}
        self.queue_arns = {p: q.arn for p, q in self.queues.items()}
        self.dead_letter_queue_url = self.dead_letter_queue.url
        self.task = FargateTask(
            FargateTaskSpec(
                name_prefix=args.name_prefix,
                service_name=args.service_name,
                image=args.image,
                cpu=args.cpu,
                memory=args.memory,
                vpc_id=args.vpc_id,
                region=args.region,
                account_id=args.account_id,
                log_kms_key_arn=args.log_kms_key_arn,
                log_retention_days=args.log_retention_days,
                environment={**args.environment, **self._queue_environment()},
                health_check_command=list(args.health_check_command),
                cpu_architecture=args.cpu_architecture,
                stop_timeout_seconds=args.stop_timeout_seconds,
                attachments=args.attachments,
                deployment=args.deployment,
            ),
            parent=self,
        )
        self.task.add_task_role_statements(
            "queues",
            [
                allow(CONSUME_ACTIONS, list(self.queue_arns.values()), sid="ConsumeOwnQueues"),
                allow(SWEEP_DLQ_ACTIONS, [self.dead_letter_queue.arn], sid="SweepDeadLetterQueue"),
            ],
        )
        # The alarms exist before the service: the ones a deployment rolls back on are named in it.
        rollback_alarms = self._alarms(prefix)
        self.service = self.task.service(
            cluster_arn=args.cluster_arn,
            private_subnet_ids=args.private_subnet_ids,
            desired_count=args.min_count,
            on_demand_base=args.on_demand_base,
            spot_weight=args.spot_weight,
            rollout=args.rollout,
            rollback_alarm_names=[a.name for a in rollback_alarms],
        )
        self._scaling(prefix)
        self.service_name = self.service.name
        self.security_group_id = self.task.security_group.id
        self.register_outputs(
            {
                "queue_urls": self.queue_urls,
                "dead_letter_queue_url": self.dead_letter_queue_url,
                "service_name": self.service_name,
            }
        )

    def producer_attachment(self) -> ServiceAttachment:
        """What a service that submits jobs needs: the work queue URLs and permission to send to them only
        (no DLQ_URL and no worker tuning: a producer never touches the dead-letter queue)."""
        return ServiceAttachment(
            name="queues",
            environment=self._work_queue_urls(),
            task_role_statements=[allow(PRODUCE_ACTIONS, list(self.queue_arns.values()), sid="SendToJobQueues")],
        )

    def _work_queue_urls(self) -> dict[str, pulumi.Input[str]]:
        return {f"QUEUE_URL_{p.upper()}": url for p, url in self.queue_urls.items()}

    def _queue_environment(self) -> dict[str, pulumi.Input[str]]:
        return {
            **self._work_queue_urls(),
            "DLQ_URL": self.dead_letter_queue_url,
            "MAX_RECEIVES": str(self._args.max_receives),
            "VISIBILITY_TIMEOUT_SECONDS": str(self._args.visibility_timeout_seconds),
            "SHUTDOWN_TIMEOUT_SECONDS": str(self._args.stop_timeout_seconds - 20),
        }

    # --- Queues ---

    def _queue(
        self, name: str, queue_name: str, retention_seconds: int, redrive: pulumi.Input[str] | None
    ) -> aws.sqs.Queue:
        queue = aws.sqs.Queue(
            name,
            name=queue_name,
            # SSE-SQS: encrypted at rest without a KMS call (and its cost) per message batch.
            sqs_managed_sse_enabled=True,
            message_retention_seconds=retention_seconds,
            visibility_timeout_seconds=self._args.visibility_timeout_seconds,
            receive_wait_time_seconds=20,
            redrive_policy=redrive,
            opts=self._child,
        )
        aws.sqs.QueuePolicy(
            f"{name}-policy",
            queue_url=queue.url,
            policy=policy_document([deny_insecure_transport("sqs:*", queue.arn)]),
            opts=self._child,
        )
        return queue

    # --- Scaling ---

    def _scaling(self, prefix: str) -> None:
        args = self._args
        target = self.task.scaling_target(self.service, args.cluster_name, args.min_count, args.max_count)
        scaling = {
            "queues": {p: self.queues[p].name for p in PRIORITIES},
            "cluster_name": args.cluster_name,
            "service_name": self.service.name,
            "opts": self._child,
        }
        backlog_per_task_scaling(prefix, target, target_value=args.backlog_per_task_target, **scaling)
        wake_from_zero(prefix, target, min_count=args.min_count, **scaling)

    # --- Alarms ---

    def _alarms(self, prefix: str) -> list[aws.cloudwatch.MetricAlarm]:
        """Every alarm to the topic; returns the one a deployment rolls back on (errors logged). Not the dead-letter
        alarm: its messages stay 14 days for operators, and an alarm already firing would refuse every deployment
        until then; nor the queue age alarms: a backlog is not the new revision's fault."""
        args = self._args
        alarm(
            f"{prefix}-dlq-not-empty",
            description=f"{prefix}: jobs failed {args.max_receives} times and reached the dead-letter queue",
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": self.dead_letter_queue.name},
            statistic="Maximum",
            threshold=0,
            evaluation_periods=1,
            period=60,
            topic_arn=args.alert_topic_arn,
            opts=self._child,
        )
        for priority, queue in self.queues.items():
            alarm(
                f"{prefix}-{priority}-oldest-message",
                description=f"{prefix}: {priority} jobs wait longer than {args.oldest_message_alarm_seconds} s",
                namespace="AWS/SQS",
                metric_name="ApproximateAgeOfOldestMessage",
                dimensions={"QueueName": queue.name},
                statistic="Maximum",
                threshold=args.oldest_message_alarm_seconds,
                evaluation_periods=3,
                period=60,
                treat_missing_data="notBreaching",
                topic_arn=args.alert_topic_arn,
                opts=self._child,
            )
        namespace = f"{args.name_prefix}/worker"
        aws.cloudwatch.LogMetricFilter(
            f"{prefix}-errors",
            log_group_name=self.task.log_group.name,
            pattern='{ $.level = "ERROR" }',
            metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                name="WorkerErrors", namespace=namespace, value="1", default_value="0"
            ),
            opts=self._child,
        )
        errors = alarm(
            f"{prefix}-errors-alarm",
            description=f"{prefix}: the worker logs errors",
            namespace=namespace,
            metric_name="WorkerErrors",
            dimensions={},
            statistic="Sum",
            threshold=args.error_alarm_count,
            evaluation_periods=1,
            treat_missing_data="notBreaching",
            topic_arn=args.alert_topic_arn,
            opts=self._child,
        )
        return [errors]
