"""A team app on the platform stack: reads the platform's outputs through a StackReference."""

import json

import pulumi
import pulumi_aws as aws

platform = pulumi.StackReference("acme/container-platform/prod")
key_arn = platform.require_output("alertsKeyArn")
queue = aws.sqs.Queue("orders", kms_master_key_id=key_arn)
topic = aws.sns.Topic("orders", kms_master_key_id=platform.get_output("alertsKeyArn"))
pulumi.export("queue", queue.name)
pulumi.export("dbSecret", platform.require_output("dbSecretArn").apply(lambda arn: json.dumps({"arn": arn})))
