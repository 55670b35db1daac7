"""The offline runner never passes silently: components it cannot see inside, stack references, programs that
exit or print, and transforms, each run end to end through `python -m runner.check` on a program in programs/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runner import check

PROGRAMS = Path(__file__).resolve().parent / "programs"
PLATFORM_STACK = "acme/container-platform/prod"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = check.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def program(name: str) -> list[str]:
    return ["--program", str(PROGRAMS / name), "--stack", "test"]


# --- Multi-language components ----------------------------------------------------------------------------


def test_awsx_component_is_listed_as_not_checked_and_not_priced(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *program("awsx_service"), "--no-policy")
    # GIVEN an awsx FargateService, whose task definition and service exist only in a real deployment
    assert code == 0
    assert "Not checked: 1 multi-language component(s) (pass --strict to fail the run on them):" in out
    assert "awsx:ecs:FargateService  shop" in out
    not_priced = out.split("Not priced (1): the total leaves these out", 1)[1]
    assert "awsx:ecs:FargateService  shop: a multi-language component" in not_priced
    # AND the program's own print went to stderr, not into the report
    assert "deploying the shop service" in err
    assert "deploying the shop service" not in out


def test_strict_fails_on_components_the_runner_cannot_see(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *program("awsx_service"), "--no-policy", "--strict", "--json")
    report = json.loads(out)  # the program printed, and stdout is still one JSON document
    assert code == 1
    assert report["exit_code"] == 1
    assert [(c["type"], c["name"]) for c in report["not_checked_components"]] == [("awsx:ecs:FargateService", "shop")]
    assert [(u["type"], u["name"]) for u in report["cost"]["unpriced"]] == [("awsx:ecs:FargateService", "shop")]
    assert report["cost"]["free"] == []


def test_strict_passes_programs_without_such_components(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *program("transforms"), "--no-policy", "--no-cost", "--strict", "--json")
    assert (code, json.loads(out)["not_checked_components"]) == (0, [])


# --- Stack references -------------------------------------------------------------------------------------


def test_missing_stack_reference_outputs_name_the_reference_and_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *program("stack_reference"), "--no-policy", "--no-cost")
    assert (code, out) == (2, "")
    assert f"pulumi.StackReference('{PLATFORM_STACK}')" in err
    assert f"--stack-outputs {PLATFORM_STACK}=FILE" in err


def test_stack_reference_reads_an_outputs_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/platform"
    outputs = tmp_path / "platform.json"
    outputs.write_text(json.dumps({"alertsKeyArn": key, "dbSecretArn": "arn:aws:secretsmanager:db"}))
    code, out, _ = run(
        capsys, *program("stack_reference"), "--stack-outputs", f"{PLATFORM_STACK}={outputs}", "--no-cost", "--json"
    )
    report = json.loads(out)
    assert code == 0
    assert {r["type"]: r["inputs"]["kmsMasterKeyId"] for r in report["resources"]} == {
        "aws:sqs/queue:Queue": key,
        "aws:sns/topic:Topic": key,
    }
    assert report["mandatory"] == 0


def test_stack_reference_reads_a_stack_export_with_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = {
        "version": 3,
        "deployment": {
            "resources": [
                {
                    "urn": "urn:pulumi:prod::container-platform::pulumi:pulumi:Stack::container-platform-prod",
                    "type": "pulumi:pulumi:Stack",
                    "outputs": {
                        "alertsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/exported",
                        "dbSecretArn": {
                            "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                            "plaintext": '"arn:aws:secretsmanager:us-east-1:123456789012:secret:db"',
                        },
                    },
                }
            ]
        },
    }
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    args = [*program("stack_reference"), "--stack-outputs", f"{PLATFORM_STACK}={path}", "--no-cost", "--json"]
    code, out, _ = run(capsys, *args)
    report = json.loads(out)
    assert code == 0
    # The secret output stays secret through the program: its export is redacted.
    assert report["outputs"]["dbSecret"] == "[secret]"
    assert report["resources"][0]["inputs"]["kmsMasterKeyId"].endswith("key/exported")


@pytest.mark.parametrize("entry", ["no-equals-sign", "=file.json", "name="])
def test_bad_stack_outputs_flag_is_a_clear_error(entry: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *program("stack_reference"), "--stack-outputs", entry)
    assert code == 2
    assert f"--stack-outputs {entry!r}: expected NAME=FILE" in err


# --- Programs that exit or print --------------------------------------------------------------------------


@pytest.mark.parametrize("exit_code", ["0", "1", "3"])
def test_sys_exit_is_bad_input_with_a_message(
    exit_code: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXIT_CODE", exit_code)
    code, out, err = run(capsys, *program("exits"), "--json")
    assert (code, out) == (2, "")
    assert f"called sys.exit({exit_code})" in err
    assert "nothing was checked" in err


# --- Transforms -------------------------------------------------------------------------------------------


def test_transforms_apply_as_the_engine_applies_them(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *program("transforms"), "--no-cost", "--json")
    report = json.loads(out)
    keys = {
        r["name"]: r["inputs"].get("kmsMasterKeyId")
        for r in report["resources"]
        if r["type"] != "team:messaging:Messaging"
    }
    # A stack transform (alerts), a component's `transforms` reaching its child (billing-events) and a legacy
    # `transformations` (audit) all added the key, so the mandatory encryption policies pass.
    assert all(keys.values()) and set(keys) == {"alerts", "billing-events", "audit"}
    encryption = [v for v in report["violations"] if "encryption" in v["policy"]]
    assert (code, encryption) == (0, [])


def test_without_the_transforms_the_same_program_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "transforms"
    shutil.copytree(PROGRAMS / "transforms", copy)
    main = copy / "__main__.py"
    main.write_text(
        main.read_text()
        .replace("pulumi.runtime.register_resource_transform(encrypt_topics)\n", "")
        .replace("opts=pulumi.ResourceOptions(transforms=[encrypt_queues])", "")
    )
    code, out, _ = run(capsys, "--program", str(copy), "--stack", "test", "--no-cost", "--json")
    failing = {(v["policy"], v["urn"].rsplit("::", 1)[1]) for v in json.loads(out)["violations"]}
    assert code == 1
    assert {
        ("aws-sns-topic-enable-encryption", "alerts"),
        ("aws-sqs-queue-enable-encryption", "billing-events"),
    } <= failing
