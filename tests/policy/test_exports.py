"""Input files: each resource format, the policy config file, and bad files with their messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.exports import PolicyInputError, load_policy_config, load_resources
from runner.records import SECRET_SIG_KEY, SECRET_SIG_VALUE, UNKNOWN_VALUE, ResourceRecord

STACK_URN = "urn:pulumi:prod::shop::pulumi:pulumi:Stack::shop-prod"
QUEUE_URN = "urn:pulumi:prod::shop::aws:sqs/queue:Queue::jobs"
SECRET_URN = "urn:pulumi:prod::shop::aws:lambda/function:Function::fn"


def write(tmp_path: Path, data: Any, name: str = "input.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_stack_export(tmp_path: Path) -> None:
    export = {
        "version": 3,
        "deployment": {
            "manifest": {},
            "resources": [
                {"urn": STACK_URN, "type": "pulumi:pulumi:Stack", "custom": False},
                {
                    "urn": QUEUE_URN,
                    "type": "aws:sqs/queue:Queue",
                    "custom": True,
                    "id": "https://sqs/jobs",
                    "inputs": {"sqsManagedSseEnabled": True},
                    "outputs": {"id": "https://sqs/jobs", "arn": "arn:q"},
                    "parent": STACK_URN,
                },
                {
                    "urn": SECRET_URN,
                    "type": "aws:lambda/function:Function",
                    "custom": True,
                    "inputs": {
                        "environment": {
                            SECRET_SIG_KEY: SECRET_SIG_VALUE,
                            "plaintext": json.dumps({"variables": {"A": "b"}}),
                        },
                        "role": {SECRET_SIG_KEY: SECRET_SIG_VALUE, "ciphertext": "v1:abc"},
                    },
                },
                {
                    "urn": "urn:pulumi:prod::shop::aws:sqs/queue:Queue::old",
                    "type": "aws:sqs/queue:Queue",
                    "delete": True,
                },
            ],
        },
    }
    queue, function = load_resources(write(tmp_path, export))
    assert queue == ResourceRecord(
        urn=QUEUE_URN,
        type="aws:sqs/queue:Queue",
        name="jobs",
        inputs={"sqsManagedSseEnabled": True},
        outputs={"id": "https://sqs/jobs", "arn": "arn:q"},
        parent=None,
        custom=True,
    )
    assert function.inputs["environment"] == {SECRET_SIG_KEY: SECRET_SIG_VALUE, "value": {"variables": {"A": "b"}}}
    assert function.inputs["role"] == UNKNOWN_VALUE


def test_preview_json_skips_deletes_and_hides_secrets_as_unknown(tmp_path: Path) -> None:
    preview = {
        "steps": [
            {"op": "same", "urn": STACK_URN, "newState": {"urn": STACK_URN, "type": "pulumi:pulumi:Stack"}},
            {
                "op": "create",
                "urn": QUEUE_URN,
                "newState": {
                    "urn": QUEUE_URN,
                    "type": "aws:sqs/queue:Queue",
                    "inputs": {"kmsMasterKeyId": "[secret]"},
                    "parent": STACK_URN,
                },
            },
            {
                "op": "delete",
                "urn": SECRET_URN,
                "oldState": {"urn": SECRET_URN, "type": "aws:lambda/function:Function"},
            },
        ],
        "changeSummary": {"create": 1},
    }
    (queue,) = load_resources(write(tmp_path, preview))
    assert (queue.urn, queue.name, queue.inputs, queue.parent) == (
        QUEUE_URN,
        "jobs",
        {"kmsMasterKeyId": UNKNOWN_VALUE},
        None,
    )


def test_plain_list_gets_synthesized_urns(tmp_path: Path) -> None:
    (queue,) = load_resources(write(tmp_path, [{"type": "aws:sqs/queue:Queue", "name": "jobs", "props": {"a": 1}}]))
    assert (queue.urn, queue.inputs) == ("urn:pulumi:offline::offline::aws:sqs/queue:Queue::jobs", {"a": 1})


FORMATS = (
    'a `pulumi stack export` file ({"deployment": {"resources": [...]}}), a `pulumi preview --json` file '
    '({"steps": [...]}), or a JSON list of {"type", "name", "props"} objects'
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "{not json",
            "the resource file is not valid JSON (line 1, column 2: Expecting property name enclosed in double quotes)",
        ),
        ({"resources": []}, f"unknown resource file format; expected {FORMATS}"),
        ("", f"unknown resource file format; expected {FORMATS}"),
        (
            [{"type": "aws:sqs/queue:Queue"}],
            f'item 0 must be an object with string "type" and "name"; expected {FORMATS}',
        ),
        ([{"type": "t", "name": "n", "props": []}], 'item 0 ("n"): "props" must be an object'),
        (
            {"deployment": {"resources": [{"type": "t"}]}},
            "deployment.resources[0] must be an object with string `urn` and `type`",
        ),
        ({"deployment": {"resources": {}}}, f"deployment.resources must be a list; expected {FORMATS}"),
    ],
)
def test_bad_resource_files(tmp_path: Path, content: Any, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(PolicyInputError) as raised:
        load_resources(path)
    assert str(raised.value) == f"{path}: {message}"


def test_unreadable_resource_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(PolicyInputError, match=r"missing.json: cannot read the resource file \(.*No such file"):
        load_resources(missing)


def test_policy_config_file(tmp_path: Path) -> None:
    config = {
        "all": "advisory",
        "aws-rds-instance-enable-multi-az": {"enforcementLevel": "mandatory", "requiredInStacks": ["live"]},
    }
    assert load_policy_config(write(tmp_path, config)) == config
    assert load_policy_config(write(tmp_path, "  \n")) == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([], 'the policy config must be a JSON object keyed by policy name or "all"'),
        ({"x": 3}, '"x": 3 is not valid; use an enforcement level or an object'),
        (
            {"x": "warn"},
            "\"x\": enforcement level \"warn\" is not one of ['advisory', 'mandatory', 'remediate', 'disabled']",
        ),
        ({"x": {"enforcementLevel": None}}, '"x": enforcement level null is not one of'),
        ("{", "the policy config is not valid JSON"),
    ],
)
def test_bad_policy_config_files(tmp_path: Path, content: Any, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(PolicyInputError) as raised:
        load_policy_config(path)
    assert str(raised.value).startswith(f"{path}: {message}")
