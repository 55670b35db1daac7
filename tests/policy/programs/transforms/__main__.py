"""A team that adds encryption through transforms instead of on each resource, in all three ways Pulumi offers:
a stack transform, a component's `transforms` option (applies to its children) and a legacy `transformations`."""

import pulumi
import pulumi_aws as aws

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def encrypt_topics(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    if args.type_ == "aws:sns/topic:Topic":
        return pulumi.ResourceTransformResult(props={**args.props, "kmsMasterKeyId": KEY}, opts=args.opts)
    return None


def encrypt_queues(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    if args.type_ == "aws:sqs/queue:Queue":
        return pulumi.ResourceTransformResult(props={**args.props, "kmsMasterKeyId": KEY}, opts=args.opts)
    return None


def encrypt_legacy(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
    if args.type_ == "aws:sqs/queue:Queue":
        return pulumi.ResourceTransformationResult(props={**args.props, "kms_master_key_id": KEY}, opts=args.opts)
    return None


class Messaging(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("team:messaging:Messaging", name, None, opts)
        self.queue = aws.sqs.Queue(
            f"{name}-events", sqs_managed_sse_enabled=False, opts=pulumi.ResourceOptions(parent=self)
        )
        self.register_outputs({})


pulumi.runtime.register_resource_transform(encrypt_topics)
aws.sns.Topic("alerts")
Messaging("billing", opts=pulumi.ResourceOptions(transforms=[encrypt_queues]))
aws.sqs.Queue("audit", sqs_managed_sse_enabled=False, opts=pulumi.ResourceOptions(transformations=[encrypt_legacy]))
