"""The sandbox's models on their own: the Dockerfile reader, Fargate's mount ownership and the variable table.

A model that guessed would let a defect through, so each refuses what it cannot reproduce, by name."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from tests.sandbox.environment import (
    LocalServices,
    UnknownVariables,
    Variable,
    container_environment,
    local_queue,
    stale_rows,
)
from tests.sandbox.fargate import fresh_mount
from tests.sandbox.image import Directory, UnmodelledDockerfile, read_image
from tests.sandbox.sandbox import REPOSITORY, Peer, hosts_file, peer_address, proc_net_tcp_address
from tests.sandbox.stacks import JOB_PLATFORM_DOCKERFILES, STACKS, stack_config
from tests.sandbox.task import AccessPoint, Container, HealthCheck, Mount, UnmodelledTask

BASE = "FROM python:3.11.16-slim-bookworm@sha256:" + "0" * 64
TMP = Mount("/tmp", "tmp", read_only=False, kind="bind")
CONTAINER = Container(
    stack="test",
    task="t",
    service="worker",
    uid=1001,
    gid=1001,
    read_only_root=True,
    drop_all_capabilities=True,
    mounts=(TMP,),
    environment={"LOG_LEVEL": "INFO"},
    secrets=frozenset({"REDIS_AUTH_TOKEN"}),
    command=None,
    health_check=HealthCheck(["true"], 30, 5, 3, 60),
)


def dockerfile(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "Dockerfile"
    path.write_text("\n".join([BASE, *lines, 'CMD ["python", "-m", "x"]']) + "\n")
    return path


SERVICE_DIRECTORIES = sorted(
    {str(Path(path).parent) for path in JOB_PLATFORM_DOCKERFILES.values()}
    | {spec.build for stack in STACKS for spec in stack_config(stack).services.values() if spec.build}
)


@pytest.mark.parametrize("directory", SERVICE_DIRECTORIES)
def test_the_service_images_declare_tmp_and_keep_it_world_writable(directory: str) -> None:
    image = read_image(REPOSITORY / directory / "Dockerfile")
    assert "/tmp" in image.volumes
    assert image.directory("/tmp") == Directory(0, 0, 0o1777)
    assert image.argv == ["python", "-m", directory.replace("/", ".")]
    assert image.env["PATH"].startswith("/opt/venv/bin:") and image.env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert image.workdir == "/app"
    code = image.code()
    assert code[:2] == ("services/__init__.py", "services/common") and code[-1] == directory, code


BUILDER = BASE + " AS builder"


def test_the_code_at_workdir_is_what_a_builder_stage_copies(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(
        "\n".join([
            BUILDER, "COPY services/requirements.txt /tmp/requirements.txt", "WORKDIR /app",
            "COPY services/__init__.py services/__init__.py", "COPY services/api/ /app/services/api",
            BASE, "WORKDIR /app", "COPY --from=builder /opt/venv /opt/venv", "COPY --from=builder /app /app",
            "COPY services/extra services/extra", 'CMD ["python", "-m", "services.api"]',
        ]) + "\n"
    )  # fmt: skip
    assert read_image(path).code() == ("services/__init__.py", "services/api", "services/extra")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["WORKDIR /app", "COPY services/api api"], "only the repository's layout"),
        (["WORKDIR /app", "COPY services/api services/common services/"], "only COPY of one path"),
        (["ADD services.tar.gz /app/"], "only COPY of one path"),
        (["COPY --from=python:3.11 /usr/local /app/python"], "only --from=<an earlier stage> <dir> <dir>"),
    ],
)
def test_code_copied_in_other_forms_fails_loudly(tmp_path: Path, lines: list[str], message: str) -> None:
    image = read_image(dockerfile(tmp_path, "WORKDIR /app", *lines))
    with pytest.raises(UnmodelledDockerfile, match=re.escape(message)):
        image.code()


def test_without_volume_fargate_gives_a_root_owned_0755_directory(tmp_path: Path) -> None:
    image = read_image(dockerfile(tmp_path, "USER 1001:1001"))
    assert fresh_mount(TMP, image, CONTAINER) == Directory(0, 0, 0o755)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['VOLUME ["/tmp"]'], Directory(0, 0, 0o1777)),
        (["RUN mkdir -p /scratch && chown 1001:1001 /scratch", "VOLUME /scratch"], Directory(1001, 1001, 0o755)),
        (["RUN install -d -m 0700 -o 1001 -g 1001 /scratch", 'VOLUME ["/scratch"]'], Directory(1001, 1001, 0o700)),
        (["USER 1001", "RUN mkdir /scratch", "VOLUME /scratch"], Directory(1001, 1001, 0o755)),
        (["VOLUME /scratch"], Directory(0, 0, 0o755)),
    ],
)
def test_with_volume_fargate_copies_the_image_directory(tmp_path: Path, lines: list[str], expected: Directory) -> None:
    image = read_image(dockerfile(tmp_path, *lines))
    path = "/tmp" if "/tmp" in image.volumes else "/scratch"
    assert fresh_mount(replace(TMP, container_path=path), image, CONTAINER) == expected


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['VOLUME ["/tmp"]', "RUN chmod 0700 /tmp"], "after VOLUME"),
        (["RUN chmod a+w /tmp", 'VOLUME ["/tmp"]'], "only octal modes"),
        (["RUN rm -rf /tmp && mkdir /tmp", 'VOLUME ["/tmp"]'], "only ['chmod', 'chown', 'install', 'mkdir']"),
        (["RUN chown app:app /tmp", 'VOLUME ["/tmp"]'], "only numeric"),
        (["COPY scratch/ /tmp/", 'VOLUME ["/tmp"]'], "copies onto /tmp"),
    ],
)
def test_forms_the_model_cannot_reproduce_fail_loudly(tmp_path: Path, lines: list[str], message: str) -> None:
    image = read_image(dockerfile(tmp_path, *lines))
    with pytest.raises(UnmodelledDockerfile, match=re.escape(message)):
        fresh_mount(TMP, image, CONTAINER)


def test_an_unknown_base_image_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text('FROM alpine:3.20.3\nCMD ["sh"]\n')
    with pytest.raises(UnmodelledDockerfile, match=re.escape("base image alpine:3.20.3 is not modelled")):
        read_image(path)


def efs_mount(point: AccessPoint) -> Mount:
    return Mount("/mnt/shared", "storage", read_only=False, kind="efs", efs_identity="fs:/:ap", access_point=point)


def test_an_efs_access_point_root_is_created_from_its_creation_info() -> None:
    mount = efs_mount(AccessPoint(1001, 1001, (1001, 1001, 0o750)))
    assert fresh_mount(mount, read_image(REPOSITORY / "services/worker/Dockerfile"), CONTAINER) == Directory(
        1001, 1001, 0o750
    )


@pytest.mark.parametrize(
    ("point", "message"),
    [
        (AccessPoint(1001, 1001, None), "no CreationInfo"),
        (AccessPoint(0, 0, (0, 0, 0o755)), "acts as 0:0 while the container runs as 1001:1001"),
    ],
)
def test_efs_access_points_the_sandbox_cannot_reproduce_fail_loudly(point: AccessPoint, message: str) -> None:
    image = read_image(REPOSITORY / "services/worker/Dockerfile")
    with pytest.raises(UnmodelledTask, match=message):
        fresh_mount(efs_mount(point), image, CONTAINER)


LOCAL = LocalServices("127.0.0.1", 5432, "db", "role", "pw", "127.0.0.1", 6379, "p:", "http://127.0.0.1:1", {})
TABLE = {
    "LOG_LEVEL": Variable("env", lambda local, value: value),
    "REDIS_AUTH_TOKEN": Variable("secret", lambda local, _: ""),
    "SQS_ENDPOINT_URL": Variable("local", lambda local, _: local.sqs_endpoint_url),
}


def test_the_table_maps_planned_variables_and_adds_local_ones() -> None:
    assert container_environment(CONTAINER, LOCAL, TABLE) == {
        "LOG_LEVEL": "INFO",
        "REDIS_AUTH_TOKEN": "",
        "SQS_ENDPOINT_URL": "http://127.0.0.1:1",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"environment": {"LOG_LEVEL": "INFO", "NEW_SETTING": "1"}}, "NEW_SETTING \\(env\\) has no row"),
        (
            {"environment": {"LOG_LEVEL": "INFO", "REDIS_AUTH_TOKEN": "x"}, "secrets": frozenset()},
            "REDIS_AUTH_TOKEN arrives as env in the plan, but the table says secret",
        ),
    ],
)
def test_a_variable_the_table_does_not_know_fails(change: dict[str, object], message: str) -> None:
    with pytest.raises(UnknownVariables, match=message):
        container_environment(replace(CONTAINER, **change), LOCAL, TABLE)  # pyright: ignore[reportArgumentType]


def test_a_local_row_given_with_a_variable_is_only_for_containers_planned_with_it() -> None:
    table = {**TABLE, "EMAIL_SINK_DIR": Variable("local", lambda local, _: "/tmp/mail", given_with="LOG_LEVEL")}
    assert container_environment(CONTAINER, LOCAL, table)["EMAIL_SINK_DIR"] == "/tmp/mail"
    without = replace(CONTAINER, environment={})
    assert "EMAIL_SINK_DIR" not in container_environment(without, LOCAL, table)


def test_a_planned_queue_maps_to_its_local_queue_or_fails_by_name() -> None:
    local = replace(LOCAL, queue_urls={"https://sqs/planned": "http://127.0.0.1:1/local"})
    assert local_queue(local, "https://sqs/planned") == "http://127.0.0.1:1/local"
    with pytest.raises(UnknownVariables, match=re.escape("queue https://sqs/other has no local queue")):
        local_queue(local, "https://sqs/other")


def test_peers_resolve_to_a_loopback_address_each_and_bridges_wait_for_them() -> None:
    peers = [Peer("users", 8081, Path("/x")), Peer("products", 8082, Path("/y"))]
    assert hosts_file(peers).endswith("127.255.0.1\tusers\n127.255.0.2\tproducts\n")
    assert proc_net_tcp_address("127.0.0.1", 5432) == "0100007F:1538"
    assert proc_net_tcp_address(peer_address(1), 8082) == "0200FF7F:1F92"


def test_a_row_for_a_variable_no_container_has_is_stale() -> None:
    assert stale_rows([replace(CONTAINER, secrets=frozenset())], TABLE) == ["REDIS_AUTH_TOKEN"]
