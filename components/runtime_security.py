"""RuntimeSecurity: watch the running tasks, and answer what GuardDuty finds in them.

- Detection (one stack per account and region, `manage_detector`): the GuardDuty detector with Runtime Monitoring
  and automated agent management for ECS Fargate (`ECS_FARGATE_AGENT_MANAGEMENT`): GuardDuty then adds its security
  agent as a sidecar to every new Fargate task in the account and region and, per VPC that runs them, creates the
  `guardduty-data` interface endpoint and its security group (AWS docs, "How Runtime Monitoring works with Fargate").
  The seed's brief asked for our own endpoint: with automated agent management that would be a second private-DNS
  endpoint for the same service in the VPC, which EC2 refuses; what our tasks need is covered elsewhere and tested
  (tests/components/test_runtime_security.py): the execution role's AmazonECSTaskExecutionRolePolicy pulls the agent
  image, the task security groups allow HTTPS out to the endpoint, the VPC resolves private DNS.
- Custom metrics done right: metric filters on the services' JSON logs for the security events they log
  (services/common/security_events.py), one metric per signal, and an alarm per signal to the alert topic.
- Response: an EventBridge rule on GuardDuty findings whose resource is this cluster invokes the responder Lambda
  (lambdas/guardduty_responder), which contains a task at or above `response_severity` (tag, optional quarantine
  group, stop), alerts, and records an audit entry in a KMS-encrypted bucket (object lock optional).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import allow
from components.kms import shared_or_own_key
from components.lambda_function import logged_function
from components.s3 import private_bucket

LAMBDA_SOURCE = Path(__file__).resolve().parent.parent / "lambdas" / "guardduty_responder"
LAMBDA_RUNTIME = "python3.13"
RESPONSE_SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
RUNTIME_MONITORING = "RUNTIME_MONITORING"
FARGATE_AGENT_MANAGEMENT = "ECS_FARGATE_AGENT_MANAGEMENT"
# Tag keys the responder writes on a task (its TagResource grant allows only these).
RESPONDER_TAG_KEYS = ("guardduty-finding-id", "guardduty-finding-type", "guardduty-severity", "guardduty-response")


@dataclass(frozen=True)
class SecuritySignal:
    """A security event the services log, counted by a metric filter and alarmed on."""

    key: str
    """Short name: the resources are `<name>-<key>-...`."""
    metric_name: str
    """CloudWatch metric (namespace `<app>-<env>/security`)."""
    pattern: str
    """CloudWatch Logs filter pattern over the JSON line (services/common/security_events.py)."""
    threshold: float
    """Alarm when more than this many happen in `period_seconds`."""
    description: str
    period_seconds: int = 300


# Thresholds: one AWS permission error is a misconfiguration or a stolen role probing; the others are noisy alone.
SECURITY_SIGNALS = (
    SecuritySignal("auth-failures", "AuthenticationFailures", '{ $.security_event = "auth_failure" }', 50,
                   "more than 50 failed logins or refused tokens in 5 minutes (credential stuffing?)"),
    SecuritySignal("rejected-uploads", "RejectedUploads", '{ $.security_event = "upload_rejected" }', 5,
                   "more than 5 uploads refused for path tricks in 5 minutes (path traversal probing?)"),
    SecuritySignal("rate-limit-storms", "RateLimited", '{ $.security_event = "rate_limited" }', 500,
                   "more than 500 requests refused by rate limits in 5 minutes (a flood or a scraper)"),
    SecuritySignal("aws-access-denied", "AwsAccessDenied", '{ $.security_event = "aws_access_denied" }', 0,
                   "AWS refused a call a service made (a missing grant, or a role used for what it may not do)"),
)  # fmt: skip


@dataclass(frozen=True)
class RuntimeSecurityArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    region: str
    """Region of the cluster (ARNs, the console link)."""
    account_id: pulumi.Input[str]
    """Account of the cluster (ARNs, key policies)."""
    cluster_arn: pulumi.Input[str]
    """The ECS cluster whose findings are answered; the responder may act on its tasks only."""
    cluster_name: pulumi.Input[str]
    """Its name (task ARNs are `task/<cluster name>/<id>`)."""
    vpc_id: pulumi.Input[str]
    """VPC of the tasks (the quarantine group, and the only VPC whose interfaces the responder may change)."""
    alert_topic_arn: pulumi.Input[str]
    """SNS topic of alarms and responder alerts (the platform alert topic)."""
    alert_topic_kms_key_arn: pulumi.Input[str]
    """KMS key of that topic; the responder encrypts with it when it publishes."""
    log_kms_key_arn: pulumi.Input[str]
    """KMS key of the responder's log group."""
    service_log_groups: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Service name -> its log group, whose JSON lines may carry `security_event`. Default: none (no filters)."""
    manage_detector: bool = False
    """This stack owns the account and region's GuardDuty detector (one per account and region): enable it with
    Runtime Monitoring and automated agent management for ECS Fargate. Set in exactly one stack per account and
    region. Default: false (the detector is left alone)."""
    response_severity: str = "HIGH"
    """Lowest GuardDuty severity (LOW, MEDIUM, HIGH, CRITICAL) at which the responder stops the task; below, it
    only alerts. Default: HIGH."""
    quarantine: bool = False
    """Swap a task's network interface to a no-egress quarantine group before stopping it. ECS manages Fargate
    interfaces and EC2 may refuse the change (the responder records that and still stops the task). Default: false."""
    audit_retention_days: int = 365
    """Days audit records are kept. Default: 365."""
    audit_object_lock_days: int | None = None
    """Object lock (COMPLIANCE mode) on audit records for this many days: no one, root included, can delete or
    change a record before then. Default: none (no object lock)."""
    log_retention_days: int = 30
    """Retention of the responder's log group. Default: 30."""
    kms_key_arn: pulumi.Input[str] | None = None
    """The stack's shared KMS key for the audit records (`kms.sharedKey`). Default: none (its own key)."""
    signals: Sequence[SecuritySignal] = field(default_factory=lambda: SECURITY_SIGNALS)
    """Security signals to filter and alarm on. Default: SECURITY_SIGNALS."""


def finding_event_pattern(cluster_arn: str) -> str:
    """GuardDuty findings whose resource is this ECS cluster (Runtime Monitoring findings of its tasks)."""
    return json.dumps(
        {
            "source": ["aws.guardduty"],
            "detail-type": ["GuardDuty Finding"],
            "detail": {"resource": {"resourceType": ["ECSCluster"], "ecsClusterDetails": {"arn": [cluster_arn]}}},
        },
        sort_keys=True,
    )


def _validate(args: RuntimeSecurityArgs) -> None:
    if args.response_severity not in RESPONSE_SEVERITIES:
        raise ValueError(f"response_severity: {args.response_severity!r}; allowed: {', '.join(RESPONSE_SEVERITIES)}")
    lock = args.audit_object_lock_days
    if lock is not None and not 1 <= lock <= args.audit_retention_days:
        raise ValueError(
            f"audit_object_lock_days: {lock} with audit_retention_days {args.audit_retention_days}; allowed: "
            "1 to audit_retention_days (records cannot expire while locked)"
        )


class RuntimeSecurity(pulumi.ComponentResource):
    detector_id: pulumi.Output[str] | None
    """The GuardDuty detector; None unless this stack owns it."""
    responder_function_name: pulumi.Output[str]
    """The responder Lambda."""
    audit_bucket_name: pulumi.Output[str]
    """Bucket of the responder's audit records."""
    quarantine_security_group_id: pulumi.Output[str] | None
    """The no-egress quarantine group; None without `quarantine`."""
    alarm_names: dict[str, pulumi.Output[str]]
    """Signal key -> its alarm's name."""

    def __init__(self, name: str, args: RuntimeSecurityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:runtime-security:RuntimeSecurity", name, None, opts)
        _validate(args)
        self._child = pulumi.ResourceOptions(parent=self)
        self.detector_id = self._detection(name) if args.manage_detector else None
        self.alarm_names = self._signals(name, args)
        self.quarantine_security_group_id = self._quarantine_group(name, args) if args.quarantine else None
        self._audit_bucket(name, args)
        self._responder(name, args)
        self.register_outputs(
            {
                "detector_id": self.detector_id,
                "responder_function_name": self.responder_function_name,
                "audit_bucket_name": self.audit_bucket_name,
                "quarantine_security_group_id": self.quarantine_security_group_id,
            }
        )

    # --- Detection ---

    def _detection(self, name: str) -> pulumi.Output[str]:
        detector = aws.guardduty.Detector(
            f"{name}-detector", enable=True, finding_publishing_frequency="FIFTEEN_MINUTES", opts=self._child
        )
        aws.guardduty.DetectorFeature(
            f"{name}-runtime-monitoring",
            detector_id=detector.id,
            name=RUNTIME_MONITORING,
            status="ENABLED",
            additional_configurations=[
                aws.guardduty.DetectorFeatureAdditionalConfigurationArgs(
                    name=FARGATE_AGENT_MANAGEMENT, status="ENABLED"
                )
            ],
            opts=self._child,
        )
        return detector.id

    # --- Security signals from the services' logs ---

    def _signals(self, name: str, args: RuntimeSecurityArgs) -> dict[str, pulumi.Output[str]]:
        namespace = f"{args.name_prefix}/security"
        alarms: dict[str, pulumi.Output[str]] = {}
        if not args.service_log_groups:
            return alarms
        for signal in args.signals:
            for service, log_group in sorted(args.service_log_groups.items()):
                aws.cloudwatch.LogMetricFilter(
                    f"{name}-{signal.key}-{service}",
                    log_group_name=log_group,
                    pattern=signal.pattern,
                    metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                        name=signal.metric_name, namespace=namespace, value="1", default_value="0"
                    ),
                    opts=self._child,
                )
            alarm = aws.cloudwatch.MetricAlarm(
                f"{name}-{signal.key}-alarm",
                alarm_description=f"{args.name_prefix}: {signal.description}",
                namespace=namespace,
                metric_name=signal.metric_name,
                statistic="Sum",
                period=signal.period_seconds,
                evaluation_periods=1,
                comparison_operator="GreaterThanThreshold",
                threshold=signal.threshold,
                treat_missing_data="notBreaching",
                alarm_actions=[args.alert_topic_arn],
                ok_actions=[args.alert_topic_arn],
                opts=self._child,
            )
            alarms[signal.key] = alarm.name
        return alarms

    # --- Quarantine ---

    def _quarantine_group(self, name: str, args: RuntimeSecurityArgs) -> pulumi.Output[str]:
        # No ingress and no egress rule: the provider removes the default allow-all egress of a new group.
        group = aws.ec2.SecurityGroup(
            f"{name}-quarantine",
            vpc_id=args.vpc_id,
            description=f"{args.name_prefix}: quarantine for compromised tasks, no traffic in or out",
            revoke_rules_on_delete=True,
            opts=self._child,
        )
        return group.id

    # --- Audit records ---

    def _audit_bucket(self, name: str, args: RuntimeSecurityArgs) -> None:
        self.audit_key, self._audit_key_arn = shared_or_own_key(
            f"{name}-audit-key",
            args.kms_key_arn,
            description=f"{args.name_prefix}: GuardDuty responder audit records",
            account_id=args.account_id,
            region=args.region,
            opts=self._child,
        )
        bucket = private_bucket(
            f"{name}-audit",
            bucket_prefix=f"{args.name_prefix}-gd-audit-",
            expiration_days=args.audit_retention_days,
            kms_key_arn=self._audit_key_arn,
            versioned=True,
            object_lock_enabled=args.audit_object_lock_days is not None,
            opts=self._child,
        ).bucket
        if args.audit_object_lock_days is not None:
            aws.s3.BucketObjectLockConfiguration(
                f"{name}-audit-lock",
                bucket=bucket.id,
                object_lock_enabled="Enabled",
                rule=aws.s3.BucketObjectLockConfigurationRuleArgs(
                    default_retention=aws.s3.BucketObjectLockConfigurationRuleDefaultRetentionArgs(
                        mode="COMPLIANCE", days=args.audit_object_lock_days
                    )
                ),
                opts=self._child,
            )
        self.audit_bucket = bucket
        self.audit_bucket_name = bucket.bucket

    # --- Responder ---

    def _responder_statements(self, args: RuntimeSecurityArgs) -> list[Any]:
        tasks = pulumi.Output.concat(
            "arn:aws:ecs:", args.region, ":", args.account_id, ":task/", args.cluster_name, "/*"
        )
        on_our_cluster = {"ArnEquals": {"ecs:cluster": args.cluster_arn}}
        statements: list[Any] = [
            {**allow(["ecs:DescribeTasks", "ecs:StopTask"], [tasks], sid="StopOurTasks"), "Condition": on_our_cluster},
            {
                **allow(["ecs:TagResource"], [tasks], sid="TagOurTasks"),
                "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": list(RESPONDER_TAG_KEYS)}},
            },
            # HeadObject answers 403 instead of 404 for a missing key without ListBucket: the replay check needs it.
            allow(["s3:ListBucket"], [self.audit_bucket.arn], sid="FindAuditRecords"),
            allow(["s3:GetObject", "s3:PutObject"], [pulumi.Output.concat(self.audit_bucket.arn, "/findings/*")],
                  sid="WriteAuditRecords"),
            allow(["kms:GenerateDataKey"], [self._audit_key_arn], sid="EncryptAuditRecords"),
            allow(["sns:Publish"], [args.alert_topic_arn], sid="PublishAlerts"),
            allow(["kms:Decrypt", "kms:GenerateDataKey"], [args.alert_topic_kms_key_arn], sid="UseTopicKey"),
        ]  # fmt: skip
        if self.quarantine_security_group_id is not None:
            vpc_arn = pulumi.Output.concat("arn:aws:ec2:", args.region, ":", args.account_id, ":vpc/", args.vpc_id)
            interfaces = pulumi.Output.concat("arn:aws:ec2:", args.region, ":", args.account_id, ":network-interface/*")
            group = pulumi.Output.concat(
                "arn:aws:ec2:", args.region, ":", args.account_id, ":security-group/", self.quarantine_security_group_id
            )
            # Interfaces of our VPC only, and the only group it may attach is the quarantine group.
            statements.append(
                {
                    **allow(["ec2:ModifyNetworkInterfaceAttribute"], [interfaces, group], sid="QuarantineOurTasks"),
                    "Condition": {"ArnEquals": {"ec2:Vpc": vpc_arn}},
                }
            )
        return statements

    def _responder(self, name: str, args: RuntimeSecurityArgs) -> None:
        variables: dict[str, pulumi.Input[str]] = {
            "ALERT_TOPIC_ARN": args.alert_topic_arn,
            "CLUSTER_ARN": args.cluster_arn,
            "AUDIT_BUCKET": self.audit_bucket.bucket,
            "AUDIT_KMS_KEY_ARN": self._audit_key_arn,
            "RESPONSE_SEVERITY": args.response_severity,
        }
        if self.quarantine_security_group_id is not None:
            variables["QUARANTINE_SECURITY_GROUP_ID"] = self.quarantine_security_group_id
        function = logged_function(
            f"{name}-responder",
            function_name=f"{args.name_prefix}-guardduty-responder",
            role_description="contain our cluster's tasks on GuardDuty findings, record, alert",
            statements=self._responder_statements(args),
            account_id=args.account_id,
            log_retention_days=args.log_retention_days,
            log_kms_key_arn=args.log_kms_key_arn,
            parent=self,
            description="Contains our cluster's tasks on GuardDuty Runtime Monitoring findings, records and alerts",
            runtime=LAMBDA_RUNTIME,
            architectures=["arm64"],
            handler="handler.handle",
            # Relative to the working directory (the project root under Pulumi), so state holds no home path.
            code=pulumi.AssetArchive({"handler.py": pulumi.FileAsset(os.path.relpath(LAMBDA_SOURCE / "handler.py"))}),
            timeout=60,
            memory_size=256,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=variables),
            # Events that still fail after Lambda's retries land on the alert topic instead of vanishing.
            dead_letter_config=aws.lambda_.FunctionDeadLetterConfigArgs(target_arn=args.alert_topic_arn),
        )
        rule = aws.cloudwatch.EventRule(
            f"{name}-findings",
            name=f"{args.name_prefix}-guardduty-findings",
            description="GuardDuty findings on the platform's ECS cluster",
            event_pattern=pulumi.Output.from_input(args.cluster_arn).apply(finding_event_pattern),
            opts=self._child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-findings-target",
            rule=rule.name,
            arn=function.arn,
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_event_age_in_seconds=3600, maximum_retry_attempts=5
            ),
            opts=self._child,
        )
        aws.lambda_.Permission(
            f"{name}-findings-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            principal="events.amazonaws.com",
            source_arn=rule.arn,
            opts=self._child,
        )
        self.responder_function_name = function.name
