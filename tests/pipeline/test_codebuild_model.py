"""The CodeBuild model the pipeline tests run buildspecs with: it must behave as the buildspec reference says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.pipeline.codebuild import base_environment, run_build


def spec(**phases: dict[str, Any]) -> dict[str, Any]:
    return {"version": 0.2, "env": {"shell": "bash", "exported-variables": ["SEEN"]}, "phases": phases}


def run(tmp_path: Path, buildspec: dict[str, Any]) -> Any:
    return run_build(buildspec, tmp_path, base_environment(tmp_path / "bin"))


def test_exported_variables_and_the_directory_carry_over_but_shell_options_do_not(tmp_path: Path) -> None:
    result = run(tmp_path, spec(
        pre_build={"commands": ["mkdir -p work", "cd work", "export SEEN=1", "set -euo pipefail"]},
        build={"commands": ['test "$SEEN" = 1', 'test "$(basename "$PWD")" = work', "echo ${UNSET_BUT_NO_SET_U}",
                            "false | true"]},
    ))  # fmt: skip
    assert result.succeeded, result.log
    assert result.exported == {"SEEN": "1"}


def test_a_failing_command_skips_the_rest_of_its_block_but_not_finally(tmp_path: Path) -> None:
    result = run(tmp_path, spec(build={"commands": ["false", "export SEEN=late"], "finally": ["export SEEN=finally"]}))
    assert result.phases == {"build": "FAILED"}
    assert result.exported == {"SEEN": "finally"}


def test_a_failing_finally_fails_the_phase(tmp_path: Path) -> None:
    result = run(tmp_path, spec(build={"commands": ["true"], "finally": ["false"]}))
    assert result.phases == {"build": "FAILED"}


@pytest.mark.parametrize(
    ("failing", "expected"),
    [
        ("install", {"install": "FAILED", "pre_build": "NOT_RUN", "build": "NOT_RUN", "post_build": "NOT_RUN"}),
        ("pre_build", {"install": "SUCCEEDED", "pre_build": "FAILED", "build": "NOT_RUN", "post_build": "NOT_RUN"}),
        ("build", {"install": "SUCCEEDED", "pre_build": "SUCCEEDED", "build": "FAILED", "post_build": "SUCCEEDED"}),
    ],
)
def test_phase_transitions(tmp_path: Path, failing: str, expected: dict[str, str]) -> None:
    phases = {name: {"commands": ["false" if name == failing else "true"]} for name in expected}
    result = run(tmp_path, spec(**phases))
    assert result.phases == expected
    assert not result.succeeded


def test_on_failure_continue_goes_on_but_the_build_still_fails(tmp_path: Path) -> None:
    result = run(tmp_path, spec(pre_build={"commands": ["false"], "on-failure": "CONTINUE"},
                                build={"commands": ['test "$CODEBUILD_BUILD_SUCCEEDING" = 0']}))  # fmt: skip
    assert result.phases == {"pre_build": "FAILED_CONTINUED", "build": "SUCCEEDED"}
    assert not result.succeeded


@pytest.mark.parametrize(
    "unmodelled",
    [
        {"version": 0.1, "phases": {}},
        {"version": 0.2, "env": {"shell": "sh"}, "phases": {}},
        {"version": 0.2, "env": {"parameter-store": {"A": "/a"}}, "phases": {}},
        {"version": 0.2, "phases": {"build": {"commands": ["true"], "run-as": "root"}}},
        {"version": 0.2, "phases": {"build": {"commands": ["true"], "on-failure": "RETRY"}}},
        {"version": 0.2, "phases": {"deploy": {"commands": ["true"]}}},
    ],
)
def test_what_is_not_modelled_is_refused(tmp_path: Path, unmodelled: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"not modelled|only|not a CodeBuild phase"):
        run(tmp_path, unmodelled)
