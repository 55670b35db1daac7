"""Container image references: which registry, repository, tag and digest an image string names."""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
ECR_REGISTRY = re.compile(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True)
class ImageRef:
    registry: str
    """Registry host, `docker.io` when the reference names none."""
    repository: str
    """Repository path inside the registry (`library/nginx` for Docker Hub's official images)."""
    tag: str | None
    digest: str | None

    @property
    def ecr_account(self) -> str | None:
        """The AWS account of a private ECR registry, None for any other registry."""
        match = ECR_REGISTRY.match(self.registry)
        return match.group(1) if match else None

    @property
    def full_name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def uses_latest(self) -> bool:
        """True when the tag is `latest` or absent without a digest (which pulls `latest`)."""
        return self.digest is None and (self.tag is None or self.tag == "latest")


def parse_image(reference: str) -> ImageRef:
    name, _, digest = reference.strip().partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first.lower(), rest
    else:
        registry, path = DOCKER_HUB, name
    last = path.rsplit("/", 1)[-1]
    tag = last.rpartition(":")[2] if ":" in last else None
    if tag is not None:
        path = path[: -(len(tag) + 1)]
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest or None)
