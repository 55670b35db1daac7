"""Alerts: the platform's customer-managed KMS key and the SNS topic every alarm notifies."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.kms import rotating_key

# Services that encrypt with the platform key: log groups, and the alert topic with CloudWatch alarms publishing to it.
PLATFORM_KEY_SERVICES = ("logs.amazonaws.com", "sns.amazonaws.com", "cloudwatch.amazonaws.com")


@dataclass(frozen=True)
class AlertsArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    region: str
    """Region (CloudWatch Logs key policy principal)."""
    account_id: pulumi.Input[str]
    """Account that administers the key."""
    alert_email: str | None = None
    """Email subscribed to the topic. Default: none (subscribe other endpoints yourself)."""
    retain_key: bool = False
    """Keep the key when the stack is deleted: set when it is the stack's shared key (`kms.sharedKey`) and data
    stores are deletion-protected, so their final snapshots and retained backups stay readable. Default: false."""


class Alerts(pulumi.ComponentResource):
    key_arn: pulumi.Output[str]
    """Platform KMS key ARN (log groups, the alert topic, ECS Exec sessions)."""
    topic_arn: pulumi.Output[str]
    """Alert topic ARN: the alarm action of every alarm on the platform."""

    def __init__(self, name: str, args: AlertsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:alerts:Alerts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.key = rotating_key(
            f"{name}-key",
            description=f"{args.name_prefix}: platform logs and alerts",
            account_id=args.account_id,
            region=args.region,
            service_principals=PLATFORM_KEY_SERVICES,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_key),
        )
        aws.kms.Alias(
            f"{name}-key-alias", name=f"alias/{args.name_prefix}-platform", target_key_id=self.key.key_id, opts=child
        )
        self.topic = aws.sns.Topic(
            f"{name}-topic",
            name=f"{args.name_prefix}-alerts",
            display_name=f"{args.name_prefix} alerts",
            kms_master_key_id=self.key.arn,
            opts=child,
        )
        # The seed subscribed email only in prod; any stack that configures an address gets it.
        self.email_subscription = (
            aws.sns.TopicSubscription(
                f"{name}-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=args.alert_email,
                opts=child,
            )
            if args.alert_email
            else None
        )
        self.key_arn = self.key.arn
        self.topic_arn = self.topic.arn
        self.register_outputs({"key_arn": self.key_arn, "topic_arn": self.topic_arn})
