"""`python -m runner.check --export`: input formats, config overrides and exit codes, end to end."""

from __future__ import annotations

import json
from pathlib import Path

from runner import check

ROOT_TASK = {
    "type": "aws:ecs/taskDefinition:TaskDefinition",
    "name": "web",
    "props": {
        "family": "web",
        "containerDefinitions": json.dumps(
            [
                {
                    "name": "web",
                    "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/web@sha256:" + "a" * 64,
                    "user": "0",
                    "logConfiguration": {"logDriver": "awslogs"},
                    "readonlyRootFilesystem": True,
                }
            ]
        ),
    },
}


def write(tmp_path: Path, name: str, content: object) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_a_mandatory_violation_exits_1_and_names_the_policy(tmp_path, capsys):
    resources = write(tmp_path, "resources.json", [ROOT_TASK])
    assert check.main(["--export", resources, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    root = [v for v in report["violations"] if v["policy"] == "aws-ecs-taskdefinition-disallow-root-user"]
    assert root
    assert root[0]["level"] == "mandatory"
    assert report["cost"]["free"]


def test_config_can_turn_the_violation_off_and_back_on(tmp_path, capsys):
    resources = write(tmp_path, "resources.json", [ROOT_TASK])
    disabled = write(tmp_path, "off.json", {"aws-ecs-taskdefinition-disallow-root-user": "disabled"})
    assert check.main(["--export", resources, "--policy-config", disabled, "--no-cost"]) == 0
    assert "disallow-root-user" not in capsys.readouterr().out
    all_advisory_but_root = write(
        tmp_path, "mixed.json", {"all": "advisory", "aws-ecs-taskdefinition-disallow-root-user": "mandatory"}
    )
    assert check.main(["--export", resources, "--policy-config", all_advisory_but_root, "--no-cost"]) == 1


def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys):
    assert check.main(["--export", write(tmp_path, "broken.json", "{not json")]) == 2
    assert "broken.json" in capsys.readouterr().err
    assert check.main(["--export", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    resources = write(tmp_path, "resources.json", [ROOT_TASK])
    unknown = write(tmp_path, "unknown.json", {"aws-ecs-no-such-policy": "mandatory"})
    assert check.main(["--export", resources, "--policy-config", unknown]) == 2
    assert "aws-ecs-no-such-policy" in capsys.readouterr().err
