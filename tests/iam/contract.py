"""The IAM contract: each recorded call, mapped to the resource the PLAN would give that container, evaluated
against the role the plan attaches to it, for every stack.

- `PlanIndex` reads one stack's plan: the principals (ECS containers with their task role, Lambdas with their
  role, each with its planned environment), their identity policies and permissions boundary, the resources.
- `planned_target` is the one place a local resource becomes a planned ARN, through the environment
  contract: the local value (a fauxqs queue URL) was carried by an environment variable (QUEUE_URL_HIGH); the
  plan gives that container a value for the same variable; that value names a planned resource, whose ARN
  is what AWS would authorize (with the request context AWS would add, e.g. `ses:FromAddress`).
- Each stack checks the calls of the principals it plans (`calls_planned_in`): the job platform's stacks plan the
  api and the worker, the `shop` stack the shop's services; both plan the Lambdas.
- `evaluate` asks a real IAM evaluator (iam-simulate, see simulate.mjs) for a decision on every request.
- `scheduled_requests`: the calls AWS services make with the plan's roles on a schedule (EventBridge Scheduler's
  universal targets), evaluated the same way with the boundary CI gives the role.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from runner.plan import Plan
from runner.records import ResourceRecord
from tests.iam.recorder import AwsCall
from tests.iam.resources import UNMAPPED, ResourceRef
from tests.iam.simulator import simulate
from tests.plans import planned as stack_plan
from tests.shapes.check import universal_target

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "staging", "prod", "dev-lean", "shop")
# Every AWS SDK call from our code uses HTTPS; resource policies deny the rest.
REQUEST_CONTEXT = {"aws:SecureTransport": "true"}
# What SQS asks KMS for, with the caller's permissions, on a queue encrypted with a KMS key.
SQS_KEY_ACTIONS: dict[str, tuple[str, ...]] = {
    "sqs:SendMessage": ("kms:GenerateDataKey", "kms:Decrypt"),
    "sqs:ReceiveMessage": ("kms:Decrypt",),
}

# The AWS managed policies the plan attaches, as AWS publishes them (the plan holds only their ARNs).
AWS_MANAGED_POLICIES: dict[str, Mapping[str, Any]] = {
    # https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonECSTaskExecutionRolePolicy.html
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "ecr:GetAuthorizationToken",
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchGetImage",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                ],
                "Resource": "*",
            }
        ],
    },
}


class ContractError(Exception):
    """A recorded call that cannot be checked against the plan; the message says why and what to change."""


@dataclass(frozen=True)
class NamedPolicy:
    name: str
    document: Mapping[str, Any]

    def without(self, actions: set[str]) -> NamedPolicy:
        """The policy with every statement that names one of `actions` removed (a variant a check must deny)."""
        statements = [s for s in self.document["Statement"] if not names_any(s, actions)]
        return NamedPolicy(self.name, {**self.document, "Statement": statements})


def names_any(statement: Mapping[str, Any], actions: set[str]) -> bool:
    """Whether a policy statement names one of `actions`."""
    named = statement.get("Action", [])
    return bool(actions & set([named] if isinstance(named, str) else named))


@dataclass(frozen=True)
class PlannedPrincipal:
    name: str
    """`ecs:<container>` or `lambda:<directory under lambdas/>`."""
    role_arn: str
    environment: Mapping[str, str]
    policies: tuple[NamedPolicy, ...]
    boundary: NamedPolicy | None


@dataclass(frozen=True)
class IamRequest:
    """One request to evaluate: a recorded call (or one AWS makes on its behalf) on a planned resource."""

    stack: str
    principal: PlannedPrincipal
    action: str
    resource: str
    resource_policy: Mapping[str, Any] | None
    call: AwsCall
    reason: str = ""
    """Why AWS checks this action, when the code did not call it directly (e.g. KMS for an encrypted topic)."""
    resource_tags: Mapping[str, str] = field(default_factory=dict)
    """The tags the plan gives the resource (`aws:ResourceTag/...` in the request: the boundary denies other
    environments' tagged resources)."""
    context: Mapping[str, str] = field(default_factory=dict)
    """Condition keys the service puts in this request (e.g. `ses:FromAddress`), besides REQUEST_CONTEXT's."""


@dataclass(frozen=True)
class PlannedTarget:
    """What AWS would authorize a recorded call on, in one stack: the resource and the call's condition keys."""

    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    request: IamRequest
    result: str
    """`Allowed`, `ExplicitlyDenied`, `ImplicitlyDenied`, or `Error` (the evaluator rejected the input)."""
    errors: Any = None


@cache
def plan_for(stack: str) -> PlanIndex:
    return PlanIndex(stack_plan(stack))


@dataclass
class PlanIndex:
    plan: Plan
    principals: dict[str, PlannedPrincipal] = field(init=False)

    def __post_init__(self) -> None:
        self.principals = {p.name: p for p in (*self._containers(), *self._lambdas())}

    @property
    def stack(self) -> str:
        return self.plan.stack

    def of_type(self, type_: str) -> list[ResourceRecord]:
        return [r for r in self.plan.resources if r.type == type_]

    def find(self, type_: str, output: str, value: str) -> ResourceRecord | None:
        return next((r for r in self.of_type(type_) if r.outputs.get(output) == value), None)

    # --- Principals ---

    def _containers(self) -> Iterable[PlannedPrincipal]:
        for task in self.of_type("aws:ecs/taskDefinition:TaskDefinition"):
            definitions = task.inputs["containerDefinitions"]
            for container in json.loads(definitions) if isinstance(definitions, str) else definitions:
                environment = {e["name"]: e["value"] for e in container.get("environment", [])}
                yield self._principal(f"ecs:{container['name']}", task.inputs["taskRoleArn"], environment)

    def _lambdas(self) -> Iterable[PlannedPrincipal]:
        for function in self.of_type("aws:lambda/function:Function"):
            directory = _lambda_directory(function.inputs.get("code"))
            if directory is None:
                continue
            variables = (function.inputs.get("environment") or {}).get("variables") or {}
            yield self._principal(f"lambda:{directory}", function.inputs["role"], dict(variables))

    def _principal(self, name: str, role_arn: str, environment: Mapping[str, str]) -> PlannedPrincipal:
        role = self.find("aws:iam/role:Role", "arn", role_arn)
        if role is None:
            raise ContractError(f"{self.stack}: {name} runs as {role_arn}, which is not a role in the plan")
        return PlannedPrincipal(name, role_arn, environment, self._identity_policies(role), self._boundary(role))

    def _identity_policies(self, role: ResourceRecord) -> tuple[NamedPolicy, ...]:
        names = {role.outputs.get("id"), role.outputs.get("name"), role.outputs.get("arn")}
        inline = [
            NamedPolicy(p.name, json.loads(p.inputs["policy"]))
            for p in self.of_type("aws:iam/rolePolicy:RolePolicy")
            if p.inputs.get("role") in names
        ]
        inline += [
            NamedPolicy(p["name"], json.loads(p["policy"])) for p in role.inputs.get("inlinePolicies") or [] if p
        ]
        attached = [
            a.inputs["policyArn"]
            for a in self.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
            if a.inputs.get("role") in names
        ]
        attached += list(role.inputs.get("managedPolicyArns") or [])
        return (*inline, *(self._managed_policy(arn, role.name) for arn in attached))

    def _managed_policy(self, arn: str, role: str) -> NamedPolicy:
        if arn in AWS_MANAGED_POLICIES:
            return NamedPolicy(arn, AWS_MANAGED_POLICIES[arn])
        policy = self.find("aws:iam/policy:Policy", "arn", arn)
        if policy is None:
            raise ContractError(
                f"{self.stack}: role {role} has managed policy {arn}, whose document is not in the plan; "
                "give task and Lambda roles inline policies (managed AWS policies belong on execution roles)"
            )
        return NamedPolicy(policy.name, json.loads(policy.inputs["policy"]))

    def _boundary(self, role: ResourceRecord) -> NamedPolicy | None:
        arn = role.inputs.get("permissionsBoundary")
        if not arn:
            return None
        policy = self.find("aws:iam/policy:Policy", "arn", arn)
        if policy is not None:
            return NamedPolicy(policy.name, json.loads(policy.inputs["policy"]))
        return NamedPolicy(f"bootstrap boundary {arn}", self._bootstrap_boundary(arn))

    def deployed_boundary(self, role_arn: str) -> NamedPolicy:
        """The boundary a role carries as CI deploys it: the planned one, else the bootstrap's for this stack's
        environment (`iam.permissionsBoundaryArn`, which the program requires in CI)."""
        role = self.find("aws:iam/role:Role", "arn", role_arn)
        planned = self._boundary(role) if role is not None else None
        if planned is not None:
            return planned
        arn = f"arn:aws:iam::{role_arn.split(':')[4]}:policy/container-platform-ci/github-oidc-boundary-{self.environment}"
        return NamedPolicy(f"bootstrap boundary {arn}", self._bootstrap_boundary(arn))

    def _bootstrap_boundary(self, arn: str) -> Mapping[str, Any]:
        # `iam.permissionsBoundaryArn` is the bootstrap program's `permissionsBoundaryArns.<environment>` output:
        # its document is built there, for this stack's environment only.
        from bootstrap.github_oidc.policies import AwsAccount, permissions_boundary
        from bootstrap.github_oidc.settings import BootstrapSettings

        partition, account = arn.split(":")[1], arn.split(":")[4]
        config = self.plan_config()
        environment = self.environment
        # The stack's roles live under `<bootstrap iamPath><env>/`; the bootstrap's `iamPath` is the part before.
        path = (
            json.loads(config.get("container-platform:iam", "{}")).get("path") or f"/container-platform/{environment}/"
        )
        base = path.removesuffix(f"{environment}/") if path.endswith(f"/{environment}/") else path
        settings = BootstrapSettings(
            github_org="offline",
            github_repo="offline",
            allowed_regions=(config.get("aws:region", "us-east-1"),),
            bucket_prefix=f"{config.get('container-platform:applicationName', 'jobs')}-",
            iam_path=base,
        )
        return permissions_boundary(settings, AwsAccount(partition, account), environment)

    @property
    def environment(self) -> str:
        return self.plan_config()["container-platform:environment"]

    def resource_tags(self, arn: str) -> dict[str, str]:
        """The tags a planned resource carries (its own and the stack's `aws:defaultTags`); {} if not planned."""
        record = next((r for r in self.plan.resources if r.outputs.get("arn") == arn), None)
        return self.tags_of(record) if record is not None else {}

    def tags_of(self, record: ResourceRecord) -> dict[str, str]:
        defaults = (json.loads(self.plan_config().get("aws:defaultTags", "{}")) or {}).get("tags") or {}
        own = record.inputs.get("tags")
        return {**defaults, **(own if isinstance(own, Mapping) else {})}

    def plan_config(self) -> Mapping[str, str]:
        return _stack_config(self.stack)

    def secret_key(self, arn: str) -> str | None:
        """For a secret in the plan (its own resource, or the master secret RDS manages for an instance): the
        KMS key that encrypts it ("" for the AWS managed key); None when the plan has no such secret."""
        secret = self.find("aws:secretsmanager/secret:Secret", "arn", arn)
        if secret is not None:
            return secret.inputs.get("kmsKeyId") or ""
        for instance in self.of_type("aws:rds/instance:Instance"):
            if any(s.get("secretArn") == arn for s in instance.outputs.get("masterUserSecrets") or []):
                return instance.inputs.get("masterUserSecretKmsKeyId") or ""
        return None

    # --- Resource policies ---

    def resource_policy(self, arn: str) -> Mapping[str, Any] | None:
        for policy in self.of_type("aws:sqs/queuePolicy:QueuePolicy"):
            queue = self.find("aws:sqs/queue:Queue", "url", policy.inputs.get("queueUrl", ""))
            if queue is not None and queue.outputs.get("arn") == arn:
                return json.loads(policy.inputs["policy"])
        for policy in self.of_type("aws:sns/topicPolicy:TopicPolicy"):
            if policy.inputs.get("arn") == arn:
                return json.loads(policy.inputs["policy"])
        # A KMS key policy must allow (or delegate to IAM through the account root) before IAM policies count.
        key = self.find("aws:kms/key:Key", "arn", arn)
        if key is not None and key.inputs.get("policy"):
            return json.loads(key.inputs["policy"])
        return None


@cache
def _stack_config(stack: str) -> Mapping[str, str]:
    from runner.plan import read_program, read_stack_config

    return read_stack_config(read_program(ROOT), stack)[0]


def _lambda_directory(code: Any) -> str | None:
    """`lambdas/<name>/...` of the function's code asset(s), the directory its handler runs from."""
    paths: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            if isinstance(value.get("path"), str):
                paths.append(value["path"])
            for inner in value.values():
                walk(inner)

    walk(code)
    directories = {Path(p).parts[1] for p in paths if len(Path(p).parts) >= 3 and Path(p).parts[0] == "lambdas"}
    return directories.pop() if len(directories) == 1 else None


# --- The environment contract: local resource -> planned ARN -------------------------------------------------


def planned_resource(ref: ResourceRef, principal: PlannedPrincipal, index: PlanIndex, names_for: NamesFor) -> str:
    """The ARN the plan gives `principal` for the resource the code named locally as `ref`."""
    target = planned_target(ref, principal, index, names_for)
    if target is None:
        raise ContractError(f"{index.stack}: {principal.name} cannot make this call here: {ref}")
    return target.resource


def planned_target(
    ref: ResourceRef, principal: PlannedPrincipal, index: PlanIndex, names_for: NamesFor
) -> PlannedTarget | None:
    """The planned resource of `ref` for `principal`, and the condition keys the call puts in its request; None
    when the call needs an opt-in setting the stack does not plan (the code cannot make it there)."""
    if ref.kind == UNMAPPED:
        raise ContractError(
            f"{principal.name} calls {ref.value}, whose resource parameter has no rule (parameters: "
            f"{dict(ref.detail)}); add one to tests/iam/resources.py `resource_of`"
        )
    if ref.kind == "rds-db-user":
        return PlannedTarget(_rds_db_user(ref, principal, index, names_for))
    if ref.kind == "ses-from-address":
        return _ses_sending(ref, principal, index, names_for)
    if ref.kind == "ecs-task":
        return _ecs_task(ref, principal, index, names_for)
    if ref.kind == "s3-object":
        bucket = _through_environment(ref.value, principal, index, names_for, _bucket_arn, "S3 bucket")
        return PlannedTarget(f"{bucket}/{ref.get('key')}")
    if ref.kind == "ec2-interface-groups":
        return _interface_groups(ref, principal, index, names_for)
    resolve = _RESOLVERS[ref.kind]
    return PlannedTarget(_through_environment(ref.value, principal, index, names_for, resolve, ref.kind))


NamesFor = Callable[[str], set[str]]
Resolver = Callable[[PlanIndex, str], str | None]


def _through_environment(
    value: str, principal: PlannedPrincipal, index: PlanIndex, names_for: NamesFor, resolve: Resolver, what: str
) -> str:
    names = sorted(names_for(value))
    planned = {name: _planned_value(principal.environment, name) for name in names}
    resolved = {name: resolve(index, v) for name, v in planned.items() if v is not None}
    found = {arn for arn in resolved.values() if arn is not None}
    if len(found) == 1:
        return found.pop()
    if not found:
        raise ContractError(
            f"{index.stack}: {principal.name} used the {what} {value!r}, carried locally by "
            f"{', '.join(names) or 'no environment variable'}; the plan gives {principal.name} "
            + (
                ", ".join(f"{n}={v!r}" for n, v in planned.items() if v is not None)
                if any(v is not None for v in planned.values())
                else "none of these variables"
            )
            + f", which names no planned {what}"
        )
    raise ContractError(
        f"{index.stack}: {principal.name} used {value!r}, which maps to several planned resources: {resolved}"
    )


def _planned_value(environment: Mapping[str, str], name: str) -> str | None:
    """`NAME` or `NAME[i]` (element i of a comma-separated list) in a planned environment."""
    base, _, rest = name.partition("[")
    if base not in environment:
        return None
    if not rest:
        return environment[base]
    elements = [part.strip() for part in environment[base].split(",")]
    position = int(rest.rstrip("]"))
    return elements[position] if position < len(elements) else None


def _queue_arn(index: PlanIndex, url: str) -> str | None:
    queue = index.find("aws:sqs/queue:Queue", "url", url)
    return queue.outputs["arn"] if queue else None


def _topic_arn(index: PlanIndex, arn: str) -> str | None:
    return arn if index.find("aws:sns/topic:Topic", "arn", arn) else None


def _repository_arn(index: PlanIndex, name: str) -> str | None:
    repository = index.find("aws:ecr/repository:Repository", "name", name)
    return repository.outputs["arn"] if repository else None


def _secret_arn(index: PlanIndex, arn: str) -> str | None:
    return arn if index.secret_key(arn) is not None else None


_RESOLVERS: dict[str, Resolver] = {
    "sqs-queue-url": _queue_arn,
    "sns-topic-arn": _topic_arn,
    "ecr-repository-name": _repository_arn,
    "secretsmanager-secret": _secret_arn,
}


def _bucket_arn(index: PlanIndex, name: str) -> str | None:
    bucket = index.find("aws:s3/bucket:Bucket", "bucket", name)
    return bucket.outputs["arn"] if bucket else None


def _cluster_arn(index: PlanIndex, arn: str) -> str | None:
    return arn if index.find("aws:ecs/cluster:Cluster", "arn", arn) else None


def _ecs_task(ref: ResourceRef, principal: PlannedPrincipal, index: PlanIndex, names_for: NamesFor) -> PlannedTarget:
    """A task of the cluster the code named (by `cluster`, or the task ARN's cluster): the same task id under the
    planned cluster, with the condition keys ECS puts in the request (`ecs:cluster`; the tag keys of TagResource).
    https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerservice.html"""
    head, _, path = ref.value.partition(":task/")
    cluster_name, _, task_id = path.rpartition("/")
    named = ref.optional("cluster") or f"{head}:cluster/{cluster_name}"
    local_cluster = named if named.startswith("arn:") else f"{head}:cluster/{named}"
    cluster = _through_environment(local_cluster, principal, index, names_for, _cluster_arn, "ECS cluster")
    record = index.find("aws:ecs/cluster:Cluster", "arn", cluster)
    region, account = cluster.split(":")[3:5]
    planned_name = record.inputs.get("name") if record else None
    task = f"arn:aws:ecs:{region}:{account}:task/{planned_name}/{task_id}"
    tag_keys = ref.optional("tag_keys")
    context = {"ecs:cluster": cluster} if tag_keys is None else {"aws:TagKeys": tag_keys.split(",")}
    return PlannedTarget(task, context)  # pyright: ignore[reportArgumentType]


def _interface_groups(
    ref: ResourceRef, principal: PlannedPrincipal, index: PlanIndex, names_for: NamesFor
) -> PlannedTarget | None:
    """ModifyNetworkInterfaceAttribute with `Groups`: the planned group the code was given (the quarantine group,
    through its environment), with `ec2:Vpc` as EC2 sets it for that group's VPC. The interface itself belongs to a
    task ECS started, not to the plan; AWS checks the same action and condition on it."""
    (group,) = ref.get("groups").split(",")
    if not any(_planned_value(principal.environment, name) for name in names_for(group)):
        return None  # the group comes from an opt-in setting this stack does not plan: the call cannot happen here
    planned = _through_environment(group, principal, index, names_for, _group_arn, "security group")
    record = index.find("aws:ec2/securityGroup:SecurityGroup", "arn", planned)
    vpc_id = str(record.inputs.get("vpcId")) if record else ""
    head = planned.split(":security-group/")[0]
    return PlannedTarget(planned, {"ec2:Vpc": f"{head}:vpc/{vpc_id}"})


def _group_arn(index: PlanIndex, group_id: str) -> str | None:
    group = index.find("aws:ec2/securityGroup:SecurityGroup", "id", group_id)
    return group.outputs["arn"] if group else None


def _rds_db_user(ref: ResourceRef, principal: PlannedPrincipal, index: PlanIndex, names_for: NamesFor) -> str:
    """arn:aws:rds-db:<region>:<account>:dbuser:<DbiResourceId>/<user>, what `rds-db:connect` is checked on.
    https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.IAMPolicy.html"""

    def instance(index: PlanIndex, host: str) -> str | None:
        found = index.find("aws:rds/instance:Instance", "address", host)
        return found.outputs["arn"] if found else None

    instance_arn = _through_environment(ref.value, principal, index, names_for, instance, "RDS instance host")
    record = index.find("aws:rds/instance:Instance", "arn", instance_arn)
    assert record is not None
    resource_id = record.outputs.get("resourceId")
    if not resource_id:
        raise ContractError(f"{index.stack}: RDS instance {record.name} has no resourceId in the plan's outputs")
    user = _through_environment(
        ref.get("user"), principal, index, names_for, lambda _index, value: value or None, "database user"
    )
    _, partition, _, region, account, _ = instance_arn.split(":", 5)
    return f"arn:{partition}:rds-db:{region}:{account}:dbuser:{resource_id}/{user}"


def _ses_sending(ref: ResourceRef, principal: PlannedPrincipal, index: PlanIndex, names_for: NamesFor) -> PlannedTarget:
    """SES v2 SendEmail: authorized on the verified identity that covers the From address, the address identity
    if that is verified, else its domain's (https://docs.aws.amazon.com/ses/latest/dg/
    sending-authorization-identity-owner-tasks-policy.html: address identities take precedence), with the From
    address as `ses:FromAddress` (https://docs.aws.amazon.com/ses/latest/dg/control-user-access.html). Which
    identity is verified is decided out of band and declared in the stack (`services.<name>.email.identity`, by
    default the From address's domain); the From address is the value the plan gives the variable that carried
    the local one (EMAIL_FROM)."""
    if ref.optional("configuration_set"):
        raise ContractError(
            f"{index.stack}: {principal.name} sends email with the configuration set "
            f"{ref.optional('configuration_set')!r}, which SES also authorizes SendEmail on; map configuration sets "
            "to the plan in tests/iam/contract.py `_ses_sending` first"
        )
    from_address = _through_environment(
        ref.value, principal, index, names_for, lambda _index, value: value or None, "From address"
    )
    identity = _declared_ses_identity(index, principal)
    if not _identity_covers(identity, from_address):
        raise ContractError(
            f"{index.stack}: {principal.name} sends as {from_address!r} but its declared SES identity {identity!r} "
            "covers neither that address nor its domain; SES would reject the message"
        )
    _, partition, _, _, account, _ = principal.role_arn.split(":", 5)
    region = principal.environment.get("AWS_REGION") or index.plan_config().get("aws:region", "")
    context = {"ses:FromAddress": from_address, "ses:ApiVersion": "2"}
    if display_name := ref.optional("display_name"):
        context["ses:FromDisplayName"] = display_name
    return PlannedTarget(f"arn:{partition}:ses:{region}:{account}:identity/{identity}", context)


def _declared_ses_identity(index: PlanIndex, principal: PlannedPrincipal) -> str:
    service = principal.name.removeprefix("ecs:")
    services = json.loads(index.plan_config().get("container-platform:services", "{}"))
    email = (services.get(service) or {}).get("email")
    if not email:
        raise ContractError(
            f"{index.stack}: {principal.name} sends email through SES but the stack declares no "
            f"services.{service}.email (fromAddress, identity)"
        )
    return email.get("identity") or email["fromAddress"].rpartition("@")[2].lower()


def _identity_covers(identity: str, address: str) -> bool:
    """An address identity covers itself; a domain identity its addresses and its subdomains' addresses."""
    domain = address.rpartition("@")[2].lower()
    return identity.lower() in (address.lower(), domain) or domain.endswith(f".{identity.lower()}")


# --- Requests and evaluation -----------------------------------------------------------------------------


def calls_planned_in(index: PlanIndex, calls: Iterable[AwsCall]) -> list[AwsCall]:
    """The calls whose principal `index`'s stack plans, in a stable order: a stack is checked for what it runs
    (the shop stack has no api, the job platform's stacks no shop services)."""
    planned = [call for call in calls if call.principal in index.principals]
    return sorted(planned, key=lambda c: (c.principal, c.action, c.resource.value))


def requests_for(calls: Iterable[AwsCall], index: PlanIndex, names_for: NamesFor) -> list[IamRequest]:
    """Every request AWS would authorize for the recorded calls in this stack (ContractError if one cannot be
    mapped)."""
    requests: list[IamRequest] = []
    for call in calls:
        principal = index.principals.get(call.principal)
        if principal is None:
            raise ContractError(
                f"{index.stack}: {call.principal} made {call.action} ({call.origin}) but the plan has no such "
                f"container or Lambda; planned: {', '.join(sorted(index.principals))}"
            )
        target = planned_target(call.resource, principal, index, names_for)
        if target is None:
            continue
        request = IamRequest(
            index.stack,
            principal,
            call.action,
            target.resource,
            index.resource_policy(target.resource),
            call,
            resource_tags=index.resource_tags(target.resource),
            context=target.context,
        )
        requests += [request, *_implied(request, index)]
    return requests


def _implied(request: IamRequest, index: PlanIndex) -> list[IamRequest]:
    """KMS calls AWS makes with the caller's permissions:
    - publishing to an encrypted topic needs kms:GenerateDataKey* and kms:Decrypt on its key
      (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html);
    - sending to a queue encrypted with a KMS key needs kms:GenerateDataKey and kms:Decrypt on it, receiving from
      one kms:Decrypt (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/
      sqs-key-management.html); SSE-SQS queues have no key;
    - reading a secret encrypted with a customer managed key needs kms:Decrypt on it
      (https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html)."""
    if request.action == "sns:Publish":
        topic = index.find("aws:sns/topic:Topic", "arn", request.resource)
        key, actions = (topic.inputs.get("kmsMasterKeyId") if topic else None), ("kms:GenerateDataKey", "kms:Decrypt")
        service = "SNS"
    elif request.action in SQS_KEY_ACTIONS:
        queue = index.find("aws:sqs/queue:Queue", "arn", request.resource)
        key = queue.inputs.get("kmsMasterKeyId") if queue else None
        actions, service = SQS_KEY_ACTIONS[request.action], "SQS"
    elif request.action == "secretsmanager:GetSecretValue":
        key, actions, service = index.secret_key(request.resource), ("kms:Decrypt",), "Secrets Manager"
    else:
        return []
    # No key, or an AWS managed key (alias/aws/<service>), whose key policy lets the service use it for the account.
    if not key or key.startswith("alias/aws/"):
        return []
    reason = f"{service} uses {key} for {request.call.action} on {request.resource}"
    return [
        IamRequest(
            request.stack,
            request.principal,
            action,
            key,
            index.resource_policy(key),
            request.call,
            reason,
            index.resource_tags(key),
        )
        for action in actions
    ]


# --- Calls AWS services make with the plan's roles ---

SCHEDULE = "aws:scheduler/schedule:Schedule"


def scheduled_requests(index: PlanIndex) -> list[IamRequest]:
    """Each run of an EventBridge Scheduler schedule with a universal target calls the API the target names, as the
    target's role (https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-targets-universal.html): the
    request on the resource its input names, by that role with its planned policies and the boundary CI gives it."""
    requests = []
    for schedule in index.of_type(SCHEDULE):
        called = universal_target(schedule.inputs)
        if called is None:
            continue
        target, operation = schedule.inputs["target"], called.operation
        action = f"{called.service}:{operation}"
        name = f"scheduler:{schedule.inputs['name']}"
        principal = replace(
            index._principal(name, target["roleArn"], {}), boundary=index.deployed_boundary(target["roleArn"])
        )
        record, resource = _universal_target_resource(index, called.service, called.payload)
        ref = ResourceRef("universal-target-input", str(target.get("input")))
        call = AwsCall(name, action, operation, ref, f"schedule {schedule.name} (universal target)")
        # Scheduler calls the target in the schedule's region.
        region = {"aws:RequestedRegion": index.plan_config().get("aws:region", "us-east-1")}
        tags = index.tags_of(record)
        requests.append(
            IamRequest(index.stack, principal, action, resource, None, call, resource_tags=tags, context=region)
        )
    return requests


def _universal_target_resource(
    index: PlanIndex, service: str, payload: Mapping[str, Any]
) -> tuple[ResourceRecord, str]:
    """The planned resource a universal target's input names, and its ARN (input members in the SDK's casing,
    matched ignoring case as in tests/shapes/check.py)."""
    members = {key.lower(): value for key, value in payload.items()}
    if service == "rds" and "dbinstanceidentifier" in members:
        identifier = members["dbinstanceidentifier"]
        instance = next(
            (r for r in index.of_type("aws:rds/instance:Instance") if r.inputs.get("identifier") == identifier), None
        )
        if instance is None:
            raise ContractError(f"{index.stack}: a schedule names DB instance {identifier!r}, which is not planned")
        region, account = index.plan_config().get("aws:region", "us-east-1"), instance.outputs["arn"].split(":")[4]
        return instance, f"arn:aws:rds:{region}:{account}:db:{identifier}"
    raise ContractError(
        f"{index.stack}: no rule for a universal target of {service} with input {sorted(payload)}; add one to "
        "tests/iam/contract.py `_universal_target_resource`"
    )


def evaluate(requests: Sequence[IamRequest]) -> list[Decision]:
    """Decisions from iam-simulate (tests/iam/simulator.py), one Node process for the whole batch."""
    results = simulate(
        [
            {
                "id": i,
                "principal": r.principal.role_arn,
                "action": r.action,
                "resource": r.resource,
                "accountId": r.principal.role_arn.split(":")[4],
                "identityPolicies": [{"name": p.name, "policy": p.document} for p in r.principal.policies],
                "permissionBoundaryPolicies": [
                    {"name": r.principal.boundary.name, "policy": r.principal.boundary.document}
                ]
                if r.principal.boundary
                else [],
                "resourcePolicy": r.resource_policy,
                "context": {
                    **REQUEST_CONTEXT,
                    **r.context,
                    **{f"aws:ResourceTag/{k}": v for k, v in r.resource_tags.items()},
                },
            }
            for i, r in enumerate(requests)
        ]
    )
    return [Decision(requests[r["id"]], r["result"], r["errors"]) for r in results]


def explain(decision: Decision) -> str:
    """Principal, action, resource, stack and the statements considered, for a failure message."""
    request = decision.request
    lines = [
        f"[{request.stack}] {request.principal.name} ({request.principal.role_arn}) {request.action} on "
        f"{request.resource}: {decision.result}",
        f"  called as {request.call.operation} on {request.call.resource.value!r} at {request.call.origin}"
        + (f"; {request.reason}" if request.reason else ""),
    ]
    if request.context:
        lines.append(f"  request context: {json.dumps(dict(request.context))}")
    if decision.errors:
        lines.append(f"  evaluator rejected the request: {json.dumps(decision.errors)[:600]}")
    for policy in request.principal.policies:
        for statement in _statements(policy.document):
            lines.append(f"  identity {policy.name}: {json.dumps(statement)}")
    if request.principal.boundary:
        for statement in _statements(request.principal.boundary.document):
            lines.append(f"  boundary {request.principal.boundary.name}: {json.dumps(statement)}")
    if request.resource_policy:
        for statement in _statements(request.resource_policy):
            lines.append(f"  resource policy: {json.dumps(statement)}")
    return "\n".join(lines)


def _statements(document: Mapping[str, Any]) -> list[Any]:
    statements = document.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]
