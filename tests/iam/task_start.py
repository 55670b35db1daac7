"""The calls ECS (the Fargate agent) makes before a task can start, built from a stack's planned task definitions.
If one is denied the task never starts (CannotPullContainerError, ResourceInitializationError). AWS documents them:

- Execution role (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html): the
  image pull from ECR (ecr:GetAuthorizationToken on `*`, BatchCheckLayerAvailability, GetDownloadUrlForLayer and
  BatchGetImage on the repository the image URI names), the awslogs driver (logs:CreateLogStream and
  logs:PutLogEvents, both authorized on the stream's ARN as the Service Authorization Reference lists them;
  https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using_awslogs.html names the stream
  `<prefix>/<container>/<task id>`; ARN formats in https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/
  iam-access-control-overview-cwl.html), and each `secrets` entry ("Secrets Manager or Systems Manager
  permissions" on that page: secretsmanager:GetSecretValue on the secret, ssm:GetParameters on the parameter,
  kms:Decrypt on a customer managed key, which Secrets Manager calls with the caller's permissions:
  https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html).
- A Service Connect proxy's awslogs configuration (on the service) is written the same way, by the execution role.
- An image in a pull-through cache repository also needs ecr:BatchImportUpstreamImage on it, and ecr:CreateRepository
  until the first pull created it (https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-through-cache-iam.html).
- An EFS volume with `authorizationConfig.iam: ENABLED` is mounted as the *task* role: elasticfilesystem:ClientMount,
  plus ClientWrite for a writable mount, with the access point as `elasticfilesystem:AccessPointArn`; the file
  system policy counts as the resource policy (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/
  efs-volumes.html, https://docs.aws.amazon.com/efs/latest/ug/access-points-iam-policy.html).

Each request is evaluated as the planned role with the permissions boundary CI gives it (PlanIndex.deployed_boundary).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from components.tracing import PULL_THROUGH_CACHE_PREFIX
from runner.records import ResourceRecord
from tests.iam.contract import ContractError, IamRequest, NamedPolicy, PlanIndex, PlannedPrincipal
from tests.iam.recorder import AwsCall
from tests.iam.resources import ResourceRef

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
ECR_IMAGE = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<repository>[^:@]+)")
IMAGE_PULL = ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage")
CACHE_IMPORT = ("ecr:BatchImportUpstreamImage", "ecr:CreateRepository")
# A Fargate task id as it appears in a log stream name (`<prefix>/<container>/<task id>`).
TASK_ID = "0123456789abcdef0123456789abcdef"
# What Pulumi appends to an auto-named resource, what the provider appends to a name prefix, and what Secrets Manager
# appends to every secret's name in its ARN: the plan's mock ARNs carry the logical name instead.
AUTONAME_SUFFIX = "-a1b2c3d"
PREFIX_SUFFIX = "20260101000000000000000001"
SECRET_ARN_SUFFIX = "-AbCdEf"


def task_start_requests(index: PlanIndex) -> list[IamRequest]:
    """Every request ECS makes with the roles of `index`'s planned task definitions before their tasks run."""
    requests: list[IamRequest] = []
    deployed = deployed_arns(index)
    for task in index.of_type(TASK_DEFINITION):
        start = _TaskStart(index, task, deployed)
        for container in start.containers:
            requests += start.image(container)
            requests += start.secrets(container)
            requests += start.logs(container["name"], container.get("logConfiguration"))
        requests += start.service_connect_logs()
        requests += start.volumes()
    return requests


class _TaskStart:
    def __init__(self, index: PlanIndex, task: ResourceRecord, deployed: Mapping[str, str]) -> None:
        self.index, self.task = index, task
        definitions = task.inputs["containerDefinitions"]
        self.containers: list[Mapping[str, Any]] = (
            json.loads(definitions) if isinstance(definitions, str) else definitions
        )
        self.region = index.plan_config().get("aws:region", "us-east-1")
        self.account = task.inputs["executionRoleArn"].split(":")[4]
        self.deployed = deployed
        self.execution = self._principal(f"ecs-agent:{task.inputs['family']}", task.inputs["executionRoleArn"])

    def _principal(self, name: str, role_arn: str) -> PlannedPrincipal:
        planned = self.index._principal(name, role_arn, {})
        policies = tuple(NamedPolicy(p.name, self._as_deployed(p.document)) for p in planned.policies)
        return replace(planned, policies=policies, boundary=self.index.deployed_boundary(role_arn))

    def _as_deployed(self, document: Mapping[str, Any]) -> Mapping[str, Any]:
        return json.loads(as_deployed(json.dumps(document), self.deployed))

    def _request(
        self,
        principal: PlannedPrincipal,
        action: str,
        resource: str,
        ref: ResourceRef,
        *,
        context: Mapping[str, str] | None = None,
        resource_policy: Mapping[str, Any] | None = None,
        reason: str = "",
    ) -> IamRequest:
        call = AwsCall(principal.name, action, action.split(":")[1], ref, f"task definition {self.task.name}")
        tags = self.index.resource_tags(_planned(resource, self.deployed))
        return IamRequest(
            self.index.stack,
            principal,
            action,
            resource,
            resource_policy,
            call,
            reason,
            tags,
            {"aws:RequestedRegion": self.region, **(context or {})},
        )

    # --- Image ---

    def image(self, container: Mapping[str, Any]) -> list[IamRequest]:
        match = ECR_IMAGE.match(container["image"])
        if match is None:
            raise ContractError(
                f"{self.index.stack}: {self.task.name} container {container['name']} runs {container['image']!r}, "
                "not an ECR image; add its registry's calls (private registry authentication) to tests/iam/task_start.py"
            )
        ref = ResourceRef("ecr-image", container["image"])
        repository = f"arn:aws:ecr:{match['region']}:{match['account']}:repository/{match['repository']}"
        cached = match["repository"].startswith(f"{PULL_THROUGH_CACHE_PREFIX}/")
        actions = [*IMAGE_PULL, *(CACHE_IMPORT if cached else ())]
        return [
            self._request(self.execution, "ecr:GetAuthorizationToken", "*", ref),
            *(self._request(self.execution, action, repository, ref) for action in actions),
        ]

    # --- Secrets ---

    def secrets(self, container: Mapping[str, Any]) -> list[IamRequest]:
        requests: list[IamRequest] = []
        for secret in container.get("secrets") or []:
            ref = ResourceRef("ecs-secret", secret["valueFrom"])
            if ":secretsmanager:" in secret["valueFrom"]:
                # `arn:...:secret:<name>-AbCdEf[:json-key:version-stage:version-id]`: IAM sees the secret's ARN.
                arn = as_deployed(":".join(secret["valueFrom"].split(":")[:7]), self.deployed)
                requests.append(self._request(self.execution, "secretsmanager:GetSecretValue", arn, ref))
                requests += self._decrypt(
                    self.index.secret_key(_planned(arn, self.deployed)), "secretsmanager", arn, ref
                )
            else:
                arn = self._parameter(secret)
                requests.append(self._request(self.execution, "ssm:GetParameters", arn, ref))
                requests += self._decrypt(self._parameter_key(arn), "ssm", arn, ref)
        return requests

    def _parameter(self, secret: Mapping[str, str]) -> str:
        value = secret["valueFrom"]
        if value.startswith("arn:"):
            return value
        return f"arn:aws:ssm:{self.region}:{self.account}:parameter/{value.lstrip('/')}"

    def _parameter_key(self, arn: str) -> str | None:
        """The KMS key of a planned SecureString parameter ("" for none or the AWS managed key)."""
        parameter = self.index.find("aws:ssm/parameter:Parameter", "arn", arn)
        return None if parameter is None else (parameter.inputs.get("keyId") or "")

    def _decrypt(self, key: str | None, service: str, arn: str, ref: ResourceRef) -> list[IamRequest]:
        """kms:Decrypt, which Secrets Manager or SSM asks for with the caller's permissions on a customer managed
        key (https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service)."""
        if key is None:
            raise ContractError(f"{self.index.stack}: {self.task.name} names {arn}, which is not planned")
        if not key or key.startswith("alias/aws/"):
            return []  # the AWS managed key: its key policy lets the service use it for the account
        context = {"kms:ViaService": f"{service}.{self.region}.amazonaws.com", "kms:CallerAccount": self.account}
        if service == "secretsmanager":
            context["kms:EncryptionContext:SecretARN"] = arn
        policy = self.index.resource_policy(key)
        reason = f"{service} decrypts {arn} with {key}"
        return [
            self._request(
                self.execution, "kms:Decrypt", key, ref, context=context, resource_policy=policy, reason=reason
            )
        ]

    # --- Logs ---

    def logs(self, container: str, configuration: Mapping[str, Any] | None) -> list[IamRequest]:
        if not configuration or configuration.get("logDriver") != "awslogs":
            return []
        options = configuration["options"]
        group = f"arn:aws:logs:{options.get('awslogs-region', self.region)}:{self.account}:log-group:{options['awslogs-group']}"
        stream = f"{group}:log-stream:{options['awslogs-stream-prefix']}/{container}/{TASK_ID}"
        ref = ResourceRef("awslogs-group", options["awslogs-group"])
        return [
            self._request(self.execution, "logs:CreateLogStream", stream, ref),
            self._request(self.execution, "logs:PutLogEvents", stream, ref),
        ]

    def service_connect_logs(self) -> list[IamRequest]:
        arn = self.task.outputs.get("arn")
        requests: list[IamRequest] = []
        for service in self.index.of_type("aws:ecs/service:Service"):
            connect = service.inputs.get("serviceConnectConfiguration") or {}
            if service.inputs.get("taskDefinition") == arn and connect.get("enabled"):
                requests += self.logs("ecs-service-connect", connect.get("logConfiguration"))
        return requests

    # --- Volumes ---

    def volumes(self) -> list[IamRequest]:
        requests: list[IamRequest] = []
        for volume in self.task.inputs.get("volumes") or []:
            efs = volume.get("efsVolumeConfiguration") or {}
            if (efs.get("authorizationConfig") or {}).get("iam") != "ENABLED":
                continue
            requests += self._efs_mount(volume["name"], efs)
        return requests

    def _efs_mount(self, volume: str, efs: Mapping[str, Any]) -> list[IamRequest]:
        index = self.index
        file_system = index.find("aws:efs/fileSystem:FileSystem", "id", efs["fileSystemId"])
        access_point = index.find("aws:efs/accessPoint:AccessPoint", "id", efs["authorizationConfig"]["accessPointId"])
        if file_system is None or access_point is None:
            raise ContractError(f"{index.stack}: {self.task.name} mounts {efs}, which the plan does not have")
        policy = next(
            (
                self._as_deployed(json.loads(p.inputs["policy"]))
                for p in index.of_type("aws:efs/fileSystemPolicy:FileSystemPolicy")
                if p.inputs.get("fileSystemId") == efs["fileSystemId"]
            ),
            None,
        )
        mounts = [m for c in self.containers for m in c.get("mountPoints") or [] if m["sourceVolume"] == volume]
        actions = ["elasticfilesystem:ClientMount"]
        if any(not m.get("readOnly") for m in mounts):
            actions.append("elasticfilesystem:ClientWrite")
        task_role = self._principal(f"ecs-efs:{self.task.inputs['family']}", self.task.inputs["taskRoleArn"])
        context = {"elasticfilesystem:AccessPointArn": self.deployed[access_point.outputs["arn"]]}
        ref = ResourceRef("efs-volume", volume)
        resource = self.deployed[file_system.outputs["arn"]]
        return [
            self._request(task_role, action, resource, ref, context=context, resource_policy=policy)
            for action in actions
        ]


def deployed_arns(index: PlanIndex) -> dict[str, str]:
    """Mock ARN -> the ARN AWS gives the resource, where the plan's mocks differ and a policy matches on it:
    - an auto-named secret: the mocks name it after its logical name; AWS names it `<name_prefix><unique id>` (or
      `<logical name>-<random>`), and the permissions boundary matches on that name;
    - EFS file systems and access points: `arn:aws:elasticfilesystem:<region>:<account>:file-system/<id>` and
      `.../access-point/<id>`, the resource types the Client* actions are defined on."""
    arns: dict[str, str] = {}
    for secret in index.of_type("aws:secretsmanager/secret:Secret"):
        if secret.inputs.get("name"):
            continue
        prefix = secret.inputs.get("namePrefix")
        name = f"{prefix}{PREFIX_SUFFIX}" if prefix else f"{secret.name}{AUTONAME_SUFFIX}"
        mock = secret.outputs["arn"]
        arns[mock] = f"{mock.split(':secret:')[0]}:secret:{name}{SECRET_ARN_SUFFIX}"
    for type_, kind in (
        ("aws:efs/fileSystem:FileSystem", "file-system"),
        ("aws:efs/accessPoint:AccessPoint", "access-point"),
    ):
        for record in index.of_type(type_):
            _, partition, _, region, account, _ = record.outputs["arn"].split(":", 5)
            arns[record.outputs["arn"]] = (
                f"arn:{partition}:elasticfilesystem:{region}:{account}:{kind}/{record.outputs['id']}"
            )
    # Longest first, so that replacing one mock ARN never rewrites part of a longer one.
    return dict(sorted(arns.items(), key=lambda item: -len(item[0])))


def _planned(arn: str, deployed: Mapping[str, str]) -> str:
    """The plan's (mock) ARN of a resource named by its deployed ARN."""
    return next((mock for mock, real in deployed.items() if real == arn), arn)


def as_deployed(value: str, deployed: Mapping[str, str]) -> str:
    """`value` (an ARN, or a policy's JSON) with the plan's mock ARNs replaced by the deployed ones."""
    for mock, real in deployed.items():
        value = value.replace(mock, real)
    return value
