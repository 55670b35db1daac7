"""What every sandboxed deployment shares: a container's image and sandbox spec, a client to its port, and the check
that it runs as planned, seen from inside."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from tests.sandbox.environment import LocalServices, container_environment
from tests.sandbox.fargate import fresh_mount
from tests.sandbox.image import Directory, Image, read_image
from tests.sandbox.sandbox import Peer, Sandbox, SandboxSpec, prepare_directory
from tests.sandbox.stacks import dockerfiles
from tests.sandbox.task import Container

PROBE = """
import os, sys
print(os.getuid(), os.getgid(), bool(os.statvfs("/").f_flag & os.ST_RDONLY))
for path in sys.argv[1:]:
    print(os.access(path, os.W_OK))
"""


def image_of(container: Container) -> Image:
    return read_image(dockerfiles(container.stack)[container.service])


def writable_by(directory: Directory, uid: int, gid: int) -> bool:
    if uid == directory.uid:
        return bool(directory.mode & 0o200 and directory.mode & 0o100)
    if gid == directory.gid:
        return bool(directory.mode & 0o020 and directory.mode & 0o010)
    return bool(directory.mode & 0o002 and directory.mode & 0o001)


def unwritable_mounts(container: Container) -> list[str]:
    """The ownership model alone (no root needed): each writable mount as Fargate creates it, for the task's user."""
    image = image_of(container)
    problems: list[str] = []
    for mount in (m for m in container.mounts if not m.read_only):
        directory = fresh_mount(mount, image, container)
        if not writable_by(directory, container.uid, container.gid):
            problems.append(
                f"{container.label}: {mount.container_path} ({mount.kind} volume {mount.volume!r}) starts as "
                f"{directory}, not writable by {container.uid}:{container.gid}"
            )
    return problems


def sandbox_spec(
    container: Container,
    local: LocalServices,
    storage: dict[str, Path],
    scratch: Path,
    peers: Sequence[Peer] = (),
) -> SandboxSpec:
    """`container` as its task definition runs it; `storage` holds the EFS directories shared by a stack's tasks."""
    image = image_of(container)
    mounts: dict[str, Path] = {}
    for mount in container.mounts:
        if mount.kind == "efs":  # one file system: every task that mounts the same access point shares it
            fresh = fresh_mount(mount, image, container)
            if mount.efs_identity not in storage:
                storage[mount.efs_identity] = prepare_directory(scratch / f"efs-{len(storage)}", fresh)
            mounts[mount.container_path] = storage[mount.efs_identity]
        else:  # task storage: fresh for each task
            name = f"{container.service}-{mount.volume}"
            mounts[mount.container_path] = prepare_directory(scratch / name, fresh_mount(mount, image, container))
    # The container's environment: the image's ENV, then the task definition's, as Docker merges them; HOME is
    # what Docker sets for a user without a passwd entry.
    env = {**image.env, "HOME": "/", **container_environment(container, local)}
    port = int(container.environment["PORT"]) if "PORT" in container.environment else None
    return SandboxSpec(container, image, container.command or image.argv, env, mounts, port, tuple(peers))


def client_of(sandbox: Sandbox, headers: Mapping[str, str] | None = None) -> httpx.Client:
    """An HTTP client to the sandbox's port, through its inbound socket."""
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(sandbox.inbound_socket)),
        base_url=f"http://{sandbox.spec.container.service}",
        headers={"X-Client-Id": f"sbx-{uuid.uuid4().hex[:8]}", **(headers or {})},
        timeout=10,
    )


def assert_runs_as_planned(sandbox: Sandbox) -> None:
    """The sandbox seen from inside, as the service's user: the planned uid/gid, a read-only root filesystem, and
    every planned writable mount writable."""
    container = sandbox.spec.container
    writable = [m.container_path for m in container.mounts if not m.read_only]
    probe = sandbox.run_inside(["python", "-c", PROBE, *writable], timeout=30)
    assert probe.returncode == 0, f"{sandbox.label}: {probe.stderr}"
    uid, gid, root_read_only, *answers = probe.stdout.split()
    assert (int(uid), int(gid)) == (container.uid, container.gid)
    assert root_read_only == str(container.read_only_root)
    refused = [path for path, answer in zip(writable, answers, strict=True) if answer != "True"]
    assert not refused, f"{sandbox.label}: as {uid}:{gid}, these planned writable mounts are not writable: {refused}"
