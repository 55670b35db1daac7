"""The AWS calls a first `pulumi up` makes to create what a plan holds, as IAM requests of the deploy role.

For each planned resource: its create call (the operation tests/shapes/mappings.py maps the type to) and the
follow-up calls that mapping names, on the ARN AWS gives the created resource (an id AWS picks at create is `*`)
and on each existing resource the call names (a security group's VPC, an instance's parameter group); the tags
of the request (the resource's own plus the stack's `aws:defaultTags`, for the types the provider adds them to);
the IAM checks AWS makes on the caller for the same call (tag-on-create, `iam:PassRole` of a role given to a
service, `iam:CreateServiceLinkedRole`, `ec2:RunInstances` of an Auto Scaling group's launch template, KMS grants
for a service that encrypts with a customer key). The awsx VPC is a remote component whose children are not in
an offline plan: its calls are derived from its inputs.

For the office hours' schedules and scheduled actions (components/office_hours.py), also the provider's other
calls on them: its read after create, update and delete (they take no tags and have no create-only name, so a
role that may create one but not change or remove it would strand the next `pulumi up` or `destroy`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlparse

from runner.plan import MOCK_ACCOUNT_ID, Plan
from runner.records import ResourceRecord, unwrap_secrets
from tests.shapes.mappings import MAPPINGS, NOT_AWS_REQUESTS, auto_name, prefixed_unique_id
from tests.shapes.translate import To

Context = Mapping[str, str | list[str]]

# botocore's service name -> IAM's service prefix, where they differ.
_IAM_PREFIX = {"elbv2": "elasticloadbalancing", "efs": "elasticfilesystem"}
# API operation -> IAM action, where the names differ (Service Authorization Reference).
_ACTION_NAME = {
    ("s3", "PutBucketLifecycleConfiguration"): "PutLifecycleConfiguration",
    ("s3", "PutPublicAccessBlock"): "PutBucketPublicAccessBlock",
    ("s3", "PutBucketEncryption"): "PutEncryptionConfiguration",
    ("s3", "PutObjectLockConfiguration"): "PutBucketObjectLockConfiguration",
    ("lambda", "Invoke"): "InvokeFunction",
    ("cloudfront", "CreateDistributionWithTags"): "CreateDistribution",
}
# Follow-up operations a mapping names that run on destroy, not on create.
_DESTROY_OPERATIONS = ("Delete", "ScheduleKeyDeletion")

# Types whose provider resource takes no tags at all (policies, attachments, configurations of a parent).
UNTAGGED_TYPES = frozenset(
    {
        "aws:appautoscaling/policy:Policy",
        "aws:appautoscaling/scheduledAction:ScheduledAction",
        "aws:autoscaling/schedule:Schedule",
        "aws:cloudwatch/dashboard:Dashboard",
        "aws:cloudfront/cachePolicy:CachePolicy",
        "aws:cloudfront/function:Function",
        "aws:cloudfront/originAccessControl:OriginAccessControl",
        "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy",
        "aws:cloudwatch/eventTarget:EventTarget",
        "aws:cloudwatch/logMetricFilter:LogMetricFilter",
        "aws:ec2/route:Route",
        "aws:ecr/lifecyclePolicy:LifecyclePolicy",
        "aws:ecr/pullThroughCacheRule:PullThroughCacheRule",
        "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration",
        "aws:guardduty/detectorFeature:DetectorFeature",
        "aws:apigatewayv2/apiMapping:ApiMapping",
        "aws:apigatewayv2/authorizer:Authorizer",
        "aws:apigatewayv2/integration:Integration",
        "aws:apigatewayv2/route:Route",
        "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders",
        "aws:efs/backupPolicy:BackupPolicy",
        "aws:efs/fileSystemPolicy:FileSystemPolicy",
        "aws:efs/mountTarget:MountTarget",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:kms/alias:Alias",
        "aws:lambda/invocation:Invocation",
        "aws:lambda/permission:Permission",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
        "aws:scheduler/schedule:Schedule",
        "aws:secretsmanager/secretVersion:SecretVersion",
        "aws:sns/topicSubscription:TopicSubscription",
        "aws:sqs/queuePolicy:QueuePolicy",
    }
)
# Types that take tags, but not the provider's default tags: an Auto Scaling group's tags are its own `tag`
# blocks (Terraform's AWS provider documents that `default_tags` do not reach them).
NO_DEFAULT_TAGS = frozenset({"aws:autoscaling/group:Group"})
# awsx's VPC is a remote component: an offline plan holds only its outputs (ids made up by the plan's mocks).
AWSX_VPC = "awsx:ec2:Vpc"


@dataclass(frozen=True)
class DeployCall:
    """One IAM authorization a `pulumi up` needs: `action` on `arn`, with the request's context keys."""

    resource: str
    """`<type> <logical name>` of the planned resource being created."""
    action: str
    arn: str
    context: Context = field(default_factory=dict)
    resource_policy: Mapping[str, Any] | None = None
    why: str = "create"


@dataclass
class DeployPlan:
    """One stack's plan, read for the deploy calls it implies."""

    plan: Plan
    config: Mapping[str, str]
    boundary_arn: str
    """The permissions boundary the stack's roles carry in CI (`iam.permissionsBoundaryArn`)."""
    region: str = field(init=False)
    environment: str = field(init=False)
    default_tags: dict[str, str] = field(init=False)
    _by_reference: dict[str, ResourceRecord] = field(init=False)

    def __post_init__(self) -> None:
        self.region = self.config.get("aws:region", "us-east-1")
        self.environment = self.config["container-platform:environment"]
        self.default_tags = dict((json.loads(self.config.get("aws:defaultTags", "{}")) or {}).get("tags") or {})
        self._by_reference = {}
        for record in self.plan.resources:
            for key in (f"{record.name}-id", record.outputs.get("arn"), record.outputs.get("url")):
                if isinstance(key, str):
                    self._by_reference.setdefault(key, record)

    # --- ARNs and tags ---

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{MOCK_ACCOUNT_ID}:{resource}"

    def iam_arn(self, resource: str) -> str:
        return f"arn:aws:iam::{MOCK_ACCOUNT_ID}:{resource}"

    def referenced(self, value: Any) -> ResourceRecord | None:
        """The planned resource a mock id, ARN or URL in another resource's inputs stands for."""
        return self._by_reference.get(value) if isinstance(value, str) else None

    def tags_of(self, record: ResourceRecord) -> dict[str, str]:
        """The tags the resource is created with: its own, and the provider's default tags where they apply."""
        if record.type in UNTAGGED_TYPES:
            return {}
        own = unwrap_secrets(record.inputs.get("tags")) or {}
        if isinstance(own, list):  # Auto Scaling `tag` blocks
            own = {tag["key"]: tag["value"] for tag in own}
        defaults = {} if record.type in NO_DEFAULT_TAGS else self.default_tags
        return {**defaults, **own}

    def region_context(self) -> dict[str, str | list[str]]:
        return {"aws:RequestedRegion": self.region}

    def creating(self, tags: Mapping[str, str]) -> dict[str, str | list[str]]:
        """Context of a request that creates a resource with these tags."""
        context: dict[str, str | list[str]] = self.region_context()
        if tags:
            context.update({f"aws:RequestTag/{key}": value for key, value in tags.items()})
            context["aws:TagKeys"] = sorted(tags)
        return context

    def existing(self, tags: Mapping[str, str]) -> dict[str, str | list[str]]:
        """Context of a request on a resource that exists with these tags."""
        return {**self.region_context(), **{f"aws:ResourceTag/{key}": value for key, value in tags.items()}}

    def vpc_tags(self) -> dict[str, str]:
        """The tags of awsx's VPC children (its own `tags` and the default tags: awsx creates them with the
        stack's default provider)."""
        vpc = next((r for r in self.plan.resources if r.type == AWSX_VPC), None)
        return {**self.default_tags, **((vpc.inputs.get("tags") or {}) if vpc else {})}


Builder = Callable[[DeployPlan, ResourceRecord], list[DeployCall]]


def deploy_calls(deploy: DeployPlan) -> tuple[list[DeployCall], list[str]]:
    """Every call the deploy role must be allowed, and the planned types no rule here covers (an error)."""
    calls: list[DeployCall] = []
    unknown: list[str] = []
    for record in deploy.plan.resources:
        if not record.custom or record.type in NOT_AWS_REQUESTS:
            continue
        if record.type == AWSX_VPC:
            calls += _awsx_vpc(deploy, record)
            continue
        if record.type in _UNMAPPED_BUILDERS:
            calls += _UNMAPPED_BUILDERS[record.type](deploy, record)
            continue
        builder = _BUILDERS.get(record.type)
        mapping = MAPPINGS.get(record.type)
        if builder is None or mapping is None:
            unknown.append(f"{record.type} ({record.name})")
            continue
        calls += builder(deploy, record)
    return calls, unknown


# --- Shared pieces --------------------------------------------------------------------------------------------


def _label(record: ResourceRecord) -> str:
    return f"{record.type} {record.name}"


def _action(record: ResourceRecord, operation: str | None = None) -> str:
    mapping = MAPPINGS[record.type]
    name = operation or mapping.operation
    return f"{_IAM_PREFIX.get(mapping.service, mapping.service)}:{_ACTION_NAME.get((mapping.service, name), name)}"


def _follow_ups(record: ResourceRecord) -> list[str]:
    """The follow-up operations tests/shapes/mappings.py says the provider sends on create for these inputs."""
    mapping = MAPPINGS[record.type]
    operations: set[str] = set()
    for path, target in mapping.renames.items():
        if isinstance(target, To) and ":" in target.target and _has_input(record.inputs, path):
            operations.add(target.target.split(":", 1)[0])
    return sorted(op for op in operations if not op.startswith(_DESTROY_OPERATIONS))


def _has_input(inputs: Mapping[str, Any], path: str) -> bool:
    value: Any = inputs
    for part in path.split("."):
        if isinstance(value, list):
            value = value[0] if value else None
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return value is not None


def _create(
    deploy: DeployPlan,
    record: ResourceRecord,
    created_arn: str,
    *,
    parents: Iterable[tuple[str, Mapping[str, str]]] = (),
    tag_action: str | None = None,
) -> list[DeployCall]:
    """The create call on the new resource (with its tags in the request) and on each existing resource it
    names; with tags, the tagging action AWS also authorizes for tag-on-create; the mapping's follow-ups on the
    created resource."""
    label, action, tags = _label(record), _action(record), deploy.tags_of(record)
    calls = [DeployCall(label, action, created_arn, deploy.creating(tags))]
    calls += [DeployCall(label, action, arn, deploy.existing(parent_tags)) for arn, parent_tags in parents]
    if tag_action and tags:
        calls.append(DeployCall(label, tag_action, created_arn, deploy.creating(tags), why="tags on create"))
    after = created_arn.replace("/*", f"/{record.name}-id").replace(":*", f":{record.name}-id")
    calls += [
        DeployCall(label, _action(record, op), after, deploy.existing(tags), why=f"follow-up {op}")
        for op in _follow_ups(record)
    ]
    return calls


def _with_context(calls: list[DeployCall], extra: Context, action: str | None = None) -> list[DeployCall]:
    """The calls with more context keys (only on `action`'s calls, when given)."""
    return [
        replace(call, context={**call.context, **extra}) if action in (None, call.action) else call for call in calls
    ]


def _pass_role(deploy: DeployPlan, record: ResourceRecord, role_arn: Any, service: str) -> DeployCall:
    role = deploy.referenced(role_arn)
    if role is None or role.type != "aws:iam/role:Role":
        raise ValueError(f"{_label(record)} passes {role_arn!r}, which is not a role in the plan")
    return DeployCall(
        _label(record),
        "iam:PassRole",
        _role_arn(deploy, role),
        {"iam:PassedToService": service},
        why=f"gives the role to {service}",
    )


def _service_linked_role(deploy: DeployPlan, record: ResourceRecord, service: str) -> DeployCall:
    # AWS creates the role on first use, with the caller's permissions: a fresh account needs it.
    return DeployCall(
        _label(record),
        "iam:CreateServiceLinkedRole",
        deploy.iam_arn(f"role/aws-service-role/{service}/*"),
        {"iam:AWSServiceName": service},
        why=f"service-linked role of {service}",
    )


def _key_calls(
    deploy: DeployPlan, record: ResourceRecord, key_arn: Any, actions: Sequence[str], service: str
) -> list[DeployCall]:
    """KMS calls a service makes with the caller's permissions to encrypt `record` with a customer managed key."""
    key = deploy.referenced(key_arn)
    if key is None:
        return []
    context = {**deploy.existing(deploy.tags_of(key)), "kms:GrantIsForAWSResource": "true"}
    return [
        DeployCall(
            _label(record),
            action,
            _key_arn(deploy, key),
            context,
            _key_policy(key),
            why=f"{service} encrypts with {key.name}",
        )
        for action in actions
    ]


def _key_policy(key: ResourceRecord) -> Mapping[str, Any] | None:
    policy = key.inputs.get("policy")
    return json.loads(policy) if isinstance(policy, str) else None


def _key_arn(deploy: DeployPlan, key: ResourceRecord) -> str:
    return deploy.arn("kms", f"key/{key.name}-key-id")


def _role_arn(deploy: DeployPlan, role: ResourceRecord) -> str:
    return deploy.iam_arn(f"role{role.inputs.get('path') or '/'}{role.inputs.get('name') or auto_name(role)}")


def _tagged_parent(
    deploy: DeployPlan, value: Any, arn_of: Callable[[ResourceRecord], str]
) -> tuple[str, Mapping[str, str]] | None:
    parent = deploy.referenced(value)
    return (arn_of(parent), deploy.tags_of(parent)) if parent else None


def _network_parents(deploy: DeployPlan, subnets: Iterable[Any], groups: Iterable[Any]) -> list[tuple[str, Any]]:
    """Subnets (awsx's, tagged like the VPC) and security groups a call names."""
    parents: list[tuple[str, Any]] = [(deploy.arn("ec2", f"subnet/{s}"), deploy.vpc_tags()) for s in subnets]
    for group in groups:
        parent = _tagged_parent(deploy, group, lambda g: deploy.arn("ec2", f"security-group/{g.name}-id"))
        if parent:
            parents.append(parent)
    return parents


def _vpc_parent(deploy: DeployPlan, vpc_id: Any) -> tuple[str, Mapping[str, str]]:
    return deploy.arn("ec2", f"vpc/{vpc_id}"), deploy.vpc_tags()


# --- Per type -------------------------------------------------------------------------------------------------


def _ecs_cluster(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return [
        *_create(deploy, r, deploy.arn("ecs", f"cluster/{r.inputs['name']}"), tag_action="ecs:TagResource"),
        _service_linked_role(deploy, r, "ecs.amazonaws.com"),
    ]


def _ecs_capacity(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _create(deploy, r, deploy.arn("ecs", f"cluster/{r.inputs['clusterName']}"))


def _ecs_task_definition(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(
        deploy, r, deploy.arn("ecs", f"task-definition/{r.inputs['family']}:*"), tag_action="ecs:TagResource"
    )
    return calls + [
        _pass_role(deploy, r, r.inputs[key], "ecs-tasks.amazonaws.com")
        for key in ("taskRoleArn", "executionRoleArn")
        if r.inputs.get(key)
    ]


def _cluster_name(deploy: DeployPlan, value: Any) -> str:
    cluster = deploy.referenced(value)
    return str(cluster.inputs.get("name") if cluster else value).rsplit("/", 1)[-1]


def _ecs_service(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    cluster = _cluster_name(deploy, r.inputs["cluster"])
    calls = _create(deploy, r, deploy.arn("ecs", f"service/{cluster}/{r.inputs['name']}"), tag_action="ecs:TagResource")
    # Blue/green: the role ECS shifts load balancer traffic with, and the one it invokes lifecycle hooks with.
    passed = [(lb.get("advancedConfiguration") or {}).get("roleArn") for lb in r.inputs.get("loadBalancers") or []]
    passed += [
        hook.get("roleArn") for hook in (r.inputs.get("deploymentConfiguration") or {}).get("lifecycleHooks") or []
    ]
    return calls + [_pass_role(deploy, r, role, "ecs.amazonaws.com") for role in passed if role]


def _scalable_target(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(
        deploy,
        r,
        deploy.arn("application-autoscaling", "scalable-target/*"),
        tag_action="application-autoscaling:TagResource",
    )
    # Registering an ECS service checks that the caller may describe and update it.
    service = deploy.arn("ecs", str(r.inputs["resourceId"]))
    calls += [
        DeployCall(_label(r), action, service, deploy.region_context(), why="App Auto Scaling checks the service")
        for action in ("ecs:DescribeServices", "ecs:UpdateService")
    ]
    return [*calls, _service_linked_role(deploy, r, "ecs.application-autoscaling.amazonaws.com")]


def _scalable_target_of(deploy: DeployPlan, r: ResourceRecord) -> tuple[str, Mapping[str, str]]:
    """The ARN and tags of the scalable target a policy or scheduled action acts on (by its resource id)."""
    target = next(
        (
            t
            for t in deploy.plan.resources
            if t.type == "aws:appautoscaling/target:Target" and t.inputs.get("resourceId") == r.inputs.get("resourceId")
        ),
        None,
    )
    tags = deploy.tags_of(target) if target else {}
    return deploy.arn("application-autoscaling", f"scalable-target/{target.name if target else r.name}-id"), tags


def _scaling_policy(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    """PutScalingPolicy is authorized on the scalable target the policy scales: its tags, not the policy's (a
    policy takes none)."""
    target_arn, tags = _scalable_target_of(deploy, r)
    return [DeployCall(_label(r), _action(r), target_arn, deploy.existing(tags), why="on its scalable target")]


def _lifecycle(r: ResourceRecord, calls: Sequence[tuple[str, str, Context]]) -> list[DeployCall]:
    """The provider's calls after the create, each `(action, ARN, context)`: its read-back (`Describe*` takes no
    resource: `*`), update and delete."""
    return [DeployCall(_label(r), action, arn, context, why=action.split(":", 1)[1]) for action, arn, context in calls]


def _scheduled_action(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    """PutScheduledAction creates and updates, DeleteScheduledAction deletes: both on the scalable target (the
    Service Authorization Reference lists no scheduled-action resource), with its service namespace and
    dimension; DescribeScheduledActions reads it back."""
    target_arn, tags = _scalable_target_of(deploy, r)
    on_target = {
        **deploy.existing(tags),
        "application-autoscaling:service-namespace": str(r.inputs["serviceNamespace"]),
        "application-autoscaling:scalable-dimension": str(r.inputs["scalableDimension"]),
    }
    put = DeployCall(_label(r), _action(r), target_arn, on_target, why="on its scalable target")
    read, delete = "application-autoscaling:DescribeScheduledActions", "application-autoscaling:DeleteScheduledAction"
    return [put, *_lifecycle(r, [(read, "*", deploy.region_context()), (delete, target_arn, on_target)])]


def _group_schedule(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    """PutScheduledUpdateGroupAction creates and updates, DeleteScheduledAction deletes: both on the group, with
    its tags (the scheduled action takes none) and the sizes asked for; DescribeScheduledActions reads it back."""
    group = next(
        (
            g
            for g in deploy.plan.resources
            if g.type == "aws:autoscaling/group:Group"
            and r.inputs["autoscalingGroupName"] in (g.outputs.get("name"), g.inputs.get("name"))
        ),
        None,
    )
    if group is None:
        raise ValueError(f"{_label(r)}: group {r.inputs['autoscalingGroupName']!r} is not in the plan")
    group_arn = _group_arn(deploy, group, "12345678-1234-1234-1234-123456789012")
    on_group = deploy.existing(deploy.tags_of(group))
    sizes = {f"autoscaling:{key.title()}": str(int(r.inputs[key])) for key in ("minSize", "maxSize") if key in r.inputs}
    put = DeployCall(_label(r), _action(r), group_arn, {**on_group, **sizes}, why="on its group")
    read, delete = "autoscaling:DescribeScheduledActions", "autoscaling:DeleteScheduledAction"
    return [put, *_lifecycle(r, [(read, "*", deploy.region_context()), (delete, group_arn, on_group)])]


def _schedule(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    """An EventBridge Scheduler schedule (ARN `schedule/<group>/<name>`, no tags): CreateSchedule, then the
    provider's GetSchedule, UpdateSchedule and DeleteSchedule on it; creating and updating one passes its target's
    role to Scheduler (`iam:PassRole`, Service Authorization Reference)."""
    arn = deploy.arn("scheduler", f"schedule/{r.inputs.get('groupName') or 'default'}/{r.inputs['name']}")
    region = deploy.region_context()
    after = _lifecycle(
        r, [(f"scheduler:{op}", arn, region) for op in ("GetSchedule", "UpdateSchedule", "DeleteSchedule")]
    )
    return [
        *_create(deploy, r, arn),
        *after,
        _pass_role(deploy, r, r.inputs["target"]["roleArn"], "scheduler.amazonaws.com"),
    ]


def _metric_alarm(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    actions = sorted(
        {
            _alarm_action(deploy, a)
            for key in ("alarmActions", "okActions", "insufficientDataActions")
            for a in r.inputs.get(key) or []
        }
    )
    calls = _create(deploy, r, deploy.arn("cloudwatch", f"alarm:{auto_name(r)}"), tag_action="cloudwatch:TagResource")
    return _with_context(calls, {"cloudwatch:AlarmActions": actions} if actions else {}, "cloudwatch:PutMetricAlarm")


def _alarm_action(deploy: DeployPlan, value: Any) -> str:
    """The ARN AWS gives an alarm's action: a topic (by name), or a scaling policy (by service and policy name)."""
    target = deploy.referenced(value)
    if target is None:
        return str(value)
    if target.type == "aws:sns/topic:Topic":
        return deploy.arn("sns", str(target.inputs["name"]))
    if target.type == "aws:appautoscaling/policy:Policy":
        policy_id = "12345678-1234-1234-1234-123456789012"
        return (
            f"arn:aws:autoscaling:{deploy.region}:{MOCK_ACCOUNT_ID}:scalingPolicy:{policy_id}:"
            f"resource/{target.inputs['serviceNamespace']}/{target.inputs['resourceId']}:policyName/{auto_name(target)}"
        )
    return str(value)


def _dashboard(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    name = r.inputs["dashboardName"]
    return _create(deploy, r, f"arn:aws:cloudwatch::{MOCK_ACCOUNT_ID}:dashboard/{name}")


def _event_rule(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _create(deploy, r, deploy.arn("events", f"rule/{r.inputs['name']}"), tag_action="events:TagResource")


def _event_target(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(deploy, r, deploy.arn("events", f"rule/{r.inputs['rule']}"))
    if r.inputs.get("roleArn"):
        calls.append(_pass_role(deploy, r, r.inputs["roleArn"], "events.amazonaws.com"))
    return calls


def _log_group(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _create(deploy, r, deploy.arn("logs", f"log-group:{r.inputs['name']}"), tag_action="logs:TagResource")


def _metric_filter(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _create(deploy, r, deploy.arn("logs", f"log-group:{r.inputs['logGroupName']}"))


def _load_balancer_name(deploy: DeployPlan, value: Any) -> str:
    balancer = deploy.referenced(value)
    return str(balancer.inputs.get("name") if balancer else value)


def _load_balancer(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    arn = deploy.arn("elasticloadbalancing", f"loadbalancer/app/{r.inputs['name']}/*")
    calls = _create(deploy, r, arn, tag_action="elasticloadbalancing:AddTags")
    return [*calls, _service_linked_role(deploy, r, "elasticloadbalancing.amazonaws.com")]


def _target_group_arn(r: ResourceRecord) -> str:
    return str(r.inputs.get("name") or prefixed_unique_id(str(r.inputs.get("namePrefix", ""))))


# ELBv2 authorizes tag-on-create as `elasticloadbalancing:AddTags` on the new target group, listener or rule, but
# the Service Authorization data iam-simulate reads lists AddTags on (classic) load balancers only: not evaluated.


def _target_group(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _create(deploy, r, deploy.arn("elasticloadbalancing", f"targetgroup/{_target_group_arn(r)}/*"))


def _listener_parts(deploy: DeployPlan, listener: ResourceRecord) -> str:
    balancer = deploy.referenced(listener.inputs["loadBalancerArn"])
    balancer_id = f"{balancer.name}-id" if balancer else "lb-id"
    return f"app/{_load_balancer_name(deploy, listener.inputs['loadBalancerArn'])}/{balancer_id}"


def _created_under(deploy: DeployPlan, r: ResourceRecord, parent: ResourceRecord, parent_arn: str) -> DeployCall:
    """A create call authorized on the parent only (the Service Authorization Reference lists no resource type
    for what it creates): the request's tags and the parent's tags together."""
    context = {**deploy.creating(deploy.tags_of(r)), **deploy.existing(deploy.tags_of(parent))}
    return DeployCall(_label(r), _action(r), parent_arn, context)


def _listener(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    balancer = deploy.referenced(r.inputs["loadBalancerArn"])
    if balancer is None:
        raise ValueError(f"{_label(r)}: load balancer {r.inputs['loadBalancerArn']!r} is not in the plan")
    balancer_arn = deploy.arn("elasticloadbalancing", f"loadbalancer/app/{balancer.inputs['name']}/{balancer.name}-id")
    return [_created_under(deploy, r, balancer, balancer_arn)]


def _listener_rule(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    listener = deploy.referenced(r.inputs["listenerArn"])
    if listener is None:
        raise ValueError(f"{_label(r)}: listener {r.inputs['listenerArn']!r} is not in the plan")
    listener_arn = deploy.arn(
        "elasticloadbalancing", f"listener/{_listener_parts(deploy, listener)}/{listener.name}-id"
    )
    return [_created_under(deploy, r, listener, listener_arn)]


def _rds_instance(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    inputs = r.inputs
    parents: list[tuple[str, Any]] = [(deploy.arn("rds", "og:default:postgres-17"), {})]
    for key, kind in (("parameterGroupName", "pg"), ("dbSubnetGroupName", "subgrp")):
        group = deploy.referenced(f"{inputs[key]}-id") or next(
            (x for x in deploy.plan.resources if x.name == inputs.get(key)), None
        )
        if group is not None:
            parents.append((deploy.arn("rds", f"{kind}:{auto_name(group)}"), deploy.tags_of(group)))
    calls = _create(
        deploy, r, deploy.arn("rds", f"db:{inputs['identifier']}"), parents=parents, tag_action="rds:AddTagsToResource"
    )
    if inputs.get("monitoringRoleArn"):
        calls.append(_pass_role(deploy, r, inputs["monitoringRoleArn"], "monitoring.rds.amazonaws.com"))
    if inputs.get("manageMasterUserPassword"):
        secret = deploy.arn("secretsmanager", "secret:rds!db-*")
        calls += [
            DeployCall(_label(r), action, secret, deploy.region_context(), why="RDS creates the master user secret")
            for action in ("secretsmanager:CreateSecret", "secretsmanager:TagResource")
        ]
    calls += _key_calls(deploy, r, inputs.get("kmsKeyId"), ("kms:CreateGrant", "kms:DescribeKey"), "RDS")
    return [*calls, _service_linked_role(deploy, r, "rds.amazonaws.com")]


def _rds_group(kind: str) -> Builder:
    def build(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
        return _create(deploy, r, deploy.arn("rds", f"{kind}:{auto_name(r)}"), tag_action="rds:AddTagsToResource")

    return build


def _replication_group(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    group_id = r.inputs["replicationGroupId"]
    subnet_group = next((x for x in deploy.plan.resources if x.name == r.inputs.get("subnetGroupName")), None)
    parents: list[tuple[str, Any]] = [
        (deploy.arn("elasticache", f"cluster:{group_id}-001"), deploy.tags_of(r)),
        (deploy.arn("elasticache", "parametergroup:default.valkey8"), {}),
    ]
    if subnet_group is not None:
        parents.append(
            (deploy.arn("elasticache", f"subnetgroup:{auto_name(subnet_group)}"), deploy.tags_of(subnet_group))
        )
    calls = _create(
        deploy,
        r,
        deploy.arn("elasticache", f"replicationgroup:{group_id}"),
        parents=parents,
        tag_action="elasticache:AddTagsToResource",
    )
    calls += _key_calls(deploy, r, r.inputs.get("kmsKeyId"), ("kms:CreateGrant", "kms:DescribeKey"), "ElastiCache")
    if r.inputs.get("logDeliveryConfigurations"):
        calls.append(
            DeployCall(_label(r), "logs:CreateLogDelivery", "*", deploy.region_context(), why="slow and engine logs")
        )
    return [*calls, _service_linked_role(deploy, r, "elasticache.amazonaws.com")]


def _cache_subnet_group(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _create(
        deploy, r, deploy.arn("elasticache", f"subnetgroup:{auto_name(r)}"), tag_action="elasticache:AddTagsToResource"
    )


def _queue_arn(deploy: DeployPlan, url: Any) -> str:
    return deploy.arn("sqs", urlparse(str(url)).path.rsplit("/", 1)[-1])


def _queue(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _create(deploy, r, deploy.arn("sqs", r.inputs["name"]), tag_action="sqs:TagQueue")


def _queue_policy(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _create(deploy, r, _queue_arn(deploy, r.inputs["queueUrl"]))


def _file_system(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    # CreateFileSystem, CreatePrivateDnsNamespace, Cloud Map's TagResource and CreateHostedZone take no resource
    # ARN: `*`, with the request's tags.
    calls = _create(deploy, r, "*", tag_action="elasticfilesystem:TagResource")
    calls += _key_calls(deploy, r, r.inputs.get("kmsKeyId"), ("kms:CreateGrant", "kms:DescribeKey"), "EFS")
    return [*calls, _service_linked_role(deploy, r, "elasticfilesystem.amazonaws.com")]


def _file_system_arn(deploy: DeployPlan, r: ResourceRecord) -> tuple[str, Mapping[str, str]]:
    system = deploy.referenced(r.inputs["fileSystemId"])
    if system is None:
        raise ValueError(f"{_label(r)}: file system {r.inputs['fileSystemId']!r} is not in the plan")
    return deploy.arn("elasticfilesystem", f"file-system/{system.name}-id"), deploy.tags_of(system)


def _on_file_system(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    arn, tags = _file_system_arn(deploy, r)
    return [DeployCall(_label(r), _action(r), arn, deploy.existing(tags))]


def _access_point(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    system = deploy.referenced(r.inputs["fileSystemId"])
    if system is None:
        raise ValueError(f"{_label(r)}: file system {r.inputs['fileSystemId']!r} is not in the plan")
    return [_created_under(deploy, r, system, _file_system_arn(deploy, r)[0])]


def _mount_target(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _on_file_system(deploy, r)
    # EFS creates the mount target's network interface with the caller's permissions, untagged.
    interface = [(deploy.arn("ec2", "network-interface/*"), {})]
    parents = interface + _network_parents(deploy, [r.inputs["subnetId"]], r.inputs.get("securityGroups") or [])
    calls += [
        DeployCall(_label(r), "ec2:CreateNetworkInterface", arn, deploy.existing(tags), why="EFS creates the interface")
        for arn, tags in parents
    ]
    return calls


def _bucket_name(r: ResourceRecord) -> str:
    return str(r.inputs.get("bucket") or prefixed_unique_id(str(r.inputs.get("bucketPrefix", ""))))


def _bucket(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(deploy, r, f"arn:aws:s3:::{_bucket_name(r)}")
    if deploy.tags_of(r):
        # S3 tags a new bucket with a second call.
        calls.append(
            DeployCall(_label(r), "s3:PutBucketTagging", f"arn:aws:s3:::{_bucket_name(r)}", deploy.region_context())
        )
    return calls


def _bucket_configuration(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    bucket = deploy.referenced(r.inputs["bucket"])
    name = _bucket_name(bucket) if bucket else r.inputs["bucket"]
    return _create(deploy, r, f"arn:aws:s3:::{name}")


def _secret_arn(r: ResourceRecord) -> str:
    name = r.inputs.get("name") or prefixed_unique_id(str(r.inputs.get("namePrefix", "")))
    return f"secret:{name}-AbCdEf"


def _secret(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(deploy, r, deploy.arn("secretsmanager", _secret_arn(r)), tag_action="secretsmanager:TagResource")
    return calls + _key_calls(deploy, r, r.inputs.get("kmsKeyId"), ("kms:GenerateDataKey",), "Secrets Manager")


def _secret_version(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    secret = deploy.referenced(r.inputs["secretId"])
    if secret is None:
        raise ValueError(f"{_label(r)}: secret {r.inputs['secretId']!r} is not in the plan")
    calls = _create(deploy, r, deploy.arn("secretsmanager", _secret_arn(secret)))
    return calls + _key_calls(
        deploy, r, secret.inputs.get("kmsKeyId"), ("kms:GenerateDataKey", "kms:Encrypt"), "Secrets Manager"
    )


def _repository(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(deploy, r, deploy.arn("ecr", f"repository/{r.inputs['name']}"), tag_action="ecr:TagResource")
    for encryption in r.inputs.get("encryptionConfigurations") or []:
        calls += _key_calls(
            deploy, r, encryption.get("kmsKey"), ("kms:CreateGrant", "kms:DescribeKey", "kms:RetireGrant"), "ECR"
        )
    return calls


def _lifecycle_policy(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _create(deploy, r, deploy.arn("ecr", f"repository/{r.inputs['repository']}"))


def _registry_scanning(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(deploy, r, "*")
    if r.inputs.get("scanType") == "ENHANCED":
        # Enhanced scanning turns on Amazon Inspector for ECR with the caller's permissions.
        calls += [
            DeployCall(_label(r), action, "*", deploy.region_context(), why="enhanced scanning uses Inspector")
            for action in ("inspector2:Enable", "inspector2:BatchGetAccountStatus", "inspector2:ListAccountPermissions")
        ]
        calls.append(_service_linked_role(deploy, r, "inspector2.amazonaws.com"))
    return calls


def _codebuild(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(deploy, r, deploy.arn("codebuild", f"project/{r.inputs['name']}"))
    return [*calls, _pass_role(deploy, r, r.inputs["serviceRole"], "codebuild.amazonaws.com")]


def _function(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(deploy, r, deploy.arn("lambda", f"function:{r.inputs['name']}"), tag_action="lambda:TagResource")
    return [*calls, _pass_role(deploy, r, r.inputs["role"], "lambda.amazonaws.com")]


def _function_name(deploy: DeployPlan, value: Any) -> str:
    function = deploy.referenced(value)
    return str(function.inputs.get("name") if function else value)


def _on_function(key: str) -> Builder:
    def build(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
        return _create(deploy, r, deploy.arn("lambda", f"function:{_function_name(deploy, r.inputs[key])}"))

    return build


def _topic(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _create(deploy, r, deploy.arn("sns", r.inputs["name"]), tag_action="sns:TagResource")


def _subscription(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    topic = deploy.referenced(r.inputs["topic"])
    return _create(deploy, r, deploy.arn("sns", str(topic.inputs["name"] if topic else r.inputs["topic"])))


def _namespace(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(deploy, r, "*", tag_action="servicediscovery:TagResource")
    # Cloud Map creates the namespace's private hosted zone in the caller's name.
    zone = "arn:aws:route53:::hostedzone/Z0MOCKZONE"
    calls += [
        DeployCall(_label(r), "route53:CreateHostedZone", "*", {}, why="Cloud Map creates the private hosted zone"),
        *(
            DeployCall(_label(r), action, zone, {}, why="Cloud Map creates the private hosted zone")
            for action in ("route53:AssociateVPCWithHostedZone", "route53:GetHostedZone")
        ),
    ]
    return calls


def _discovery_service(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    namespace = deploy.referenced((r.inputs.get("dnsConfig") or {}).get("namespaceId") or r.inputs.get("namespaceId"))
    parents = (
        [(deploy.arn("servicediscovery", f"namespace/{namespace.name}-id"), deploy.tags_of(namespace))]
        if namespace
        else []
    )
    calls = _create(deploy, r, deploy.arn("servicediscovery", "service/*"), parents=parents)
    tag = DeployCall(_label(r), "servicediscovery:TagResource", "*", deploy.creating(deploy.tags_of(r)), why="tags")
    return [*calls, tag]


# --- API Gateway (HTTP APIs): IAM authorizes `apigateway:<HTTP method>` on the resource path the call names ---


def _apigateway_arn(deploy: DeployPlan, path: str) -> str:
    return f"arn:aws:apigateway:{deploy.region}::{path}"


def _api_path(deploy: DeployPlan, r: ResourceRecord) -> tuple[str, Mapping[str, str]]:
    api = deploy.referenced(r.inputs["apiId"])
    return (f"/apis/{api.name}-id" if api else "/apis/*"), (deploy.tags_of(api) if api else {})


def _apigateway_create(deploy: DeployPlan, r: ResourceRecord, collection: str) -> list[DeployCall]:
    """POST on the collection, with the resource's tags in the request (API Gateway takes tags on create)."""
    return [
        DeployCall(
            _label(r), "apigateway:POST", _apigateway_arn(deploy, collection), deploy.creating(deploy.tags_of(r))
        )
    ]


def _http_api(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _apigateway_create(deploy, r, "/apis")


def _vpc_link(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    # API Gateway places the link's network interfaces with its service-linked role, created on first use.
    return [
        *_apigateway_create(deploy, r, "/vpclinks"),
        _service_linked_role(deploy, r, "ops.apigateway.amazonaws.com"),
    ]


def _on_api(kind: str) -> Builder:
    """A child of an HTTP API (integration, route, authorizer, stage): POST under the API, which carries the tag."""

    def build(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
        path, tags = _api_path(deploy, r)
        # IAM evaluates a child's request with its API's tags (children inherit them), plus the child's own tags.
        context = {**deploy.existing(tags), **deploy.creating(deploy.tags_of(r))}
        calls = [
            DeployCall(_label(r), "apigateway:POST", _apigateway_arn(deploy, f"{path}/{kind}"), context),
            DeployCall(
                _label(r), "apigateway:GET", _apigateway_arn(deploy, path), deploy.existing(tags), why="the API"
            ),
        ]
        if kind == "stages" and r.inputs.get("accessLogSettings"):
            # Access logs to CloudWatch Logs are a vended log delivery made in the caller's name.
            calls += [
                DeployCall(_label(r), action, "*", deploy.region_context(), why="access log delivery")
                for action in (
                    "logs:CreateLogDelivery",
                    "logs:GetLogDelivery",
                    "logs:UpdateLogDelivery",
                    "logs:ListLogDeliveries",
                    "logs:PutResourcePolicy",
                    "logs:DescribeResourcePolicies",
                    "logs:DescribeLogGroups",
                )
            ]
        return calls

    return build


def _domain_name(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _apigateway_create(deploy, r, "/domainnames")


def _api_mapping(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    domain = deploy.referenced(r.inputs["domainName"])
    name = str(domain.inputs["domainName"]) if domain else str(r.inputs["domainName"])
    tags = deploy.tags_of(domain) if domain else {}
    path, api_tags = _api_path(deploy, r)
    return [
        DeployCall(
            _label(r),
            "apigateway:POST",
            _apigateway_arn(deploy, f"/domainnames/{name}/apimappings"),
            deploy.existing(tags),
        ),
        DeployCall(
            _label(r), "apigateway:GET", _apigateway_arn(deploy, path), deploy.existing(api_tags), why="the API"
        ),
    ]


def _guardduty_detector(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    """Account- and region-wide (AWS picks the id); creating the first one creates GuardDuty's service-linked role."""
    calls = _create(deploy, r, "*", tag_action="guardduty:TagResource")
    return [*calls, _service_linked_role(deploy, r, "guardduty.amazonaws.com")]


def _guardduty_feature(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    detector = deploy.referenced(r.inputs.get("detectorId"))
    detector_id = f"{detector.name}-id" if detector is not None else "*"
    arn = deploy.arn("guardduty", f"detector/{detector_id}")
    return [DeployCall(_label(r), "guardduty:UpdateDetector", arn, deploy.region_context())]


def _pull_through_cache_rule(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    """Account- and region-wide: no ARN names the rule, and it takes no tags."""
    return [DeployCall(_label(r), "ecr:CreatePullThroughCacheRule", "*", deploy.region_context())]


def _role(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(deploy, r, _role_arn(deploy, r), tag_action="iam:TagRole")
    return _with_context(calls, _boundary_context(deploy, r))


def _boundary_context(deploy: DeployPlan, role: ResourceRecord) -> dict[str, str]:
    """The role's boundary: its own, or the one CI deploys it with (the program refuses CI without one)."""
    boundary = role.inputs.get("permissionsBoundary")
    return {"iam:PermissionsBoundary": boundary if isinstance(boundary, str) else deploy.boundary_arn}


def _role_named(deploy: DeployPlan, r: ResourceRecord, value: Any) -> ResourceRecord:
    role = deploy.referenced(value) or next(
        (x for x in deploy.plan.resources if x.type == "aws:iam/role:Role" and x.name == value), None
    )
    if role is None:
        raise ValueError(f"{_label(r)} names role {value!r}, which is not in the plan")
    return role


def _role_policy(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    role = _role_named(deploy, r, r.inputs["role"])
    context = {**deploy.region_context(), **_boundary_context(deploy, role)}
    if r.type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment":
        context["iam:PolicyARN"] = r.inputs["policyArn"]
    return [DeployCall(_label(r), _action(r), _role_arn(deploy, role), context)]


def _instance_profile_arn(deploy: DeployPlan, r: ResourceRecord) -> str:
    return deploy.iam_arn(f"instance-profile{r.inputs.get('path') or '/'}{r.inputs.get('name') or auto_name(r)}")


def _instance_profile(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(deploy, r, _instance_profile_arn(deploy, r), tag_action="iam:TagInstanceProfile")
    role = _role_named(deploy, r, r.inputs["role"])
    # Adding a role to an instance profile passes the role (to EC2, through the profile).
    return [*calls, _pass_role(deploy, r, role.outputs.get("arn"), "ec2.amazonaws.com")]


def _kms_key(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(deploy, r, "*", tag_action="kms:TagResource")
    if r.inputs.get("enableKeyRotation"):
        calls.append(
            DeployCall(
                _label(r),
                "kms:EnableKeyRotation",
                _key_arn(deploy, r),
                deploy.existing(deploy.tags_of(r)),
                _key_policy(r),
                why="rotation",
            )
        )
    return calls


def _kms_alias(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    key = deploy.referenced(r.inputs["targetKeyId"])
    calls = _create(deploy, r, deploy.arn("kms", str(r.inputs["name"])))
    if key is not None:
        calls.append(
            DeployCall(
                _label(r),
                "kms:CreateAlias",
                _key_arn(deploy, key),
                deploy.existing(deploy.tags_of(key)),
                _key_policy(key),
            )
        )
    return calls


def _security_group(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(
        deploy,
        r,
        deploy.arn("ec2", "security-group/*"),
        parents=[_vpc_parent(deploy, r.inputs["vpcId"])],
        tag_action="ec2:CreateTags",
    )
    # The provider removes the default allow-all egress rule of every new group.
    calls.append(
        DeployCall(
            _label(r),
            "ec2:RevokeSecurityGroupEgress",
            deploy.arn("ec2", f"security-group/{r.name}-id"),
            deploy.existing(deploy.tags_of(r)),
            why="removes the default egress rule",
        )
    )
    return calls


def _security_group_rule(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    parents = _network_parents(deploy, [], [r.inputs["securityGroupId"]])
    return _create(deploy, r, deploy.arn("ec2", "security-group-rule/*"), parents=parents, tag_action="ec2:CreateTags")


def _network_interface(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    parents = _network_parents(deploy, [r.inputs["subnetId"]], r.inputs.get("securityGroups") or [])
    return _create(deploy, r, deploy.arn("ec2", "network-interface/*"), parents=parents, tag_action="ec2:CreateTags")


def _route(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    # awsx's route tables carry the VPC's tags.
    table = deploy.arn("ec2", f"route-table/{r.inputs['routeTableId']}")
    return [DeployCall(_label(r), _action(r), table, deploy.existing(deploy.vpc_tags()))]


def _launch_template(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _create(deploy, r, deploy.arn("ec2", "launch-template/*"), tag_action="ec2:CreateTags")


def _group_arn(deploy: DeployPlan, group: ResourceRecord, group_id: str) -> str:
    """An Auto Scaling group's ARN: the id AWS gives it (`*` while it is created) and the provider's name."""
    name = group.inputs.get("name") or auto_name(group)
    return (
        f"arn:aws:autoscaling:{deploy.region}:{MOCK_ACCOUNT_ID}:autoScalingGroup:{group_id}:autoScalingGroupName/{name}"
    )


def _auto_scaling_group(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(deploy, r, _group_arn(deploy, r, "*"), tag_action="autoscaling:CreateOrUpdateTags")
    calls.append(_service_linked_role(deploy, r, "autoscaling.amazonaws.com"))
    template = deploy.referenced((r.inputs.get("launchTemplate") or {}).get("id"))
    if template is not None:
        calls += _launch_checks(deploy, r, template)
    return calls


def _launch_checks(deploy: DeployPlan, group: ResourceRecord, template: ResourceRecord) -> list[DeployCall]:
    """Creating a group from a launch template checks that the caller may launch it (`ec2:RunInstances` on the
    template and what it launches) and pass its instance profile's role (AWS, *Control Amazon EC2 launch template
    usage in Auto Scaling groups*)."""
    label, run = _label(group), "ec2:RunInstances"
    template_arn = deploy.arn("ec2", f"launch-template/{template.name}-id")
    from_template = {"ec2:LaunchTemplate": template_arn, "ec2:IsLaunchTemplateResource": "true"}
    instance_tags = {
        **{t["key"]: t["value"] for t in group.inputs.get("tags") or [] if t.get("propagateAtLaunch")},
        **next((s.get("tags") or {} for s in template.inputs.get("tagSpecifications") or []), {}),
    }
    calls = [
        DeployCall(label, run, template_arn, deploy.existing(deploy.tags_of(template)), why="launches the template")
    ]
    for kind in ("instance", "volume", "network-interface"):
        context = {**deploy.creating(instance_tags), **from_template}
        calls.append(DeployCall(label, run, deploy.arn("ec2", f"{kind}/*"), context, why="the launched instance"))
    image = f"arn:aws:ec2:{deploy.region}::image/ami-0123456789abcdef0"
    calls.append(DeployCall(label, run, image, {**deploy.region_context(), **from_template}, why="its image"))
    interfaces = template.inputs.get("networkInterfaces") or []
    groups = [g for interface in interfaces for g in interface.get("securityGroups") or []]
    subnets = group.inputs.get("vpcZoneIdentifiers") or []
    calls += [
        DeployCall(label, run, arn, {**deploy.existing(tags), **from_template}, why="its network")
        for arn, tags in _network_parents(deploy, subnets, groups)
    ]
    profile = deploy.referenced((template.inputs.get("iamInstanceProfile") or {}).get("arn"))
    if profile is not None:
        role = _role_named(deploy, group, profile.inputs["role"])
        calls.append(_pass_role(deploy, group, role.outputs.get("arn"), "ec2.amazonaws.com"))
    return calls


def _flow_log(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(
        deploy,
        r,
        deploy.arn("ec2", "vpc-flow-log/*"),
        parents=[_vpc_parent(deploy, r.inputs["vpcId"])],
        tag_action="ec2:CreateTags",
    )
    return [*calls, _pass_role(deploy, r, r.inputs["iamRoleArn"], "vpc-flow-logs.amazonaws.com")]


def _lambda_invocation(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    return _on_function("functionName")(deploy, r)


def _awsx_vpc(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    """The VPC, subnets, internet gateway, route tables, routes and NAT gateways awsx creates (all tagged with
    the VPC's tags and the default tags)."""
    label, tags = _label(r), deploy.vpc_tags()
    zones = int(r.inputs.get("numberOfAvailabilityZones") or 3)
    nat = (r.inputs.get("natGateways") or {}).get("strategy", "OnePerAz")
    nat_count = {"None": 0, "Single": 1}.get(nat, zones)
    new, old = deploy.creating(tags), deploy.existing(tags)

    def ec2(resource: str) -> str:
        return deploy.arn("ec2", resource)

    vpc = ec2("vpc/vpc-id")
    calls = [
        DeployCall(label, "ec2:CreateVpc", ec2("vpc/*"), new),
        DeployCall(label, "ec2:CreateTags", ec2("vpc/*"), new, why="tags on create"),
        DeployCall(label, "ec2:ModifyVpcAttribute", vpc, old, why="DNS support and host names"),
        DeployCall(label, "ec2:CreateSubnet", ec2("subnet/*"), new),
        DeployCall(label, "ec2:CreateSubnet", vpc, old),
        DeployCall(label, "ec2:CreateInternetGateway", ec2("internet-gateway/*"), new),
        DeployCall(label, "ec2:AttachInternetGateway", ec2("internet-gateway/igw-id"), old),
        DeployCall(label, "ec2:AttachInternetGateway", vpc, old),
        DeployCall(label, "ec2:CreateRouteTable", ec2("route-table/*"), new),
        DeployCall(label, "ec2:CreateRouteTable", vpc, old),
        DeployCall(label, "ec2:CreateRoute", ec2("route-table/rtb-id"), old),
        DeployCall(label, "ec2:AssociateRouteTable", ec2("route-table/rtb-id"), old),
        DeployCall(label, "ec2:AssociateRouteTable", ec2("subnet/subnet-id"), old),
    ]
    if nat_count:
        calls += [
            DeployCall(label, "ec2:AllocateAddress", ec2("elastic-ip/*"), new),
            DeployCall(label, "ec2:CreateNatGateway", ec2("natgateway/*"), new),
            DeployCall(label, "ec2:CreateNatGateway", ec2("subnet/subnet-id"), old),
            DeployCall(label, "ec2:CreateNatGateway", ec2("elastic-ip/eipalloc-id"), old),
        ]
    return calls


def _cloudfront_arn(resource: str) -> str:
    return f"arn:aws:cloudfront::{MOCK_ACCOUNT_ID}:{resource}"


def _cloudfront_by_id(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    """Cache policies, response headers policies, origin access controls: CloudFront's Create* actions take no
    resource ARN (the Service Authorization Reference lists none), so `*`."""
    return _create(deploy, r, "*")


def _cloudfront_function(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    """CreateFunction takes no resource ARN; PublishFunction then names the function."""
    label = _label(r)
    calls = [DeployCall(label, _action(r), "*", deploy.creating(deploy.tags_of(r)))]
    arn = _cloudfront_arn(f"function/{r.inputs['name']}")
    return calls + [
        DeployCall(label, _action(r, op), arn, deploy.region_context(), why=f"follow-up {op}") for op in _follow_ups(r)
    ]


def _distribution(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    """CreateDistributionWithTags is authorized as cloudfront:CreateDistribution (no resource ARN: `*`, with the
    request's tags) plus cloudfront:TagResource on the new distribution."""
    tags = deploy.tags_of(r)
    calls = [DeployCall(_label(r), _action(r), "*", deploy.creating(tags))]
    if tags:
        calls.append(
            DeployCall(
                _label(r),
                "cloudfront:TagResource",
                _cloudfront_arn("distribution/*"),
                deploy.creating(tags),
                why="tags on create",
            )
        )
    return calls


def _logs_arn(r: ResourceRecord, resource: str) -> str:
    return f"arn:aws:logs:{r.inputs.get('region') or 'us-east-1'}:{MOCK_ACCOUNT_ID}:{resource}"


def _in_region(calls: list[DeployCall], r: ResourceRecord) -> list[DeployCall]:
    """Calls the provider sends to the resource's own `region` (CloudFront's log deliveries: us-east-1)."""
    region = r.inputs.get("region")
    return _with_context(calls, {"aws:RequestedRegion": region}) if region else calls


def _delivery_source(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    calls = _create(deploy, r, _logs_arn(r, f"delivery-source:{r.inputs['name']}"), tag_action="logs:TagResource")
    distribution = deploy.referenced(r.inputs["resourceArn"])
    if distribution is not None and distribution.type == "aws:cloudfront/distribution:Distribution":
        # CloudWatch Logs checks that the caller may have the distribution's logs delivered.
        calls.append(
            DeployCall(
                _label(r),
                "cloudfront:AllowVendedLogDeliveryForResource",
                _cloudfront_arn(f"distribution/{distribution.name}-id"),
                deploy.existing(deploy.tags_of(distribution)),
                why="vended logs of the distribution",
            )
        )
    return _in_region(calls, r)


def _delivery_destination(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    arn = _logs_arn(r, f"delivery-destination:{r.inputs['name']}")
    return _in_region(_create(deploy, r, arn, tag_action="logs:TagResource"), r)


def _delivery(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    """CreateDelivery is authorized on the new delivery and on the source and destination it joins."""
    source = str(r.inputs["deliverySourceName"])
    destination = deploy.referenced(r.inputs["deliveryDestinationArn"])
    parents = [(_logs_arn(r, f"delivery-source:{source}"), {})]
    if destination is not None:
        parents.append(
            (_logs_arn(r, f"delivery-destination:{destination.inputs['name']}"), deploy.tags_of(destination))
        )
    calls = _create(deploy, r, _logs_arn(r, "delivery:*"), parents=parents, tag_action="logs:TagResource")
    return _in_region(calls, r)


def _bucket_object(deploy: DeployPlan, r: ResourceRecord) -> list[DeployCall]:
    bucket = deploy.referenced(r.inputs["bucket"])
    name = _bucket_name(bucket) if bucket else r.inputs["bucket"]
    arn = f"arn:aws:s3:::{name}/{r.inputs['key']}"
    calls = _create(deploy, r, arn)
    if deploy.tags_of(r):
        # Tags in a PutObject request (x-amz-tagging) are authorized as s3:PutObjectTagging too.
        calls.append(DeployCall(_label(r), "s3:PutObjectTagging", arn, deploy.region_context(), why="tags on create"))
    return calls


_BUILDERS: dict[str, Builder] = {
    "aws:ecs/cluster:Cluster": _ecs_cluster,
    "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders": _ecs_capacity,
    "aws:ecs/taskDefinition:TaskDefinition": _ecs_task_definition,
    "aws:ecs/service:Service": _ecs_service,
    "aws:appautoscaling/target:Target": _scalable_target,
    "aws:appautoscaling/policy:Policy": _scaling_policy,
    "aws:appautoscaling/scheduledAction:ScheduledAction": _scheduled_action,
    "aws:autoscaling/schedule:Schedule": _group_schedule,
    "aws:scheduler/schedule:Schedule": _schedule,
    "aws:cloudwatch/metricAlarm:MetricAlarm": _metric_alarm,
    "aws:cloudwatch/dashboard:Dashboard": _dashboard,
    "aws:cloudwatch/eventRule:EventRule": _event_rule,
    "aws:cloudwatch/eventTarget:EventTarget": _event_target,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:cloudwatch/logMetricFilter:LogMetricFilter": _metric_filter,
    "aws:lb/loadBalancer:LoadBalancer": _load_balancer,
    "aws:lb/targetGroup:TargetGroup": _target_group,
    "aws:lb/listener:Listener": _listener,
    "aws:lb/listenerRule:ListenerRule": _listener_rule,
    "aws:rds/instance:Instance": _rds_instance,
    "aws:rds/parameterGroup:ParameterGroup": _rds_group("pg"),
    "aws:rds/subnetGroup:SubnetGroup": _rds_group("subgrp"),
    "aws:elasticache/replicationGroup:ReplicationGroup": _replication_group,
    "aws:elasticache/subnetGroup:SubnetGroup": _cache_subnet_group,
    "aws:sqs/queue:Queue": _queue,
    "aws:sqs/queuePolicy:QueuePolicy": _queue_policy,
    "aws:efs/fileSystem:FileSystem": _file_system,
    "aws:efs/accessPoint:AccessPoint": _access_point,
    "aws:efs/backupPolicy:BackupPolicy": _on_file_system,
    "aws:efs/fileSystemPolicy:FileSystemPolicy": _on_file_system,
    "aws:efs/mountTarget:MountTarget": _mount_target,
    "aws:s3/bucket:Bucket": _bucket,
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": _bucket_configuration,
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": _bucket_configuration,
    "aws:s3/bucketPolicy:BucketPolicy": _bucket_configuration,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": _bucket_configuration,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": _bucket_configuration,
    "aws:s3/bucketVersioning:BucketVersioning": _bucket_configuration,
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration": _bucket_configuration,
    "aws:secretsmanager/secret:Secret": _secret,
    "aws:secretsmanager/secretVersion:SecretVersion": _secret_version,
    "aws:ecr/repository:Repository": _repository,
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": _lifecycle_policy,
    "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration": _registry_scanning,
    "aws:codebuild/project:Project": _codebuild,
    "aws:lambda/function:Function": _function,
    "aws:lambda/invocation:Invocation": _lambda_invocation,
    "aws:lambda/permission:Permission": _on_function("function"),
    "aws:sns/topic:Topic": _topic,
    "aws:sns/topicSubscription:TopicSubscription": _subscription,
    "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace": _namespace,
    "aws:servicediscovery/service:Service": _discovery_service,
    "aws:iam/role:Role": _role,
    "aws:iam/rolePolicy:RolePolicy": _role_policy,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": _role_policy,
    "aws:iam/instanceProfile:InstanceProfile": _instance_profile,
    "aws:kms/key:Key": _kms_key,
    "aws:kms/alias:Alias": _kms_alias,
    "aws:ec2/securityGroup:SecurityGroup": _security_group,
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": _security_group_rule,
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": _security_group_rule,
    "aws:ec2/networkInterface:NetworkInterface": _network_interface,
    "aws:ec2/route:Route": _route,
    "aws:ec2/launchTemplate:LaunchTemplate": _launch_template,
    "aws:autoscaling/group:Group": _auto_scaling_group,
    "aws:ec2/flowLog:FlowLog": _flow_log,
    "aws:apigatewayv2/api:Api": _http_api,
    "aws:apigatewayv2/vpcLink:VpcLink": _vpc_link,
    "aws:apigatewayv2/integration:Integration": _on_api("integrations"),
    "aws:apigatewayv2/route:Route": _on_api("routes"),
    "aws:apigatewayv2/authorizer:Authorizer": _on_api("authorizers"),
    "aws:apigatewayv2/stage:Stage": _on_api("stages"),
    "aws:apigatewayv2/domainName:DomainName": _domain_name,
    "aws:apigatewayv2/apiMapping:ApiMapping": _api_mapping,
    "aws:cloudfront/distribution:Distribution": _distribution,
    "aws:cloudfront/function:Function": _cloudfront_function,
    "aws:cloudfront/cachePolicy:CachePolicy": _cloudfront_by_id,
    "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy": _cloudfront_by_id,
    "aws:cloudfront/originAccessControl:OriginAccessControl": _cloudfront_by_id,
    "aws:cloudwatch/logDeliverySource:LogDeliverySource": _delivery_source,
    "aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination": _delivery_destination,
    "aws:cloudwatch/logDelivery:LogDelivery": _delivery,
    "aws:s3/bucketObjectv2:BucketObjectv2": _bucket_object,
}
# Types whose calls need no request shape (tests/shapes/mappings.py has none for them yet).
_UNMAPPED_BUILDERS: dict[str, Builder] = {
    "aws:ecr/pullThroughCacheRule:PullThroughCacheRule": _pull_through_cache_rule,
    "aws:guardduty/detector:Detector": _guardduty_detector,
    "aws:guardduty/detectorFeature:DetectorFeature": _guardduty_feature,
}
