"""What a recorded call is, in IAM terms: its action, and the resource it names as the code named it locally.

`iam_action` maps an API operation to the IAM action AWS checks: the operation's own name under the service's
prefix, except for the batch operations below, which AWS authorizes as their single-message action. The
evaluator (iam-simulate, with the maintained iam-data list of every service's actions) rejects an action name
that does not exist, so a wrong entry here fails the contract instead of passing silently.

`resource_of` says which request parameter names the resource, per service and operation. An operation without
a rule is recorded as unmapped and fails the contract with a message saying where to add one.

SES v2 SendEmail names no identity: SES authorizes it on the verified identity that covers the From address, and
its policies see that address as `ses:FromAddress`. The rule records the From address (and its display name, and
the configuration set when one is named); the contract finds the identity (tests/iam/contract.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

# The batch APIs are authorized as the action of each entry.
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html
# https://docs.aws.amazon.com/sns/latest/api/API_PublishBatch.html ("needs sns:Publish")
BATCH_ACTIONS: dict[tuple[str, str], str] = {
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
    ("sns", "PublishBatch"): "Publish",
    # Not a batch: HeadObject has no action of its own; S3 authorizes it as GetObject (S3 API reference, HeadObject).
    ("s3", "HeadObject"): "GetObject",
}

UNMAPPED = "unmapped"


@dataclass(frozen=True)
class ResourceRef:
    """A resource as named in a request: `kind` says how to find it in the plan, `value` is the name used."""

    kind: str
    """`sqs-queue-url`, `sns-topic-arn`, `ecr-repository-name`, `secretsmanager-secret`, `rds-db-user`,
    `ses-from-address`, `ecs-task` (a task ARN), `s3-object` (the bucket; the key in `detail`),
    `ec2-interface-groups` (an interface id; the groups it is given in `detail`), or `unmapped`."""
    value: str
    """The queue URL, topic ARN, repository name; for `rds-db-user` the DB host; for `ses-from-address` the From
    address (without its display name); for `unmapped` the operation."""
    detail: tuple[tuple[str, str], ...] = ()
    """Further request parameters the mapping needs (the DB user and port; the From display name and the SES
    configuration set, when given)."""

    def get(self, name: str) -> str:
        return dict(self.detail)[name]

    def optional(self, name: str) -> str | None:
        return dict(self.detail).get(name)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "detail": [list(pair) for pair in self.detail]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResourceRef:
        return cls(data["kind"], data["value"], tuple((str(k), str(v)) for k, v in data["detail"]))


def iam_action(prefix: str, operation: str) -> str:
    return f"{prefix}:{BATCH_ACTIONS.get((prefix, operation), operation)}"


def resource_of(prefix: str, operation: str, params: Mapping[str, Any]) -> ResourceRef:
    if prefix == "sqs" and "QueueUrl" in params:
        return ResourceRef("sqs-queue-url", str(params["QueueUrl"]))
    if prefix == "sns" and operation in ("Publish", "PublishBatch") and "TopicArn" in params:
        return ResourceRef("sns-topic-arn", str(params["TopicArn"]))
    if prefix == "ecr" and "repositoryName" in params:
        return ResourceRef("ecr-repository-name", str(params["repositoryName"]))
    if prefix == "secretsmanager" and "SecretId" in params:
        return ResourceRef("secretsmanager-secret", str(params["SecretId"]))
    if prefix == "rds-db" and operation == "connect":
        detail = (("user", str(params["DBUsername"])), ("port", str(params["Port"])))
        return ResourceRef("rds-db-user", str(params["DBHostname"]), detail)
    if prefix == "ses" and _is_own_identity_send(operation, params):
        return _ses_from_address(params)
    if prefix == "ecs" and operation in ("StopTask", "DescribeTasks"):
        task = params["task"] if "task" in params else params["tasks"][0]
        return ResourceRef("ecs-task", str(task), (("cluster", str(params.get("cluster", ""))),))
    if prefix == "ecs" and operation == "TagResource" and ":task/" in str(params.get("resourceArn", "")):
        keys = ",".join(sorted(str(tag["key"]) for tag in params.get("tags", [])))
        return ResourceRef("ecs-task", str(params["resourceArn"]), (("tag_keys", keys),))
    if prefix == "s3" and "Bucket" in params and "Key" in params:
        return ResourceRef("s3-object", str(params["Bucket"]), (("key", str(params["Key"])),))
    if prefix == "ec2" and operation == "ModifyNetworkInterfaceAttribute" and params.get("Groups"):
        groups = ",".join(str(group) for group in params["Groups"])
        return ResourceRef("ec2-interface-groups", str(params["NetworkInterfaceId"]), (("groups", groups),))
    return ResourceRef(
        UNMAPPED, f"{prefix}:{operation}", tuple(sorted((k, type(v).__name__) for k, v in params.items()))
    )


def _is_own_identity_send(operation: str, params: Mapping[str, Any]) -> bool:
    """SES v2 SendEmail of a simple or templated message from an identity of the caller's own account. Raw content
    and sending authorization (another account's identity ARN) stay unmapped: their rules differ."""
    content = params.get("Content")
    return (
        operation == "SendEmail"
        and "FromEmailAddress" in params
        and "FromEmailAddressIdentityArn" not in params
        and isinstance(content, Mapping)
        and "Raw" not in content
    )


def _ses_from_address(params: Mapping[str, Any]) -> ResourceRef:
    display_name, address = parseaddr(str(params["FromEmailAddress"]))
    detail = {"display_name": display_name, "configuration_set": str(params.get("ConfigurationSetName") or "")}
    return ResourceRef("ses-from-address", address, tuple((k, v) for k, v in detail.items() if v))
