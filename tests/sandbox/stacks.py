"""Which containers of each stack the sandbox runs, and from which Dockerfile.

Every stack with a config file is planned (a new stack cannot skip the sandbox). A stack runs the job platform's
`api` and `worker` when `jobPlatform.enabled`, and one container per `services` entry (built from its `build`
directory's Dockerfile, as the Pulumi program builds it). Sidecars the platform adds from public images (no
Dockerfile here to model) are named in `SIDECARS` with why they are not run; any other container fails the plan
tests until someone decides here how to run it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

from components.config import StackConfig
from services.shop.routes import load_stack_config
from tests.sandbox.task import Container, UnmodelledTask

ROOT = Path(__file__).resolve().parents[2]
STACKS = tuple(sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml")))
# As __main__.py builds them (its IMAGE_SOURCES).
JOB_PLATFORM_DOCKERFILES: Mapping[str, str] = {"api": "services/api/Dockerfile", "worker": "services/worker/Dockerfile"}
SIDECARS: Mapping[str, str] = {
    "otel-collector": (
        "the ADOT collector (tracing) is AWS's public image, with no Dockerfile here to model; the services export "
        "spans to its port on the task's loopback, where nothing listens in the sandbox, as when the collector is down"
    ),
}


@functools.cache
def stack_config(stack: str) -> StackConfig:
    return load_stack_config(ROOT / f"Pulumi.{stack}.yaml")


def dockerfiles(stack: str) -> dict[str, Path]:
    """Container name -> the Dockerfile of its image, for every container the sandbox runs in `stack`."""
    config = stack_config(stack)
    found = {name: ROOT / path for name, path in JOB_PLATFORM_DOCKERFILES.items()} if config.jobPlatform.enabled else {}
    for name, service in config.services.items():
        if service.build is None:
            raise UnmodelledTask(
                f"{stack}/{name} runs image {service.image}, built elsewhere: the sandbox runs only images built "
                "from a Dockerfile in this repository (`build`)"
            )
        found[name] = ROOT / service.build / "Dockerfile"
    return found


def sandboxed(stack: str, containers: Iterable[Container]) -> dict[str, Container]:
    """The planned containers of `stack` the sandbox runs (all but the `SIDECARS`), by name."""
    return {c.service: c for c in containers if c.stack == stack and c.service not in SIDECARS}


def unrun_containers(stack: str, containers: Iterable[Container]) -> list[str]:
    """Why the sandbox would not run every planned container of `stack` as expected (empty: it does)."""
    planned = set(sandboxed(stack, containers))
    expected = set(dockerfiles(stack))
    problems = [
        f"{stack}/{name} is planned but the sandbox does not know how to run it (not the job platform's api or "
        f"worker, not a `services` entry, not one of the SIDECARS {sorted(SIDECARS)} in tests/sandbox/stacks.py)"
        for name in sorted(planned - expected)
    ]
    problems += [f"{stack}/{name} is configured but the plan has no container for it" for name in expected - planned]
    return problems


JOB_PLATFORM_STACKS = tuple(stack for stack in STACKS if stack_config(stack).jobPlatform.enabled)
SERVICE_STACKS = tuple(stack for stack in STACKS if stack_config(stack).services)
