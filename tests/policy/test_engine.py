"""The whole pack through the analyzer protocol: levels, config, secrets, unknowns, stack policies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from runner.engine import PACK_DIR, PolicyPackError, PolicyPackProcess, evaluate
from runner.exports import PolicyInputError
from runner.records import SECRET_SIG_KEY, SECRET_SIG_VALUE, UNKNOWN_VALUE, ResourceRecord
from tests.policy import baselines as b
from tests.policy.baselines import container, task_definition, with_props
from tests.policy.helpers import urn

ROOT = "aws-ecs-taskdefinition-disallow-root-user"
READONLY = "aws-ecs-taskdefinition-enable-readonly-root-filesystem"


def record(type_: str, name: str, props: dict[str, Any], stack: str = "dev") -> ResourceRecord:
    return ResourceRecord(urn=urn(type_, name, stack), type=type_, name=name, inputs=props)


ROOT_TASK = record(b.TASK_DEFINITION, "task", task_definition(container(user="root", readonlyRootFilesystem=False)))


def policies_hit(report: Any) -> dict[str, str]:
    return {v.policy: v.level for v in report.violations}


def test_compliant_resources_give_an_empty_report(pack: PolicyPackProcess) -> None:
    resources = [record(type_, name, props, "prod") for type_, name, props in b.compliant_stack()]
    report = pack.evaluate(resources)
    assert report.violations == []
    assert report.not_checked == []
    assert report.checked == len(resources)


def test_violations_carry_policy_level_urn_message_and_type(pack: PolicyPackProcess) -> None:
    report = pack.evaluate([ROOT_TASK])
    root = next(v for v in report.violations if v.policy == ROOT)
    assert (root.level, root.urn, root.message, root.resource_type) == (
        "mandatory",
        ROOT_TASK.urn,
        "container 'app' runs as root (user 'root')",
        b.TASK_DEFINITION,
    )
    assert policies_hit(report)[READONLY] == "advisory"
    assert report.mandatory_count == 1


def test_config_disables_a_mandatory_policy_and_a_later_evaluation_restores_it(pack: PolicyPackProcess) -> None:
    disabled = pack.evaluate([ROOT_TASK], {ROOT: "disabled"})
    assert ROOT not in policies_hit(disabled)
    assert next(p.level for p in disabled.policies if p.name == ROOT) == "disabled"
    assert policies_hit(pack.evaluate([ROOT_TASK]))[ROOT] == "mandatory"
    assert policies_hit(pack.evaluate([ROOT_TASK], {ROOT: {"enforcementLevel": "advisory"}}))[ROOT] == "advisory"


def test_all_key_sets_every_level_and_named_entries_override_it(pack: PolicyPackProcess) -> None:
    report = pack.evaluate([ROOT_TASK], {"all": "mandatory", ROOT: "advisory"})
    assert policies_hit(report) == {
        ROOT: "advisory",
        READONLY: "mandatory",
        "aws-ecs-taskdefinition-use-scanned-repositories": "mandatory",
    }
    assert {p.level for p in pack.evaluate([ROOT_TASK], {"all": "disabled"}).policies} == {"disabled"}
    assert pack.evaluate([ROOT_TASK], {"all": "disabled"}).violations == []


def test_policy_properties_reach_the_policy_with_defaults_kept(pack: PolicyPackProcess) -> None:
    logs = record(b.LOG_GROUP, "logs", with_props(b.LOG_GROUP, retentionInDays=30))
    name = "aws-cloudwatch-loggroup-configure-retention"
    assert name not in policies_hit(pack.evaluate([logs]))
    report = pack.evaluate([logs], {name: {"minimumRetentionDays": 90}})
    assert [v.message for v in report.violations if v.policy == name] == ["retentionInDays is 30; at least 90 required"]


@pytest.mark.parametrize(
    ("config", "error"),
    [
        (
            {"aws-ecs-taskdefinition-disallow-root-users": "advisory"},
            'policy config names unknown policy "aws-ecs-taskdefinition-disallow-root-users"; did you mean '
            '"aws-ecs-taskdefinition-disallow-root-user"?',
        ),
        (
            {"aws-cloudwatch-loggroup-configure-retention": {"minimumRetentionDays": "ninety"}},
            'policy config for "aws-cloudwatch-loggroup-configure-retention": "minimumRetentionDays" must be of type '
            'integer, got "ninety"',
        ),
        (
            {"aws-cloudwatch-loggroup-configure-retention": {"minimumRetention": 3}},
            'policy config for "aws-cloudwatch-loggroup-configure-retention": unknown property "minimumRetention" '
            "(allowed: ['minimumRetentionDays'])",
        ),
        (
            {"all": "strict"},
            "policy config: \"all\": enforcement level \"strict\" is not one of ['advisory', 'mandatory', 'remediate', 'disabled']",
        ),
    ],
)
def test_bad_config_is_refused_with_a_clear_message(
    pack: PolicyPackProcess, config: dict[str, Any], error: str
) -> None:
    with pytest.raises(PolicyInputError) as raised:
        pack.evaluate([ROOT_TASK], config)
    assert str(raised.value) == error


def test_secrets_are_sent_marked_and_unwrapped_by_the_pack(pack: PolicyPackProcess) -> None:
    definitions = json.dumps([container(environment=[{"name": "API_KEY", "value": "sk-live-4711"}])])
    secret_task = record(
        b.TASK_DEFINITION,
        "task",
        with_props(b.TASK_DEFINITION, containerDefinitions={SECRET_SIG_KEY: SECRET_SIG_VALUE, "value": definitions}),
    )
    report = pack.evaluate([secret_task])
    secrets = [v for v in report.violations if v.policy == "aws-ecs-taskdefinition-disallow-plaintext-secrets"]
    assert len(secrets) == 1
    assert "sk-live-4711" not in report.to_json()


def test_unknowns_are_not_checked_rather_than_violations(pack: PolicyPackProcess) -> None:
    task = record(b.TASK_DEFINITION, "task", with_props(b.TASK_DEFINITION, containerDefinitions=UNKNOWN_VALUE))
    report = pack.evaluate([task])
    assert report.violations == []
    by_policy = {n.policy: n for n in report.not_checked}
    assert by_policy[ROOT].urn == task.urn
    assert by_policy[ROOT].reason == "string value at .containerDefinitions can't be known during preview"
    # a stack policy reading the same value is not checked either; its diagnostic names no resource
    assert by_policy["aws-ecs-taskdefinition-use-scanned-repositories"].urn == ""


def test_stack_policies_see_every_resource_and_name_the_offender(pack: PolicyPackProcess) -> None:
    repository = record(b.REPOSITORY, "app", with_props(b.REPOSITORY, imageScanningConfiguration=None))
    report = pack.evaluate([repository])
    assert {(v.policy, v.urn, v.resource_type) for v in report.violations} == {
        ("aws-ecr-repository-enable-image-scanning", repository.urn, b.REPOSITORY),
        ("aws-ecr-repository-configure-lifecycle-policy", repository.urn, b.REPOSITORY),
    }


def test_report_json_shape(pack: PolicyPackProcess) -> None:
    data = json.loads(pack.evaluate([ROOT_TASK]).to_json())
    assert set(data) == {"violations", "checked", "mandatory", "advisory", "not_checked", "policies"}
    assert set(data["violations"][0]) == {"policy", "level", "urn", "message", "resource_type"}
    assert data["checked"] == 1


def test_the_pack_runs_when_copied_alone(tmp_path: Path) -> None:
    # GIVEN only the pack's own files in another directory (as another team's repo would hold them)
    copy = tmp_path / "pack"
    copy.mkdir()
    for name in ("PulumiPolicy.yaml", "__main__.py", "requirements.txt"):
        shutil.copy(PACK_DIR / name, copy / name)
    shutil.copytree(PACK_DIR / "rules", copy / "rules", ignore=shutil.ignore_patterns("__pycache__"))
    # WHEN the engine starts it there
    report = evaluate([ROOT_TASK], pack_dir=copy)
    # THEN the same violations come back
    assert policies_hit(report)[ROOT] == "mandatory"


def test_a_directory_that_is_not_a_pack_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyPackError, match="not a Python policy pack"):
        PolicyPackProcess(tmp_path).start()


def test_a_pack_that_crashes_on_start_reports_its_stderr(tmp_path: Path) -> None:
    (tmp_path / "PulumiPolicy.yaml").write_text("runtime: python\n")
    (tmp_path / "__main__.py").write_text("raise SystemExit('broken pack')\n")
    with pytest.raises(PolicyPackError, match="broken pack"):
        PolicyPackProcess(tmp_path).start()
