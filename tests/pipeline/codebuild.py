"""Runs a buildspec the way CodeBuild (buildspec 0.2, Linux, `env.shell: bash`) runs it, on this machine.

What is modelled, and from where:
- Phases run in order install, pre_build, build, post_build; each phase's `commands` one at a time, stopping at the
  first that exits non-zero, then its `finally` commands, which run "even if a command in the commands block
  fails" (buildspec reference). A phase fails if any of its commands fails.
- A failed install or pre_build ends the build ("if a command fails during the install phase, none of the commands
  in the pre_build, build, and post_build phases are run"); a failed build phase still goes on to post_build
  (phase transitions). `on-failure: CONTINUE` goes on to the next phase; ABORT is the default.
- Each command is its own bash process. Version 0.2 carries the working directory and environment variables from
  one command to the next; shell state does not carry (shell options, functions, arrays: CodeBuild writes each
  command to its own script). Only exported variables are carried here, the strictest reading.
- CODEBUILD_BUILD_SUCCEEDING turns 0 once a phase failed; `env.exported-variables` are read at the end.
Anything else in the buildspec (other shells, `run-as`, RETRY, `env.parameter-store`, ...) raises: not modelled.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("install", "pre_build", "build", "post_build")
ENDS_BUILD_ON_FAILURE = ("install", "pre_build")
PHASE_KEYS = {"commands", "finally", "on-failure"}
# Variables bash itself sets in every process: not state a command handed on.
SHELL_OWN = {"_", "SHLVL", "PWD", "OLDPWD"}
_CAPTURE = "__CODEBUILD_CAPTURE"


@dataclass
class BuildResult:
    phases: dict[str, str] = field(default_factory=dict)
    """Phase -> SUCCEEDED, FAILED or NOT_RUN (skipped phases are absent)."""
    exported: dict[str, str] = field(default_factory=dict)
    """`env.exported-variables` as the build ended."""
    output: list[str] = field(default_factory=list)
    """Each command as run, with what it printed."""

    @property
    def succeeded(self) -> bool:
        return all(status in ("SUCCEEDED", "NOT_RUN") for status in self.phases.values()) and bool(self.phases)

    @property
    def log(self) -> str:
        return "\n".join(self.output)


def run_build(
    spec: Mapping[str, Any], source_dir: Path, environment: Mapping[str, str], *, skip: tuple[str, ...] = ()
) -> BuildResult:
    """Run `spec` in `source_dir` with exactly `environment` (nothing inherited), skipping the phases in `skip`."""
    _check_modelled(spec)
    env_section = spec.get("env", {})
    state = _State(dict(env_section.get("variables", {})) | dict(environment), Path(source_dir))
    state.env["CODEBUILD_BUILD_SUCCEEDING"] = "1"
    result = BuildResult()
    for phase in PHASES:
        body = spec["phases"].get(phase)
        if body is None or phase in skip:
            continue
        if _ended(result):
            result.phases[phase] = "NOT_RUN"
            continue
        succeeded = _run_phase(body, state, result)
        result.phases[phase] = "SUCCEEDED" if succeeded else "FAILED"
        if not succeeded:
            state.env["CODEBUILD_BUILD_SUCCEEDING"] = "0"
            if body.get("on-failure", "ABORT") == "CONTINUE":
                result.phases[phase] = "FAILED_CONTINUED"
    result.exported = {name: state.env.get(name, "") for name in env_section.get("exported-variables", [])}
    return result


@dataclass
class _State:
    env: dict[str, str]
    cwd: Path


def _ended(result: BuildResult) -> bool:
    return any(result.phases.get(phase) == "FAILED" for phase in ENDS_BUILD_ON_FAILURE)


def _run_phase(body: Mapping[str, Any], state: _State, result: BuildResult) -> bool:
    succeeded = _run_block(body.get("commands", []), state, result)
    return _run_block(body.get("finally", []), state, result) and succeeded


def _run_block(commands: list[str], state: _State, result: BuildResult) -> bool:
    return all(_run_command(command, state, result) for command in commands)  # all() stops at the first failure


def _run_command(command: str, state: _State, result: BuildResult) -> bool:
    with tempfile.TemporaryDirectory() as capture:
        env_file, cwd_file = Path(capture) / "env", Path(capture) / "cwd"
        # The EXIT trap hands on the environment and directory even when the command's own `set -e` ends it.
        script = f'trap \'env -0 > "${_CAPTURE}/env"; pwd > "${_CAPTURE}/cwd"\' EXIT\n{command}\n'
        completed = subprocess.run(
            ["bash", "-c", script],
            cwd=state.cwd,
            env={**state.env, _CAPTURE: capture},
            capture_output=True,
            text=True,
            check=False,
        )
        result.output.append(f"$ {command}\n{completed.stdout}{completed.stderr}[exit {completed.returncode}]")
        if env_file.exists():
            state.env = _read_env(env_file.read_bytes())
            state.cwd = Path(cwd_file.read_text().strip())
    return completed.returncode == 0


def _read_env(raw: bytes) -> dict[str, str]:
    pairs = (entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)
    return {name: value for name, value in pairs if name not in SHELL_OWN and name != _CAPTURE}


def _check_modelled(spec: Mapping[str, Any]) -> None:
    if spec.get("version") != 0.2:
        raise ValueError(f"buildspec version {spec.get('version')!r}: only 0.2 is modelled")
    env_section = spec.get("env", {})
    if env_section.get("shell", "bash") != "bash":
        raise ValueError(f"env.shell {env_section['shell']!r}: only bash is modelled")
    unknown_env = set(env_section) - {"shell", "variables", "exported-variables"}
    if unknown_env:
        raise ValueError(f"env keys {sorted(unknown_env)} are not modelled")
    for phase, body in spec["phases"].items():
        if phase not in PHASES:
            raise ValueError(f"phase {phase!r} is not a CodeBuild phase ({', '.join(PHASES)})")
        if set(body) - PHASE_KEYS:
            raise ValueError(f"{phase}: keys {sorted(set(body) - PHASE_KEYS)} are not modelled")
        if body.get("on-failure", "ABORT") not in ("ABORT", "CONTINUE"):
            raise ValueError(f"{phase}: on-failure {body['on-failure']!r} is not modelled (ABORT, CONTINUE)")


def base_environment(path_prefix: Path) -> dict[str, str]:
    """A clean process environment: the stub tools first on PATH, nothing from the test process."""
    return {"PATH": f"{path_prefix}:{os.defpath}:/usr/local/bin", "HOME": str(path_prefix.parent), "LANG": "C.UTF-8"}
