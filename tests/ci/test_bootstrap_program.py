"""The bootstrap Pulumi program under mocks: what it creates, and whom each role trusts."""

from __future__ import annotations

import importlib
import json
import re
import runpy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks

from runner.plan import reset_runtime
from tests.ci.iam_trust import allows

BOOTSTRAP_DIR = Path(__file__).resolve().parents[2] / "bootstrap"
PROJECT = "container-platform-bootstrap"
ACCOUNT_ID = "123456789012"
HOST = "token.actions.githubusercontent.com"
EXISTING_PROVIDER = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{HOST}"


@dataclass(frozen=True)
class Registered:
    type: str
    name: str
    parent: str
    inputs: dict[str, Any]


class _AwsMocks(Mocks):
    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        kind = {
            "aws:iam/openIdConnectProvider:OpenIdConnectProvider": f"oidc-provider/{HOST}",
            "aws:iam/role:Role": f"role{args.inputs.get('path', '/')}{args.name}",
            "aws:iam/policy:Policy": f"policy{args.inputs.get('path', '/')}{args.name}",
        }.get(args.typ, args.name)
        return f"{args.name}-id", {
            **args.inputs,
            "name": args.name,
            "arn": f"arn:aws:iam::{ACCOUNT_ID}:{kind}",
        }

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        results = {
            "aws:index/getPartition:getPartition": {
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "id": "aws",
            },
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/ci",
                "id": ACCOUNT_ID,
                "userId": "AIDEXAMPLE",
            },
        }
        return results[args.token], []


class _RecordingMonitor(MockMonitor):
    def __init__(self) -> None:
        super().__init__(_AwsMocks())
        self.registered: list[Registered] = []
        self.outputs: dict[str, dict[str, Any]] = {}

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        inputs = rpc.deserialize_properties(request.object)
        self.registered.append(Registered(request.type, request.name, request.parent, dict(inputs)))
        return response

    def RegisterResourceOutputs(self, request):
        self.outputs[request.urn] = dict(rpc.deserialize_properties(request.outputs))
        return super().RegisterResourceOutputs(request)


@pytest.fixture
def monitor(monkeypatch: pytest.MonkeyPatch) -> Iterator[_RecordingMonitor]:
    monkeypatch.syspath_prepend(str(BOOTSTRAP_DIR))  # as Pulumi runs it: `import github_oidc` from __main__.py
    recording = _RecordingMonitor()
    reset_runtime()  # a fresh root stack, whatever ran in this process before
    pulumi.runtime.set_mocks(_AwsMocks(), project=PROJECT, stack="prod", preview=False, monitor=recording)
    yield recording
    pulumi.runtime.set_all_config({})


def _config(**values: Any) -> None:
    config = {
        "aws:region": "eu-west-1",
        f"{PROJECT}:githubOrg": "acme",
        f"{PROJECT}:githubRepo": "platform",
        f"{PROJECT}:bucketPrefix": "jobs-",
    }
    for key, value in values.items():
        config[f"{PROJECT}:{key}"] = value if isinstance(value, str) else json.dumps(value)
    pulumi.runtime.set_all_config(config)


@pulumi.runtime.test
def _run_program() -> None:
    runpy.run_path(str(BOOTSTRAP_DIR / "__main__.py"), run_name="__main__")


def _of_type(monitor: _RecordingMonitor, type_: str) -> dict[str, Registered]:
    return {r.name: r for r in monitor.registered if r.type == type_}


def _trust(role: Registered) -> dict[str, Any]:
    return json.loads(role.inputs["assumeRolePolicy"])


def _token(sub: str) -> dict[str, str]:
    return {f"{HOST}:sub": sub, f"{HOST}:aud": "sts.amazonaws.com"}


def _deploy_sub(environment: str) -> str:
    workflow = "acme/platform/.github/workflows/deploy.yml@refs/heads/main"
    return f"repo:acme/platform:environment:{environment}:job_workflow_ref:{workflow}"


def test_creates_provider_boundary_preview_and_one_deploy_role_per_environment(monitor: _RecordingMonitor):
    _config()
    _run_program()
    [provider] = _of_type(monitor, "aws:iam/openIdConnectProvider:OpenIdConnectProvider").values()
    assert provider.inputs["url"] == f"https://{HOST}"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert "thumbprintLists" not in provider.inputs
    roles = _of_type(monitor, "aws:iam/role:Role")
    assert set(roles) == {
        "github-oidc-preview",
        "github-oidc-deploy-dev",
        "github-oidc-deploy-staging",
        "github-oidc-deploy-prod",
    }
    assert {role.inputs["path"] for role in roles.values()} == {"/container-platform-ci/"}
    assert {role.inputs["maxSessionDuration"] for role in roles.values()} == {3600}
    [component] = [r for r in monitor.registered if r.type == "container-platform:bootstrap:GitHubOidc"]
    assert component.parent.endswith("pulumi:pulumi:Stack::container-platform-bootstrap-prod")
    assert {r.parent.rsplit("::", 1)[-1] for r in monitor.registered if r.type.startswith("aws:iam/")} == {
        "github-oidc"
    }


def test_deploy_roles_refuse_pull_request_subjects(monitor: _RecordingMonitor):
    _config()
    _run_program()
    roles = _of_type(monitor, "aws:iam/role:Role")
    for environment in ("dev", "staging", "prod"):
        trust = _trust(roles[f"github-oidc-deploy-{environment}"])
        assert allows(trust, EXISTING_PROVIDER, _token(_deploy_sub(environment)))
        assert not allows(trust, EXISTING_PROVIDER, _token(f"repo:acme/platform:environment:{environment}"))
        assert not allows(trust, EXISTING_PROVIDER, _token("repo:acme/platform:pull_request"))
        assert not allows(trust, EXISTING_PROVIDER, _token("repo:acme/platform:ref:refs/heads/main"))
    preview = _trust(roles["github-oidc-preview"])
    workflow = "acme/platform/.github/workflows/pull-request.yml@refs/pull/7/merge"
    assert allows(preview, EXISTING_PROVIDER, _token(f"repo:acme/platform:pull_request:job_workflow_ref:{workflow}"))
    assert not allows(preview, EXISTING_PROVIDER, _token(_deploy_sub("prod")))


def test_each_deploy_role_gets_its_own_environments_policies_and_preview_only_its_read_policy(
    monitor: _RecordingMonitor,
):
    _config(environments=["staging", "prod"])
    _run_program()
    attachments = _of_type(monitor, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    groups = ("compute", "network", "data", "operations", "edge", "schedules", "iam")
    assert {(a.inputs["role"], a.inputs["policyArn"].rsplit("/", 1)[-1]) for a in attachments.values()} == {
        ("github-oidc-preview", "github-oidc-preview-read"),
        *(
            (f"github-oidc-deploy-{env}", f"github-oidc-deploy-{env}-{group}")
            for env in ("staging", "prod")
            for group in groups
        ),
    }
    policies = _of_type(monitor, "aws:iam/policy:Policy")
    for env in ("staging", "prod"):
        iam = json.loads(policies[f"github-oidc-deploy-{env}-iam"].inputs["policy"])
        [create] = [s for s in iam["Statement"] if s["Sid"] == "CreateRolesWithBoundary"]
        boundary_arn = f"arn:aws:iam::{ACCOUNT_ID}:policy/container-platform-ci/github-oidc-boundary-{env}"
        assert create["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": boundary_arn}}
        assert create["Resource"] == f"arn:aws:iam::{ACCOUNT_ID}:role/container-platform/{env}/*"
        boundary = json.loads(policies[f"github-oidc-boundary-{env}"].inputs["policy"])
        [queues] = [s for s in boundary["Statement"] if s["Sid"] == "Queues"]
        assert queues["Resource"] == [f"arn:aws:sqs:*:{ACCOUNT_ID}:jobs-{env}-*"]


def test_outputs_one_permissions_boundary_per_environment(monitor: _RecordingMonitor):
    _config(environments=["dev", "prod"])
    _run_program()
    # Under mocks the stack's own exports are registered only at shutdown; the component's outputs are the same.
    [outputs] = [values for urn, values in monitor.outputs.items() if urn.endswith("GitHubOidc::github-oidc")]
    boundary = f"arn:aws:iam::{ACCOUNT_ID}:policy/container-platform-ci/github-oidc-boundary"
    assert outputs["permissionsBoundaryArns"] == {"dev": f"{boundary}-dev", "prod": f"{boundary}-prod"}
    assert set(outputs["deployRoleArns"]) == {"dev", "prod"}
    main = (BOOTSTRAP_DIR / "__main__.py").read_text(encoding="utf-8")
    assert 'pulumi.export("permissionsBoundaryArns", bootstrap.permissions_boundary_arns)' in main


def test_reuses_an_existing_oidc_provider(monitor: _RecordingMonitor):
    _config(existingOidcProviderArn=EXISTING_PROVIDER, environments=["dev"])
    _run_program()
    assert _of_type(monitor, "aws:iam/openIdConnectProvider:OpenIdConnectProvider") == {}
    trust = _trust(_of_type(monitor, "aws:iam/role:Role")["github-oidc-deploy-dev"])
    assert trust["Statement"][0]["Principal"] == {"Federated": EXISTING_PROVIDER}


def test_missing_github_org_is_a_config_error(monitor: _RecordingMonitor):
    pulumi.runtime.set_all_config({"aws:region": "eu-west-1", f"{PROJECT}:githubRepo": "platform"})
    with pytest.raises(pulumi.ConfigMissingError):
        _run_program()


def test_importing_the_modules_creates_nothing(monitor: _RecordingMonitor):
    for module in ("settings", "policies", "resources", "__init__"):
        name = "bootstrap.github_oidc" if module == "__init__" else f"bootstrap.github_oidc.{module}"
        importlib.reload(importlib.import_module(name))
    assert monitor.registered == []


def test_pulumi_yaml_documents_exactly_the_config_keys_the_program_reads():
    project = yaml.safe_load((BOOTSTRAP_DIR / "Pulumi.yaml").read_text(encoding="utf-8"))
    source = (BOOTSTRAP_DIR / "github_oidc" / "settings.py").read_text(encoding="utf-8")
    read = set(re.findall(r'(?:get|get_int|get_object|require|_list\(config,)\s*\(?\s*"(\w+)"', source)) - {"region"}
    assert project["name"] == PROJECT
    assert project["runtime"]["options"]["toolchain"] == "uv"
    assert set(project["config"]) == read
