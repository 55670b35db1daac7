"""Security rules for GitHub Actions workflows, checked on the parsed YAML.

Each rule takes a parsed workflow (or composite action) and returns findings as strings; an empty list
means the rule holds. The tests run every rule on `.github/` and feed each one a bad snippet.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

Document = Mapping[Any, Any]  # `on:` parses as the key True

AWS_CREDENTIALS_ACTION = "aws-actions/configure-aws-credentials"
PULUMI_AUTH_ACTION = "pulumi/auth-actions"
OIDC_ACTIONS = frozenset({AWS_CREDENTIALS_ACTION, PULUMI_AUTH_ACTION})
UPLOAD_SARIF_ACTION = "github/codeql-action/upload-sarif"
CHECKOUT_ACTION = "actions/checkout"
PULUMI_ACTION = "pulumi/actions"
DEPLOY_COMMANDS = frozenset({"up", "update", "destroy", "refresh"})
# Scopes a job may write: the OIDC token, the preview comment and code-scanning alerts (only with a SARIF
# upload, see check_security_events_only_for_sarif_upload). Everything else is read or none.
WRITABLE_SCOPES = frozenset({"id-token", "pull-requests", "security-events"})
PRIVILEGED_TRIGGERS = frozenset({"pull_request_target", "workflow_run"})
STATIC_KEY_MARKERS = (
    "aws-access-key-id",
    "aws-secret-access-key",
    "aws_access_key_id",
    "aws_secret_access_key",
)

_PINNED_ACTION = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")
_PINNED_IMAGE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
_PR_HEAD_REF = re.compile(r"pull_request\.head|head_ref|refs/pull/|merge_commit_sha", re.IGNORECASE)
_PR_CHECKOUT_COMMAND = re.compile(r"gh pr checkout|git fetch[^\n]*pull/", re.IGNORECASE)
_STORED_PULUMI_TOKEN = re.compile(r"secrets\.PULUMI_ACCESS_TOKEN|secrets\[['\"]PULUMI_ACCESS_TOKEN", re.IGNORECASE)
_EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_FORK_GUARD = re.compile(r"github\.event\.pull_request\.head\.repo\.full_name\s*==\s*github\.repository")


def load(path: Path) -> dict[str, Any]:
    """Parse one workflow or action file (YAML anchors resolved)."""
    return parse(path.read_text(encoding="utf-8"))


def parse(text: str) -> dict[str, Any]:
    document = yaml.safe_load(text)
    if not isinstance(document, dict):
        raise ValueError("a workflow must be a YAML mapping")
    return document


def triggers(workflow: Document) -> set[str]:
    """Event names in `on:` (PyYAML reads the bare key `on` as the boolean True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on}
    if isinstance(on, list):
        return {str(event) for event in on}
    if isinstance(on, Mapping):
        return {str(event) for event in on}
    return set()


def jobs(workflow: Document) -> dict[str, dict[str, Any]]:
    return dict(workflow.get("jobs") or {})


def steps(job: Document) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def action_name(step: Document) -> str:
    """`owner/repo` of a step's `uses:` (path and ref dropped), or '' for `run:` steps."""
    uses = str(step.get("uses", ""))
    return "/".join(uses.split("@", 1)[0].split("/")[:2]) if uses else ""


def steps_using(job: Document, action: str) -> list[dict[str, Any]]:
    return [step for step in steps(job) if action_name(step) == action]


def sarif_uploads(job: Document) -> list[dict[str, Any]]:
    """Steps that upload SARIF (`github/codeql-action/upload-sarif`, an action in a subdirectory of its repo)."""
    return [step for step in steps(job) if str(step.get("uses", "")).split("@", 1)[0] == UPLOAD_SARIF_ACTION]


# --- Rules ---


def check_no_pr_code_in_privileged_triggers(workflow: Document) -> list[str]:
    """`pull_request_target`/`workflow_run` run with secrets: they must never check out or fetch PR code."""
    if not triggers(workflow) & PRIVILEGED_TRIGGERS:
        return []
    findings = []
    for job_id, job in jobs(workflow).items():
        for step in steps(job):
            with_ = step.get("with") or {}
            if action_name(step) == CHECKOUT_ACTION and any(
                _PR_HEAD_REF.search(str(with_.get(key, ""))) for key in ("ref", "repository")
            ):
                findings.append(f"{job_id}: checks out pull request code under a privileged trigger")
            if _PR_CHECKOUT_COMMAND.search(str(step.get("run", ""))):
                findings.append(f"{job_id}: fetches pull request code under a privileged trigger")
    return findings


def check_pinned(document: Document) -> list[str]:
    """Every action and reusable workflow pinned to a full commit SHA, every image to a digest."""
    findings = []
    for where, uses in _all_uses(document):
        if uses.startswith("./"):
            continue
        if uses.startswith("docker://"):
            if not _PINNED_IMAGE.match(uses.removeprefix("docker://")):
                findings.append(f"{where}: image {uses} is not pinned by digest")
        elif not _PINNED_ACTION.match(uses):
            findings.append(f"{where}: {uses} is not pinned to a full commit SHA")
    for where, image in _all_images(document):
        if not _PINNED_IMAGE.match(image):
            findings.append(f"{where}: image {image} is not pinned by digest")
    return findings


def check_permissions(workflow: Document) -> list[str]:
    """`permissions:` at the top (read-only or empty) and on every job (writes only for WRITABLE_SCOPES)."""
    findings = []
    if "permissions" not in workflow:
        findings.append("workflow: no top-level permissions")
    else:
        findings += [f"workflow: {problem}" for problem in _permission_problems(workflow["permissions"], set())]
    for job_id, job in jobs(workflow).items():
        if "permissions" not in job:
            findings.append(f"{job_id}: no job-level permissions")
        else:
            findings += [
                f"{job_id}: {problem}" for problem in _permission_problems(job["permissions"], WRITABLE_SCOPES)
            ]
    return findings


def check_id_token_only_for_oidc(workflow: Document) -> list[str]:
    """`id-token: write` exactly on the jobs that exchange the OIDC token (an AWS role, a Pulumi token)."""
    findings = []
    for job_id, job in jobs(workflow).items():
        wants_token = _permission(job, "id-token") == "write"
        exchanges = any(steps_using(job, action) for action in OIDC_ACTIONS)
        if wants_token and not exchanges:
            findings.append(f"{job_id}: id-token: write but no AWS role is assumed and no Pulumi token exchanged")
        if steps_using(job, AWS_CREDENTIALS_ACTION) and not wants_token:
            findings.append(f"{job_id}: assumes an AWS role without id-token: write")
        if steps_using(job, PULUMI_AUTH_ACTION) and not wants_token:
            findings.append(f"{job_id}: exchanges a Pulumi token without id-token: write")
    return findings


def check_no_stored_pulumi_token_on_pull_request(workflow: Document) -> list[str]:
    """No job a pull request runs reads a stored Pulumi token: previews exchange OIDC for a read-only one."""
    if "pull_request" not in triggers(workflow):
        return []
    return [
        f"{job_id}: reads secrets.PULUMI_ACCESS_TOKEN on pull_request"
        for job_id, job in jobs(workflow).items()
        if any(_STORED_PULUMI_TOKEN.search(text) for text in _strings(job))
    ]


def check_pulumi_cli_pinned(document: Document) -> list[str]:
    """Every pulumi/actions step installs one exact Pulumi CLI version (never the latest release)."""
    findings = []
    for job_id, job in _jobs_and_composite(document):
        for step in steps_using(job, PULUMI_ACTION):
            version = str((step.get("with") or {}).get("pulumi-version", ""))
            if not _EXACT_VERSION.match(version):
                findings.append(f"{job_id}: pulumi/actions without an exact pulumi-version (got {version!r})")
    return findings


def check_security_events_only_for_sarif_upload(workflow: Document) -> list[str]:
    """`security-events: write` exactly on the jobs that upload SARIF to code scanning."""
    findings = []
    for job_id, job in jobs(workflow).items():
        wants_write = _permission(job, "security-events") == "write"
        uploads = bool(sarif_uploads(job))
        if wants_write and not uploads:
            findings.append(f"{job_id}: security-events: write but no SARIF upload")
        if uploads and not wants_write:
            findings.append(f"{job_id}: uploads SARIF without security-events: write")
    return findings


def check_oidc_credentials(document: Document, text: str) -> list[str]:
    """AWS access only through `role-to-assume`; no static key anywhere in the file."""
    findings = []
    for job_id, job in _jobs_and_composite(document):
        for step in steps_using(job, AWS_CREDENTIALS_ACTION):
            if not (step.get("with") or {}).get("role-to-assume"):
                findings.append(f"{job_id}: {AWS_CREDENTIALS_ACTION} without role-to-assume")
    lowered = text.lower()
    findings += [f"file: mentions {marker}" for marker in STATIC_KEY_MARKERS if marker in lowered]
    return findings


def check_deploy_jobs(workflow: Document) -> list[str]:
    """Jobs that change a stack run in the GitHub environment of that stack, serialized per stack."""
    findings = []
    for job_id, job in jobs(workflow).items():
        for stack in deployed_stacks(job):
            if environment_name(job) != stack:
                findings.append(f"{job_id}: deploys {stack} outside GitHub environment {stack!r}")
            concurrency = job.get("concurrency") or {}
            if stack not in str(concurrency.get("group", "")):
                findings.append(f"{job_id}: no per-stack concurrency group for {stack}")
            if concurrency.get("cancel-in-progress") is not False:
                findings.append(f"{job_id}: concurrency must set cancel-in-progress: false")
    return findings


def check_fork_prs_get_no_credentials(workflow: Document) -> list[str]:
    """On `pull_request`, a job that gets a role or a secret must be skipped for fork PRs."""
    if "pull_request" not in triggers(workflow):
        return []
    findings = []
    for job_id, job in jobs(workflow).items():
        privileged = _permission(job, "id-token") == "write" or "secrets." in str(job)
        if privileged and not _FORK_GUARD.search(str(job.get("if", ""))):
            findings.append(f"{job_id}: gets credentials on pull_request but is not skipped for forks")
    return findings


def environment_name(job: Document) -> str | None:
    environment = job.get("environment")
    return environment.get("name") if isinstance(environment, Mapping) else environment


def deployed_stacks(job: Document) -> list[str]:
    """Stacks a job changes with pulumi/actions, `${{ env.X }}` resolved from the job's env."""
    env = job.get("env") or {}
    stacks = []
    for step in steps_using(job, PULUMI_ACTION):
        with_ = step.get("with") or {}
        if with_.get("command") not in DEPLOY_COMMANDS:
            continue
        name = re.sub(
            r"\$\{\{\s*env\.(\w+)\s*\}\}",
            lambda match: str(env.get(match[1], match[0])),
            str(with_["stack-name"]),
        )
        stacks.append(name.rsplit("/", 1)[-1])
    return stacks


# --- Helpers ---


def _permission(job: Document, scope: str) -> str | None:
    permissions = job.get("permissions")
    if permissions == "write-all":
        return "write"
    return permissions.get(scope) if isinstance(permissions, Mapping) else None


def _permission_problems(permissions: Any, writable: frozenset[str] | set[str]) -> list[str]:
    if permissions in ("read-all", {}):
        return []
    if not isinstance(permissions, Mapping):
        return [f"permissions {permissions!r} is not a mapping of scopes"]
    return [
        f"{scope}: {level} is not allowed here"
        for scope, level in permissions.items()
        if level == "write" and scope not in writable
    ]


def _strings(node: Any) -> Iterator[str]:
    """Every key and scalar in a parsed YAML node, as text."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    else:
        yield str(node)


def _jobs_and_composite(document: Document) -> Iterator[tuple[str, Document]]:
    yield from jobs(document).items()
    runs = document.get("runs")
    if isinstance(runs, Mapping) and runs.get("using") == "composite":
        yield "composite", runs


def _all_uses(document: Document) -> Iterator[tuple[str, str]]:
    for job_id, job in _jobs_and_composite(document):
        if "uses" in job:
            yield job_id, str(job["uses"])
        for index, step in enumerate(steps(job)):
            if "uses" in step:
                yield f"{job_id} step {index + 1}", str(step["uses"])


def _all_images(document: Document) -> Iterator[tuple[str, str]]:
    for job_id, job in jobs(document).items():
        container = job.get("container")
        if container:
            yield (
                f"{job_id} container",
                str(container["image"] if isinstance(container, Mapping) else container),
            )
        for service_id, service in (job.get("services") or {}).items():
            yield f"{job_id} service {service_id}", str(service["image"])
