"""No service image ships a pip, setuptools or wheel older than the release that fixes their known CVEs.

CodeBuild's Trivy gate fails a build on them, and this machine has neither a Docker engine nor a vulnerability
database, so the final stage of each Dockerfile is modelled instead:
- its base image, by digest, gives what the image's system Python ships (`BASE_IMAGES`, each entry with the
  public record it was read from);
- the venv the builder creates holds ensurepip's pip and setuptools unless it is made `--without-pip`, plus every
  pin of the requirements file installed into it (markers evaluated for the base image's Python);
- the final stage keeps the venv it copies from the builder and loses what it `pip uninstall`s.
A Dockerfile whose base digest is not in `BASE_IMAGES` fails: record what that image ships first.
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = (
    "services/api/Dockerfile",
    "services/worker/Dockerfile",
    *(f"services/shop/{name}/Dockerfile" for name in ("users", "products", "orders", "payments", "notifications")),
)
VENV = "/opt/venv"

# Lowest release without the listed CVEs (each project's advisory gives the fixed version).
FIXED_IN: Mapping[str, tuple[str, str]] = {
    "setuptools": ("78.1.1", "CVE-2024-6345 (fixed in 70.0.0), CVE-2025-47273 (fixed in 78.1.1)"),
    "pip": ("25.3", "CVE-2025-8869"),
    "wheel": ("0.46.2", "CVE-2026-24049"),
}


@dataclass(frozen=True)
class BaseImage:
    """What an official python image ships in its system Python (/usr/local/lib/python3.X/site-packages)."""

    tag: str
    python: str
    site_packages: Mapping[str, str]
    # Copies other distributions carry in their own tree (`<dist>/_vendor/*.dist-info`, which scanners read);
    # only those of packages in FIXED_IN are recorded.
    vendored: Mapping[str, Mapping[str, str]]
    # What `python -m venv` (without --without-pip) installs into a new venv: ensurepip's bundled wheels.
    ensurepip: Mapping[str, str]
    source: str


BASE_IMAGES: Mapping[str, BaseImage] = {
    "sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16": BaseImage(
        tag="python:3.11.10-slim-bookworm",
        python="3.11.10",
        site_packages={"pip": "24.0", "setuptools": "65.5.1", "wheel": "0.44.0"},
        vendored={},
        ensurepip={"pip": "24.0", "setuptools": "65.5.0"},
        source=(
            "digest and build history (2024-10-18: ensurepip, then `pip3 install 'setuptools==65.5.1' wheel`): "
            "github.com/maxmood96/repo-info (mirror of docker-library/repo-info) repos/python/remote/"
            "3.11.10-slim-bookworm.md; pip 24.0 = 3.11.10's ensurepip (docker-library/python 9cd3243 'Switch from "
            "get-pip.py to ensurepip ... a no-op', versions.json pip 24.0); unpinned wheel = 0.44.0, newest on PyPI "
            "that day (0.45.0: 2024-11-08); ensurepip setuptools 65.5.0 (CPython 3.11 Lib/ensurepip, cpython#113254)"
        ),
    ),
    "sha256:c425d915a89a6dcd3183b1797ad9bd8878caff5a417f6371c8df93c8ea8b727f": BaseImage(
        tag="python:3.11.16-slim-bookworm",
        python="3.11.16",
        site_packages={"pip": "24.0", "setuptools": "79.0.1", "wheel": "0.46.3"},
        vendored={"setuptools": {"wheel": "0.45.1"}},
        ensurepip={"pip": "24.0", "setuptools": "65.5.0"},
        source=(
            "digest and build history (2026-09-01: ensurepip, then `pip3 install 'setuptools==79.0.1' "
            "'wheel==0.46.3'`): github.com/docker-library/repo-info repos/python/remote/3.11.16-slim-bookworm.md and "
            "3.11-slim-bookworm.md at commit 422f3cfe; pip 24.0 = the last ensurepip bump on CPython 3.11 "
            "(cpython#114973; security branches get no ensurepip bumps, cpython#31819), setuptools 65.5.0 likewise "
            "(cpython#113254); setuptools-79.0.1-py3-none-any.whl on PyPI has setuptools/_vendor/wheel-0.45.1.dist-info"
        ),
    ),
}


@dataclass(frozen=True)
class Distribution:
    name: str
    version: str
    where: str  # "system", "system: inside setuptools", "venv"


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def runs(self) -> Iterator[list[str]]:
        """Each simple command of each RUN, as argv."""
        for instruction, value in self.instructions:
            if instruction == "RUN":
                yield from simple_commands(value)


def stages(dockerfile: str) -> list[Stage]:
    found: list[Stage] = []
    for item in DockerfileParser(fileobj=io.StringIO(dockerfile)).structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            words = value.split()
            found.append(Stage(image=words[0], name=words[2] if len(words) == 3 else None))
        elif found and instruction != "COMMENT":
            found[-1].instructions.append((instruction, value))
    if not found:
        raise ValueError("no FROM instruction: not a Dockerfile")
    return found


def simple_commands(script: str) -> Iterator[list[str]]:
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    command: list[str] = []
    for token in lexer:
        if token in ("&&", "||", ";", "|", "&"):
            if command:
                yield command
            command = []
        else:
            command.append(token)
    if command:
        yield command


def base_image(stage: Stage) -> BaseImage:
    digest = stage.image.partition("@")[2]
    if digest not in BASE_IMAGES:
        raise LookupError(
            f"FROM {stage.image}: its digest is not in BASE_IMAGES ({', '.join(BASE_IMAGES)}); add what that image's "
            "system Python ships (pip, setuptools, wheel and what they vendor) with the public record you read it from"
        )
    return BASE_IMAGES[digest]


def pip_subcommand(argv: list[str]) -> tuple[str, str, list[str]] | None:
    """(subcommand, target, arguments) of a pip call; target is "venv" when it installs into VENV, else "system"."""
    if argv[:1] == ["python"] or argv[:1] == ["python3"] or argv[0].startswith(f"{VENV}/bin/python"):
        if argv[1:3] != ["-m", "pip"]:
            return None
        program, rest = argv[0], argv[3:]
    elif Path(argv[0]).name in ("pip", "pip3"):
        program, rest = argv[0], argv[1:]
    else:
        return None
    target = "venv" if program.startswith(f"{VENV}/") else "system"
    while rest and rest[0].startswith("-"):  # pip's global options, before the subcommand
        option = rest.pop(0)
        if option == "--python" and rest:
            target = "venv" if rest.pop(0).startswith(f"{VENV}/") else "system"
    return (rest[0], target, rest[1:]) if rest else None


def requirement_files(arguments: list[str]) -> Iterator[str]:
    for index, argument in enumerate(arguments):
        if argument in ("-r", "--requirement") and index + 1 < len(arguments):
            yield arguments[index + 1]
        elif argument.startswith("--requirement="):
            yield argument.partition("=")[2]


def copied_files(stage: Stage) -> dict[str, Path]:
    """Destination in the image -> repository file, for plain COPYs of one file from the build context."""
    copies: dict[str, Path] = {}
    for instruction, value in stage.instructions:
        words = value.split()
        if instruction == "COPY" and len(words) == 2 and not words[0].startswith("--"):
            copies[words[1]] = ROOT / words[0]
    return copies


def pinned_requirements(path: Path, python: str) -> Iterator[tuple[str, str]]:
    """(name, version) of each `name==version` line that applies to Linux CPython `python`."""
    environment = {"python_full_version": python, "python_version": python.rsplit(".", 1)[0]}
    environment |= {"sys_platform": "linux", "platform_system": "Linux", "implementation_name": "cpython"}
    environment |= {"platform_python_implementation": "CPython"}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        spec = line.split(" --hash", 1)[0].split("#", 1)[0].strip()
        if not spec or spec.startswith("-"):
            continue
        requirement = Requirement(spec)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        [pin] = [s for s in requirement.specifier if s.operator == "=="] or [None]
        if pin is None:
            raise ValueError(f"{path}: {spec!r} is not pinned with == (the image installs exact, hashed versions)")
        yield requirement.name, pin.version


def venv_contents(builder: Stage) -> list[Distribution]:
    base = base_image(builder)
    copies = copied_files(builder)
    contents: dict[str, str] = {}
    for argv in builder.runs():
        if argv[1:3] == ["-m", "venv"] and VENV in argv:
            contents = {} if "--without-pip" in argv else dict(base.ensurepip)
            continue
        call = pip_subcommand(argv)
        if call is None or call[:2] != ("install", "venv"):
            continue
        for requirements in requirement_files(call[2]):
            if requirements not in copies:
                raise LookupError(f"{builder.name}: cannot tell which repository file {requirements} is (not COPYed)")
            contents |= dict(pinned_requirements(copies[requirements], base.python))
        contents |= dict(arg.split("==", 1) for arg in call[2] if "==" in arg and not arg.startswith("-"))
    return [Distribution(name, version, "venv") for name, version in contents.items()]


def system_contents(stage: Stage) -> list[Distribution]:
    base = base_image(stage)
    removed: set[str] = set()
    for argv in stage.runs():
        call = pip_subcommand(argv)
        if call is not None and call[:2] == ("uninstall", "system"):
            removed |= {canonicalize_name(arg) for arg in call[2] if not arg.startswith("-")}
    kept = [(name, version) for name, version in base.site_packages.items() if canonicalize_name(name) not in removed]
    vendored = [
        Distribution(name, version, f"system: inside {owner}")
        for owner, _ in kept
        for name, version in base.vendored.get(owner, {}).items()
    ]
    return [Distribution(name, version, "system") for name, version in kept] + vendored


def final_stage_contents(dockerfile: str) -> list[Distribution]:
    all_stages = stages(dockerfile)
    final = all_stages[-1]
    by_name = {stage.name: stage for stage in all_stages if stage.name}
    contents = system_contents(final)
    for instruction, value in final.instructions:
        words = value.split()
        if instruction == "COPY" and words[0].startswith("--from=") and words[1].rstrip("/") == VENV:
            contents += venv_contents(by_name[words[0].removeprefix("--from=")])
    return contents


def vulnerable(contents: Iterable[Distribution]) -> list[str]:
    findings = []
    for dist in contents:
        fixed = FIXED_IN.get(canonicalize_name(dist.name))
        if fixed and Version(dist.version) < Version(fixed[0]):
            findings.append(f"{dist.where}: {dist.name} {dist.version} < {fixed[0]} ({fixed[1]})")
    return findings


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_final_stage_has_no_vulnerable_pip_setuptools_or_wheel(dockerfile: str) -> None:
    findings = vulnerable(final_stage_contents((ROOT / dockerfile).read_text()))
    assert not findings, f"{dockerfile}: the final image would carry\n" + "\n".join(findings)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_builder_and_final_stage_share_one_base_image(dockerfile: str) -> None:
    # The venv's bin/python is a symlink to the base image's interpreter: both stages need the same one.
    images = {stage.image for stage in stages((ROOT / dockerfile).read_text())}
    assert len(images) == 1, f"{dockerfile}: stages use different base images {sorted(images)}"


# The model must see what it is meant to catch: the seed's Dockerfile shape, on the old and on the current base.
SEED_SHAPE = """\
FROM {image} AS builder
COPY services/requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \\
    && /opt/venv/bin/pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements.txt
FROM {image}
COPY --from=builder /opt/venv /opt/venv
"""
OLD_IMAGE = "python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16"
NEW_IMAGE = "python:3.11.16-slim-bookworm@sha256:c425d915a89a6dcd3183b1797ad9bd8878caff5a417f6371c8df93c8ea8b727f"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (
            OLD_IMAGE,
            [
                "system: pip 24.0 < 25.3 (CVE-2025-8869)",
                "system: setuptools 65.5.1 < 78.1.1 (CVE-2024-6345 (fixed in 70.0.0), CVE-2025-47273 (fixed in 78.1.1))",
                "system: wheel 0.44.0 < 0.46.2 (CVE-2026-24049)",
                "venv: pip 24.0 < 25.3 (CVE-2025-8869)",
                "venv: setuptools 65.5.0 < 78.1.1 (CVE-2024-6345 (fixed in 70.0.0), CVE-2025-47273 (fixed in 78.1.1))",
            ],
        ),
        (
            NEW_IMAGE,
            [
                "system: pip 24.0 < 25.3 (CVE-2025-8869)",
                "system: inside setuptools: wheel 0.45.1 < 0.46.2 (CVE-2026-24049)",
                "venv: pip 24.0 < 25.3 (CVE-2025-8869)",
                "venv: setuptools 65.5.0 < 78.1.1 (CVE-2024-6345 (fixed in 70.0.0), CVE-2025-47273 (fixed in 78.1.1))",
            ],
        ),
    ],
    ids=["old-base", "current-base"],
)
def test_seed_dockerfile_shape_is_reported(image: str, expected: list[str]) -> None:
    assert sorted(vulnerable(final_stage_contents(SEED_SHAPE.format(image=image)))) == sorted(expected)


def test_a_pin_in_the_requirements_file_is_checked_too(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("setuptools==69.5.1 \\\n    --hash=sha256:00\nsix==1.17.0\n")
    dockerfile = (
        f"FROM {NEW_IMAGE} AS builder\nCOPY {requirements} /tmp/r.txt\n"
        "RUN python -m venv --without-pip /opt/venv && pip --python /opt/venv/bin/python install -r /tmp/r.txt\n"
        f"FROM {NEW_IMAGE}\nRUN python -m pip uninstall --yes pip setuptools wheel\n"
        "COPY --from=builder /opt/venv /opt/venv\n"
    )
    assert vulnerable(final_stage_contents(dockerfile)) == [
        "venv: setuptools 69.5.1 < 78.1.1 (CVE-2024-6345 (fixed in 70.0.0), CVE-2025-47273 (fixed in 78.1.1))"
    ]


def test_an_unrecorded_base_image_is_an_error() -> None:
    dockerfile = "FROM python:3.11-slim@sha256:" + "0" * 64 + "\n"
    with pytest.raises(LookupError, match="not in BASE_IMAGES"):
        final_stage_contents(dockerfile)
