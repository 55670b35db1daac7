"""The planned container definitions: what ECS would be told to run for each service of a stack.

Read from the offline plan (`runner.plan.run_program`): user, read-only root filesystem, volumes and mount points
(with the EFS access point each EFS volume names), environment, secret names, command and health check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from runner.plan import Plan
from runner.records import ResourceRecord, unwrap_secrets

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
ACCESS_POINT = "aws:efs/accessPoint:AccessPoint"
NUMERIC_USER = re.compile(r"^(\d+)(?::(\d+))?$")


class UnmodelledTask(Exception):
    """The plan asks for something the sandbox cannot reproduce; the message says what."""


@dataclass(frozen=True)
class AccessPoint:
    """An EFS access point: the identity it enforces and how it creates its root directory."""

    posix_uid: int
    posix_gid: int
    creation: tuple[int, int, int] | None
    """(owner uid, owner gid, mode) of the root directory EFS creates on first mount; None: not created."""


@dataclass(frozen=True)
class Mount:
    container_path: str
    volume: str
    read_only: bool
    kind: Literal["bind", "efs"]
    """`bind`: a Fargate bind-mount (task ephemeral storage); `efs`: an EFS volume."""
    efs_identity: str = ""
    """File system, root directory and access point of an EFS volume (mounts sharing it share the data)."""
    access_point: AccessPoint | None = None


@dataclass(frozen=True)
class HealthCheck:
    command: Sequence[str]
    """Argv as the container runs it (`CMD` form unwrapped, `CMD-SHELL` as `/bin/sh -c`)."""
    interval: int
    timeout: int
    retries: int
    start_period: int


@dataclass(frozen=True)
class Container:
    stack: str
    task: str
    service: str
    uid: int
    gid: int
    read_only_root: bool
    drop_all_capabilities: bool
    mounts: Sequence[Mount]
    environment: Mapping[str, str]
    secrets: frozenset[str]
    command: Sequence[str] | None
    health_check: HealthCheck | None

    @property
    def label(self) -> str:
        return f"{self.stack}/{self.service}"


def planned_containers(plan: Plan) -> list[Container]:
    access_points = {
        str(r.outputs.get("id")): access_point(unwrap_secrets(dict(r.inputs)))
        for r in plan.resources
        if r.type == ACCESS_POINT
    }
    containers: list[Container] = []
    for task in (r for r in plan.resources if r.type == TASK_DEFINITION):
        containers.extend(task_containers(plan.stack, task, access_points))
    return containers


def access_point(inputs: Mapping[str, Any]) -> AccessPoint:
    user = inputs.get("posixUser") or {}
    creation = (inputs.get("rootDirectory") or {}).get("creationInfo")
    if "uid" not in user:
        raise UnmodelledTask("an EFS access point without posixUser: the identity of file operations is the client's")
    return AccessPoint(
        posix_uid=int(user["uid"]),
        posix_gid=int(user["gid"]),
        creation=(int(creation["ownerUid"]), int(creation["ownerGid"]), int(str(creation["permissions"]), 8))
        if creation
        else None,
    )


def task_containers(stack: str, task: ResourceRecord, access_points: Mapping[str, AccessPoint]) -> list[Container]:
    inputs = unwrap_secrets(dict(task.inputs))
    volumes = {v["name"]: v for v in inputs.get("volumes") or []}
    return [
        container(stack, task.name, definition, volumes, access_points)
        for definition in json.loads(inputs["containerDefinitions"])
    ]


def container(
    stack: str,
    task: str,
    definition: Mapping[str, Any],
    volumes: Mapping[str, Mapping[str, Any]],
    access_points: Mapping[str, AccessPoint],
) -> Container:
    name = definition["name"]
    user = NUMERIC_USER.match(str(definition.get("user") or ""))
    if not user:
        raise UnmodelledTask(
            f"{stack} {task}/{name}: user {definition.get('user')!r} is not numeric UID[:GID]; a name resolves "
            "through the image's /etc/passwd, which the sandbox does not have (and root is not acceptable)"
        )
    uid = int(user.group(1))
    dropped = (definition.get("linuxParameters") or {}).get("capabilities", {}).get("drop") or []
    return Container(
        stack=stack,
        task=task,
        service=name,
        uid=uid,
        gid=int(user.group(2)) if user.group(2) else uid,
        read_only_root=bool(definition.get("readonlyRootFilesystem")),
        drop_all_capabilities="ALL" in dropped,
        mounts=[mount(stack, task, m, volumes, access_points) for m in definition.get("mountPoints") or []],
        environment={e["name"]: str(e["value"]) for e in definition.get("environment") or []},
        secrets=frozenset(s["name"] for s in definition.get("secrets") or []),
        command=definition.get("command"),
        health_check=health_check(definition.get("healthCheck")),
    )


def mount(
    stack: str,
    task: str,
    point: Mapping[str, Any],
    volumes: Mapping[str, Mapping[str, Any]],
    access_points: Mapping[str, AccessPoint],
) -> Mount:
    name, path = point["sourceVolume"], point["containerPath"]
    volume = volumes.get(name)
    if volume is None:
        raise UnmodelledTask(f"{stack} {task}: mount point {path} names volume {name!r}, which the task does not have")
    read_only = bool(point.get("readOnly"))
    efs = volume.get("efsVolumeConfiguration")
    if efs:
        authorization = efs.get("authorizationConfig") or {}
        point_id = authorization.get("accessPointId")
        if point_id is None:
            raise UnmodelledTask(f"{stack} {task}: EFS volume {name!r} without an access point is not modelled")
        identity = f"{efs['fileSystemId']}:{efs.get('rootDirectory', '/')}:{point_id}"
        return Mount(path, name, read_only, "efs", identity, access_points[point_id])
    if volume.get("host") or volume.get("dockerVolumeConfiguration"):
        raise UnmodelledTask(f"{stack} {task}: volume {name!r} is a host path or Docker volume, which Fargate refuses")
    return Mount(path, name, read_only, "bind")


def health_check(definition: Mapping[str, Any] | None) -> HealthCheck | None:
    if not definition:
        return None
    command = list(definition["command"])
    if command[0] == "CMD":
        argv = command[1:]
    elif command[0] == "CMD-SHELL":
        argv = ["/bin/sh", "-c", " ".join(command[1:])]
    else:
        raise UnmodelledTask(f"health check command {command}: the first element must be CMD or CMD-SHELL")
    # ECS defaults: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_HealthCheck.html
    return HealthCheck(
        command=argv,
        interval=int(definition.get("interval", 30)),
        timeout=int(definition.get("timeout", 5)),
        retries=int(definition.get("retries", 3)),
        start_period=int(definition.get("startPeriod", 0)),
    )
