"""Task sandbox: each service of each stack runs its real entry point as its planned container definition says.

Read-only root, the planned uid/gid for real, each mount a fresh directory owned as Fargate creates it, the planned
environment (through the one table in environment.py), the planned command and health check. Here: what every
stack's plan asks for (checked without running anything), and the job platform of the stacks that have it: the API
must pass its health check and /ready, accept a > 1 MiB upload and a job on it; the worker must pass its health check
and finish that job. The stacks' `services` (the shop) run in test_shop_sandbox.py. See docs/runtime-proofs.md
("Task sandbox").
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from psycopg import sql

from services.common.settings import Settings
from services.common.sqs import ensure_queues, sqs_client
from services.fauxqs import Fauxqs
from tests.sandbox.conftest import admin_execute
from tests.sandbox.deployment import assert_runs_as_planned, client_of, sandbox_spec, unwritable_mounts
from tests.sandbox.environment import LocalServices, stale_rows, table_problems
from tests.sandbox.sandbox import HostBridges, Sandbox
from tests.sandbox.stacks import JOB_PLATFORM_DOCKERFILES, JOB_PLATFORM_STACKS, STACKS, sandboxed, unrun_containers
from tests.sandbox.task import Container

UPLOAD_BYTES = 1024 * 1024 + 4096  # over 1 MiB, where request bodies stop being held in memory
JOB_TIMEOUT_SECONDS = 60.0


def job_platform(planned: dict[str, list[Container]], stack: str) -> dict[str, Container]:
    found = sandboxed(stack, planned[stack])
    return {name: found[name] for name in JOB_PLATFORM_DOCKERFILES}


# --- What the plan asks for, checked without running anything ---------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_planned_container_is_run_by_the_sandbox(planned: dict[str, list[Container]], stack: str) -> None:
    problems = unrun_containers(stack, planned[stack])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("stack", STACKS)
def test_every_planned_variable_has_a_local_value(planned: dict[str, list[Container]], stack: str) -> None:
    containers = sandboxed(stack, planned[stack]).values()
    problems = [f"{c.label}: {p}" for c in containers for p in table_problems(c)]
    assert not problems, "the sandbox cannot run what the plan gives these containers:\n" + "\n".join(problems)


def test_the_variable_table_has_no_stale_rows(planned: dict[str, list[Container]]) -> None:
    stale = stale_rows(c for stack, containers in planned.items() for c in sandboxed(stack, containers).values())
    assert not stale, f"rows in tests/sandbox/environment.py for variables no stack plans any more: {stale}"


@pytest.mark.parametrize("stack", STACKS)
def test_planned_writable_mounts_are_writable_by_the_planned_user(
    planned: dict[str, list[Container]], stack: str
) -> None:
    """The ownership model alone (no root needed): each writable mount as Fargate creates it, for the task's user."""
    problems = [p for container in sandboxed(stack, planned[stack]).values() for p in unwritable_mounts(container)]
    assert not problems, "\n".join(problems)


# --- The services, run as planned ---------------------------------------------------------------------------------


@dataclass
class Deployment:
    """The job platform's two services of one stack, running in their sandboxes against fresh local stand-ins."""

    stack: str
    containers: dict[str, Container]
    sandboxes: dict[str, Sandbox]
    api: httpx.Client

    def job(self, job_id: str) -> dict[str, object]:
        response = self.api.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()


def local_services(
    stack: str, containers: dict[str, Container], role: tuple[str, str], tag: str, bridges: HostBridges, sqs_url: str
) -> LocalServices:
    endpoints = {e.name: e for e in bridges.endpoints}
    worker = containers["worker"].environment
    probe = Settings(SQS_ENDPOINT_URL=sqs_url)  # pyright: ignore[reportCallIssue]
    queues = ensure_queues(
        sqs_client(probe),
        f"sbx-{stack}-{uuid.uuid4().hex[:8]}",
        int(worker.get("MAX_RECEIVES", probe.MAX_RECEIVES)),
        int(worker.get("VISIBILITY_TIMEOUT_SECONDS", probe.VISIBILITY_TIMEOUT_SECONDS)),
    )
    # The worker plans every queue (QUEUE_URL_HIGH/NORMAL/LOW, DLQ_URL); the API plans the same URLs.
    return LocalServices(
        postgres_host="127.0.0.1",
        postgres_port=endpoints["postgres"].port,
        database=f"{role[0]}_{stack.replace('-', '_')}",
        db_user=role[0],
        db_password=role[1],
        redis_host="127.0.0.1",
        redis_port=endpoints["redis"].port,
        redis_key_prefix=f"cp-test-{tag}:sbx-{stack}:",
        sqs_endpoint_url=sqs_url,
        queue_urls={worker[name]: url for name, url in queues.items()},
    )


@pytest.fixture(scope="module", params=JOB_PLATFORM_STACKS)
def deployment(
    request: pytest.FixtureRequest,
    sandbox_tools: None,
    planned: dict[str, list[Container]],
    app_role: tuple[str, str],
    session_tag: str,
    fauxqs_server: Fauxqs,
    bridges: HostBridges,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    stack: str = request.param
    containers = job_platform(planned, stack)
    local = local_services(stack, containers, app_role, session_tag, bridges, fauxqs_server.endpoint_url)
    admin_execute(
        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(local.database), sql.Identifier(local.db_user))
    )
    scratch = tmp_path_factory.mktemp(f"sandbox-{stack}")
    storage: dict[str, Path] = {}
    try:
        with (
            Sandbox(sandbox_spec(containers["api"], local, storage, scratch), bridges, scratch / "api") as api,
            Sandbox(sandbox_spec(containers["worker"], local, storage, scratch), bridges, scratch / "worker") as worker,
            client_of(api) as client,
        ):
            yield Deployment(stack, containers, {"api": api, "worker": worker}, client)
    finally:
        admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(local.database)))


@pytest.fixture(scope="module")
def api(deployment: Deployment) -> Sandbox:
    deployment.sandboxes["api"].wait_healthy()
    return deployment.sandboxes["api"]


@pytest.fixture(scope="module")
def worker(deployment: Deployment) -> Sandbox:
    deployment.sandboxes["worker"].wait_healthy()
    return deployment.sandboxes["worker"]


@pytest.fixture(scope="module")
def submitted_job(deployment: Deployment, api: Sandbox) -> str:
    """A > 1 MiB CSV uploaded through POST /files, and a job on it through POST /jobs."""
    rows = [f"{i},name-{i},{i * 7 % 1000}" for i in range(UPLOAD_BYTES // 16)]
    body = ("id,name,value\n" + "\n".join(rows) + "\n").encode()
    assert len(body) > UPLOAD_BYTES
    upload = deployment.api.post("/files", content=body, headers={"Content-Type": "text/csv"})
    assert upload.status_code == 201, f"{api.label}: POST /files failed: {upload.status_code} {upload.text}\n" + (
        api.output()
    )
    assert upload.json()["size_bytes"] == len(body)
    job = deployment.api.post("/jobs", json={"type": "convert.csv_to_json", "input_file_id": upload.json()["id"]})
    assert job.status_code == 202, f"{api.label}: POST /jobs failed: {job.status_code} {job.text}\n{api.output()}"
    return job.json()["id"]


def test_api_passes_its_health_check_and_is_ready(deployment: Deployment, api: Sandbox) -> None:
    result = api.health_check()
    assert result.returncode == 0, f"{api.label}: health check failed: {result.stderr}\n{api.output()}"
    ready = deployment.api.get("/ready")
    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "ready", "checks": {"postgres": "ok", "redis": "ok", "queue": "ok", "storage": "ok"}},
    ), api.output()


def test_api_accepts_a_large_upload_and_a_job(deployment: Deployment, submitted_job: str) -> None:
    assert deployment.job(submitted_job)["status"] in ("queued", "running", "succeeded")


def test_worker_passes_its_health_check(worker: Sandbox) -> None:
    result = worker.health_check()
    assert result.returncode == 0, f"{worker.label}: health check failed: {result.stderr}\n{worker.output()}"


def test_worker_finishes_the_job(deployment: Deployment, worker: Sandbox, submitted_job: str) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    job = deployment.job(submitted_job)
    while job["status"] not in ("succeeded", "failed"):
        assert worker.running(), f"{worker.label} exited with {worker.exit_code()}\n{worker.output()}"
        assert time.monotonic() < deadline, f"job still {job['status']} after {JOB_TIMEOUT_SECONDS}s\n{worker.output()}"
        time.sleep(0.2)
        job = deployment.job(submitted_job)
    assert job["status"] == "succeeded", f"{job}\n{worker.output()}"
    storage = worker.spec.mounts[worker.spec.env["STORAGE_PATH"]]  # the shared EFS directory, seen from the host
    result = storage / "results" / f"{submitted_job}.json"
    assert result.stat().st_uid == worker.spec.container.uid, "results belong to the access point's user"


@pytest.mark.parametrize("service", ["api", "worker"])
def test_runs_as_planned_inside(deployment: Deployment, service: str, request: pytest.FixtureRequest) -> None:
    """The sandbox seen from inside, as the service's user: the planned uid/gid, a read-only root filesystem, and
    every planned writable mount writable."""
    assert_runs_as_planned(request.getfixturevalue(service))  # healthy first; `deployment` gives the stack
