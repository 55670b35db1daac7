"""What a service image gives its container, read from the Dockerfile's final stage (no Docker engine here).

The environment (`ENV`), working directory, entry point (`ENTRYPOINT` + `CMD`), the `VOLUME` paths, the repository
paths the image holds at its working directory (what the sandbox mounts there) and the owner and mode of a directory
at a given path. The last matters on Fargate: a task's bind-mount volume starts as a copy of the
image's directory when the image declares `VOLUME` at the mount's path (see `tests/sandbox/fargate.py`). Only the forms
listed in `DirectoryModel` are modelled; anything else that touches the path raises `UnmodelledDockerfile`, so the
model never guesses.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dockerfile_parse import DockerfileParser


class UnmodelledDockerfile(Exception):
    """The Dockerfile does something to a path this model cannot reproduce; the message says what and where."""


@dataclass(frozen=True)
class Directory:
    """Owner and mode of a directory."""

    uid: int
    gid: int
    mode: int

    def __str__(self) -> str:
        return f"{self.uid}:{self.gid} {self.mode:04o}"


ROOT_DIRECTORY = Directory(0, 0, 0o755)  # what `mkdir` (umask 022), WORKDIR and a bare VOLUME create as root


@dataclass(frozen=True)
class BaseImage:
    """What an external base image holds that the model needs (from `docker inspect` of the official images)."""

    env: Mapping[str, str]
    directories: Mapping[str, Directory]


# The official `python` images (Debian): ENV from their Dockerfile, /tmp from Debian's base-files (root, sticky 1777).
BASE_IMAGES: Mapping[str, BaseImage] = {
    "python": BaseImage(
        env={"PATH": "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        directories={"/tmp": Directory(0, 0, 0o1777)},
    ),
}


@dataclass(frozen=True)
class Image:
    """The final stage of a Dockerfile, as a container started from it sees it."""

    dockerfile: Path
    base: str
    env: Mapping[str, str]
    workdir: str
    argv: Sequence[str]
    volumes: frozenset[str]
    instructions: Sequence[Mapping[str, Any]] = field(repr=False, default=())
    stages: Mapping[str, Sequence[Mapping[str, Any]]] = field(repr=False, default_factory=dict)
    """The named build stages (`FROM ... AS name`), each from its FROM on."""

    def directory(self, path: str) -> Directory | None:
        """Owner and mode of `path` in the image (None: it does not exist)."""
        return DirectoryModel(self, path).run()

    def code(self) -> tuple[str, ...]:
        """Repository paths the image holds at the same path under WORKDIR (`COPY services/x services/x`)."""
        return CodeModel(self.dockerfile, self.stages).copied_to(self.instructions, self.workdir, self.workdir)


def read_image(dockerfile: Path) -> Image:
    structure = parse(dockerfile).structure
    instructions = final_stage(structure, dockerfile)
    base = from_image(instructions[0]["value"])
    base_image = base_image_of(base, dockerfile)
    env = {**base_image.env, **parse(dockerfile, base_image.env).envs}
    workdir = "/"
    entrypoint: list[str] = []
    cmd: list[str] = []
    volumes: set[str] = set()
    for instruction in instructions:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "WORKDIR":
            workdir = str(Path(workdir) / value)
        elif kind == "ENTRYPOINT":
            entrypoint = exec_form(value, instruction, dockerfile)  # an inherited CMD is reset; ours is empty
        elif kind == "CMD":
            cmd = exec_form(value, instruction, dockerfile)
        elif kind == "VOLUME":
            volumes.update(volume_paths(value))
    argv = [*entrypoint, *cmd]
    if not argv:
        raise UnmodelledDockerfile(f"{dockerfile}: the final stage has neither ENTRYPOINT nor CMD")
    return Image(dockerfile, base, env, workdir, argv, frozenset(volumes), instructions, named_stages(structure))


def parse(dockerfile: Path, parent_env: Mapping[str, str] | None = None) -> DockerfileParser:
    # From the text: the parser's `path` argument accepts only files named `Dockerfile`.
    return DockerfileParser(
        fileobj=io.StringIO(dockerfile.read_text()),
        cache_content=True,
        env_replace=True,
        parent_env=dict(parent_env or {}),
    )


def final_stage(structure: Sequence[Mapping[str, Any]], dockerfile: Path) -> list[Mapping[str, Any]]:
    starts = [i for i, instruction in enumerate(structure) if instruction["instruction"] == "FROM"]
    if not starts:
        raise UnmodelledDockerfile(f"{dockerfile}: no FROM instruction")
    stage = [i for i in structure[starts[-1] :] if i["instruction"] != "COMMENT"]
    named_stages = {
        structure[i]["value"].split()[-1].lower() for i in starts if " as " in structure[i]["value"].lower()
    }
    if from_image(stage[0]["value"]).lower() in named_stages:
        raise UnmodelledDockerfile(
            f"{dockerfile}:{stage[0]['startline'] + 1}: the final stage starts FROM an earlier stage; the model "
            "reads one stage from an external base image"
        )
    return stage


def named_stages(structure: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Each named stage (`FROM ... AS name`, lower-cased) -> its instructions from FROM on, without comments."""
    named: dict[str, list[Mapping[str, Any]]] = {}
    current: list[Mapping[str, Any]] = []
    for instruction in structure:
        if instruction["instruction"] == "FROM":
            words = instruction["value"].split()
            current = [instruction]
            if len(words) > 2 and words[-2].lower() == "as":
                named[words[-1].lower()] = current
        elif instruction["instruction"] != "COMMENT":
            current.append(instruction)
    return named


def from_image(value: str) -> str:
    """The image of `FROM [--platform=...] image [AS name]`."""
    return next(word for word in value.split() if not word.startswith("--"))


def base_image_of(reference: str, dockerfile: Path) -> BaseImage:
    repository = reference.split("@")[0].rsplit(":", 1)[0] if ":" in reference.split("/")[-1] else reference
    name = repository.split("@")[0].rsplit("/", 1)[-1]
    if name not in BASE_IMAGES:
        raise UnmodelledDockerfile(
            f"{dockerfile}: base image {reference} is not modelled; add its ENV and directories to "
            f"tests/sandbox/image.py BASE_IMAGES (known: {', '.join(sorted(BASE_IMAGES))})"
        )
    return BASE_IMAGES[name]


def exec_form(value: str, instruction: Mapping[str, Any], dockerfile: Path) -> list[str]:
    try:
        argv = json.loads(value)
    except json.JSONDecodeError:
        argv = None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise UnmodelledDockerfile(
            f"{dockerfile}:{instruction['startline'] + 1}: {instruction['instruction']} {value} is not in exec "
            "form (a JSON array of strings); only the exec form is modelled"
        )
    return argv


def volume_paths(value: str) -> list[str]:
    stripped = value.strip()
    if stripped.startswith("["):
        return [str(p) for p in json.loads(stripped)]
    return stripped.split()


class CodeModel:
    """Which repository paths end up under a directory of the image: `COPY <path> <path>` from the build context
    (same path relative to WORKDIR), directly or through `COPY --from=<stage> <dir> <dir>` of an earlier stage.

    Any other copy into that directory (another layout, several sources, ADD, an external `--from`) is refused."""

    def __init__(self, dockerfile: Path, named_stages: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        self.dockerfile = dockerfile
        self.stages = named_stages

    def fail(self, instruction: Mapping[str, Any], why: str) -> UnmodelledDockerfile:
        line = instruction["startline"] + 1
        return UnmodelledDockerfile(f"{self.dockerfile}:{line}: {instruction['instruction']} {why}")

    def copied_to(self, instructions: Sequence[Mapping[str, Any]], target: str, root: str) -> tuple[str, ...]:
        """The repository paths a stage (its instructions from FROM on) copies to `target` or below it, each at its
        repository path under `root` (the final WORKDIR)."""
        code: list[str] = []
        workdir = "/"
        for instruction in instructions[1:]:  # after FROM
            kind, value = instruction["instruction"], instruction["value"]
            if kind == "WORKDIR":
                workdir = str(Path(workdir) / value)
            elif kind in ("COPY", "ADD"):
                code += self.copy(instruction, workdir, target, root)
        return tuple(code)

    def copy(self, instruction: Mapping[str, Any], workdir: str, target: str, root: str) -> list[str]:
        words = shlex.split(instruction["value"])
        stage = next((w.removeprefix("--from=").lower() for w in words if w.startswith("--from=")), "")
        *sources, destination = [word for word in words if not word.startswith("--")]
        path = os.path.normpath(Path(workdir) / destination)
        if path != target and not path.startswith(target.rstrip("/") + "/"):
            return []
        where = f"copies into {target}, which the sandbox mounts from the repository"
        if instruction["instruction"] == "ADD" or len(sources) != 1:
            raise self.fail(instruction, f"{instruction['value']} {where}: only COPY of one path is modelled")
        source = sources[0].rstrip("/")
        if stage:
            if stage not in self.stages or source != path:
                raise self.fail(
                    instruction,
                    f"{instruction['value']} {where}: only --from=<an earlier stage> <dir> <dir> is modelled",
                )
            return list(self.copied_to(self.stages[stage], path, root))
        if os.path.normpath(Path(root) / source) != path:
            raise self.fail(
                instruction, f"{instruction['value']} {where}: only the repository's layout (COPY a/b a/b) is modelled"
            )
        return [source]


SIMPLE_COMMAND_SEPARATOR = re.compile(r"&&|\|\||;|\n")
OCTAL_MODE = re.compile(r"^[0-7]{3,4}$")
NUMERIC_OWNER = re.compile(r"^(\d+)(?::(\d+))?$")


class DirectoryModel:
    """Replays the final stage for one path: base image, then `USER`, `WORKDIR`, `VOLUME` and the `RUN` commands
    `mkdir [-p] [-m MODE]`, `chmod MODE`, `chown UID[:GID]`, `install -d [-m MODE] [-o UID] [-g GID]` naming it.

    Changes after `VOLUME` are refused: the legacy builder discards them, BuildKit keeps them."""

    def __init__(self, image: Image, path: str) -> None:
        self.image = image
        self.path = path.rstrip("/") or "/"
        self.state: Directory | None = None
        self.user = (0, 0)
        self.declared_at: int | None = None

    def run(self) -> Directory | None:
        self.state = base_image_of(self.image.base, self.image.dockerfile).directories.get(self.path)
        for instruction in self.image.instructions[1:]:
            self.apply(instruction)
        return self.state

    def fail(self, instruction: Mapping[str, Any], why: str) -> UnmodelledDockerfile:
        line = instruction["startline"] + 1
        return UnmodelledDockerfile(f"{self.image.dockerfile}:{line}: {instruction['instruction']} {why}")

    def apply(self, instruction: Mapping[str, Any]) -> None:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "USER":
            self.user = self.numeric_user(value, instruction)
        elif kind == "VOLUME" and self.path in volume_paths(value):
            self.declared_at = instruction["startline"]
            if self.state is None:
                self.state = ROOT_DIRECTORY
        elif kind == "WORKDIR" and str(Path(value)) == self.path:
            self.changing(instruction)
            if self.state is None:
                if self.user != (0, 0):
                    raise self.fail(instruction, f"creates {self.path} as a non-root USER (builder-dependent owner)")
                self.state = ROOT_DIRECTORY
        elif kind in ("COPY", "ADD") and self.copies_onto_path(value):
            raise self.fail(instruction, f"copies onto {self.path}; the owner and mode that leaves are not modelled")
        elif kind == "RUN":
            for command in SIMPLE_COMMAND_SEPARATOR.split(value):
                self.run_command(command, instruction)

    def numeric_user(self, value: str, instruction: Mapping[str, Any]) -> tuple[int, int]:
        match = NUMERIC_OWNER.match(value.strip())
        if not match:
            raise self.fail(instruction, f"{value!r}: only numeric UID[:GID] is modelled (no /etc/passwd here)")
        uid = int(match.group(1))
        return uid, int(match.group(2)) if match.group(2) else uid

    def copies_onto_path(self, value: str) -> bool:
        words = shlex.split(value)
        destination = words[-1].rstrip("/") if words else ""
        return destination == self.path

    def changing(self, instruction: Mapping[str, Any]) -> None:
        if self.declared_at is not None:
            raise self.fail(
                instruction,
                f"changes {self.path} after VOLUME (line {self.declared_at + 1}): the legacy builder discards such "
                "changes and BuildKit keeps them; set owner and mode before VOLUME",
            )

    def run_command(self, command: str, instruction: Mapping[str, Any]) -> None:
        words = shlex.split(command, comments=True)
        if self.path not in [w.rstrip("/") or "/" for w in words]:
            return
        self.changing(instruction)
        program = words[0].rsplit("/", 1)[-1]
        handlers = {"mkdir": self.mkdir, "chmod": self.chmod, "chown": self.chown, "install": self.install}
        if program not in handlers:
            raise self.fail(
                instruction, f"runs `{command.strip()}` on {self.path}; only {sorted(handlers)} are modelled"
            )
        handlers[program](words[1:], instruction)

    def mkdir(self, args: list[str], instruction: Mapping[str, Any]) -> None:
        options = self.options(args, {"-m": "mode"}, {"-p"}, instruction)
        if self.state is None:  # `mkdir -p` leaves an existing directory as it is, whatever `-m` says
            self.state = Directory(*self.user, self.mode(options.get("mode", "755"), instruction))

    def chmod(self, args: list[str], instruction: Mapping[str, Any]) -> None:
        operands = [a for a in args if a not in ("-R", "--recursive")]
        self.require_exists(instruction)
        assert self.state is not None
        self.state = replace(self.state, mode=self.mode(operands[0], instruction))

    def chown(self, args: list[str], instruction: Mapping[str, Any]) -> None:
        operands = [a for a in args if a not in ("-R", "--recursive")]
        self.require_exists(instruction)
        assert self.state is not None
        match = NUMERIC_OWNER.match(operands[0])
        if not match:
            raise self.fail(instruction, f"chown {operands[0]}: only numeric UID[:GID] is modelled")
        gid = int(match.group(2)) if match.group(2) else self.state.gid
        self.state = replace(self.state, uid=int(match.group(1)), gid=gid)

    def install(self, args: list[str], instruction: Mapping[str, Any]) -> None:
        options = self.options(args, {"-m": "mode", "-o": "owner", "-g": "group"}, {"-d"}, instruction)
        if "-d" not in args:
            raise self.fail(instruction, f"install without -d on {self.path} is not modelled")
        owner, group = options.get("owner"), options.get("group")
        for value in (owner, group):
            if value is not None and not value.isdigit():
                raise self.fail(instruction, f"install -o/-g {value}: only numeric ids are modelled")
        # A new directory belongs to the user running the build step; an existing one keeps its owner.
        before = self.state or Directory(*self.user, 0o755)
        self.state = Directory(
            int(owner) if owner else before.uid,
            int(group) if group else before.gid,
            self.mode(options.get("mode", "755"), instruction),
        )

    def options(
        self, args: list[str], valued: Mapping[str, str], flags: set[str], instruction: Mapping[str, Any]
    ) -> dict[str, str]:
        found: dict[str, str] = {}
        words = iter(args)
        for word in words:
            if word in valued:
                found[valued[word]] = next(words, "")
            elif word.startswith("-") and word not in flags:
                raise self.fail(instruction, f"option {word} on {self.path} is not modelled")
        return found

    def mode(self, value: str, instruction: Mapping[str, Any]) -> int:
        if not OCTAL_MODE.match(value):
            raise self.fail(instruction, f"mode {value!r} on {self.path}: only octal modes are modelled")
        return int(value, 8)

    def require_exists(self, instruction: Mapping[str, Any]) -> None:
        if self.state is None:
            raise self.fail(instruction, f"changes {self.path}, which does not exist at that point")
