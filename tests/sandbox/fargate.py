"""How Fargate creates each mount of a task, modelled as a fresh directory with the owner and mode it would have."""

from __future__ import annotations

from tests.sandbox.image import ROOT_DIRECTORY, Directory, Image
from tests.sandbox.task import Container, Mount, UnmodelledTask


def fresh_mount(mount: Mount, image: Image, container: Container) -> Directory:
    """Owner and mode of `mount`'s directory when the task starts."""
    if mount.kind == "bind":
        return bind_mount(mount, image)
    return efs_access_point_root(mount, container)


def bind_mount(mount: Mount, image: Image) -> Directory:
    # Fargate bind mounts are root 0755, unless the image has VOLUME at containerPath: then the image's directory
    # (owner, mode, contents) is copied. https://docs.aws.amazon.com/AmazonECS/latest/developerguide/bind-mounts.html
    if mount.container_path not in image.volumes:
        return ROOT_DIRECTORY
    directory = image.directory(mount.container_path)
    assert directory is not None, f"{image.dockerfile}: VOLUME {mount.container_path} always leaves a directory"
    return directory


def efs_access_point_root(mount: Mount, container: Container) -> Directory:
    point = mount.access_point
    assert point is not None, f"{container.label}: EFS mount {mount.container_path} has no access point"
    # EFS creates the access point's root directory from CreationInfo on first mount, and without it the mount fails;
    # every operation then runs as the access point's POSIX user.
    # https://docs.aws.amazon.com/efs/latest/ug/API_CreationInfo.html
    # https://docs.aws.amazon.com/efs/latest/ug/enforce-identity-access-points.html
    if point.creation is None:
        raise UnmodelledTask(
            f"{container.label}: the access point of {mount.container_path} has no CreationInfo, so EFS does not "
            "create its root directory and the first mount on a new file system fails"
        )
    if (point.posix_uid, point.posix_gid) != (container.uid, container.gid):
        raise UnmodelledTask(
            f"{container.label}: the access point of {mount.container_path} acts as {point.posix_uid}:"
            f"{point.posix_gid} while the container runs as {container.uid}:{container.gid}; the sandbox runs every "
            "file operation as the container's user, so it cannot model that identity switch"
        )
    return Directory(*point.creation)
