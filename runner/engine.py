"""Evaluate the policy pack on recorded resources the way the Pulumi engine does, without the Pulumi CLI.

The pack is started as the engine starts a Python pack (`python -u -m pulumi.policy <engine> <pack dir>`), it
prints the port of its analyzer gRPC server, and it is driven over the public analyzer protocol:
`GetAnalyzerInfo`, `Configure` (the `--policy-pack-config` JSON reconciled with each policy's default level
and config-schema defaults, as the engine does), `Analyze` once per resource (inputs, secrets sent marked as
secrets) and `AnalyzeStack` once (outputs over inputs). Enforcement levels, disabled policies
and secret unwrapping are therefore the pack's own behaviour, not a re-implementation.

Diagnostics the SDK emits for values unknown during preview ("can't run policy ... during preview") are not
violations: they are collected as `not_checked`.
"""

from __future__ import annotations

import difflib
import json
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2 as proto
from pulumi.runtime.proto import analyzer_pb2_grpc

from runner.exports import PolicyInputError, validate_policy_config
from runner.records import ResourceRecord

PACK_DIR = Path(__file__).resolve().parents[1] / "policy"
STARTUP_TIMEOUT_SECONDS = 60.0
CALL_TIMEOUT_SECONDS = 60.0
NOT_CHECKED_PREFIX = "can't run policy '"
NOT_CHECKED_MARKER = "during preview: "
STACK_TYPE = "pulumi:pulumi:Stack"

LEVEL_NAMES: dict[int, str] = {
    proto.ADVISORY: "advisory",
    proto.MANDATORY: "mandatory",
    proto.REMEDIATE: "remediate",
    proto.DISABLED: "disabled",
}
LEVEL_VALUES = {name: value for value, name in LEVEL_NAMES.items()}
SEVERITY_NAMES: dict[int, str] = {
    proto.POLICY_SEVERITY_UNSPECIFIED: "",
    proto.POLICY_SEVERITY_LOW: "low",
    proto.POLICY_SEVERITY_MEDIUM: "medium",
    proto.POLICY_SEVERITY_HIGH: "high",
    proto.POLICY_SEVERITY_CRITICAL: "critical",
}


class PolicyPackError(RuntimeError):
    """The pack could not be started, or it failed while analyzing; the message carries its stderr."""


# --- Report -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str
    """`mandatory` or `advisory` (a `remediate` policy that still fails is reported as mandatory)."""
    urn: str
    message: str
    """What is wrong with this resource (the policy's description is in `policies`)."""
    resource_type: str


@dataclass(frozen=True)
class NotChecked:
    """A policy that could not (fully) run on a resource because a value is unknown."""

    policy: str
    urn: str
    reason: str


@dataclass(frozen=True)
class PolicySummary:
    name: str
    level: str
    """The effective level after config (`disabled` policies did not run)."""
    description: str
    severity: str
    kind: str
    """`resource` or `stack`."""
    url: str = ""
    """Where the control is documented (FSBP controls link to the AWS Security Hub page)."""
    remediation: str = ""


@dataclass
class EvaluationReport:
    violations: list[Violation] = field(default_factory=list)
    checked: int = 0
    """Resources analyzed."""
    not_checked: list[NotChecked] = field(default_factory=list)
    policies: list[PolicySummary] = field(default_factory=list)

    @property
    def mandatory_count(self) -> int:
        return sum(1 for v in self.violations if v.level == "mandatory")

    @property
    def advisory_count(self) -> int:
        return sum(1 for v in self.violations if v.level == "advisory")

    def to_dict(self) -> dict[str, Any]:
        return {
            "violations": [asdict(v) for v in self.violations],
            "checked": self.checked,
            "mandatory": self.mandatory_count,
            "advisory": self.advisory_count,
            "not_checked": [asdict(n) for n in self.not_checked],
            "policies": [asdict(p) for p in self.policies],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


# --- Config, as the engine reconciles it ------------------------------------------------------------------


def reconcile_config(info: Any, config: Mapping[str, Any] | None) -> dict[str, tuple[int, dict[str, Any]]]:
    """Each policy's (enforcement level, properties): defaults, then the pack's initial config, then `config`.

    `config` is the `--policy-pack-config` JSON; `"all"` sets every policy's level before per-policy entries
    apply. Unknown policy names and properties that break a policy's config schema raise PolicyInputError.
    """
    result: dict[str, tuple[int, dict[str, Any]]] = {}
    schemas: dict[str, dict[str, Any]] = {}
    for policy in info.policies:
        schema = json_format.MessageToDict(policy.configSchema) if policy.HasField("configSchema") else {}
        schemas[policy.name] = schema
        defaults = {k: v["default"] for k, v in schema.get("properties", {}).items() if "default" in v}
        result[policy.name] = (policy.enforcementLevel, defaults)
    initial = {k: _config_entry(json_format.MessageToDict(v)) for k, v in info.initialConfig.items()}
    _apply(result, initial)
    try:
        given = validate_policy_config(config) if config is not None else {}
    except ValueError as error:
        raise PolicyInputError(f"policy config: {error}") from error
    _reject_unknown_policies(given, result)
    _apply(result, given)
    for name, (_, properties) in result.items():
        _validate_properties(name, properties, schemas[name])
    return result


def _config_entry(value: Any) -> Any:
    if "properties" in value or "enforcementLevel" in value:
        level = value.get("enforcementLevel")
        entry = dict(value.get("properties", {}))
        if level:
            entry["enforcementLevel"] = level.lower()
        return entry
    return value


def _apply(result: dict[str, tuple[int, dict[str, Any]]], config: Mapping[str, Any]) -> None:
    everything = config.get("all")
    all_level = everything if isinstance(everything, str) else (everything or {}).get("enforcementLevel")
    if all_level:
        for name, (_, properties) in result.items():
            result[name] = (LEVEL_VALUES[all_level], properties)
    for name, entry in config.items():
        if name == "all" or name not in result:
            continue
        level, properties = result[name]
        if isinstance(entry, str):
            result[name] = (LEVEL_VALUES[entry], properties)
            continue
        overrides = {k: v for k, v in entry.items() if k != "enforcementLevel"}
        new_level = LEVEL_VALUES[entry["enforcementLevel"]] if "enforcementLevel" in entry else level
        result[name] = (new_level, {**properties, **overrides})


def _reject_unknown_policies(config: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    for name in config:
        if name != "all" and name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f'; did you mean "{close[0]}"?' if close else '; use a policy name from docs/policies.md or "all"'
            raise PolicyInputError(f'policy config names unknown policy "{name}"{hint}')


def _validate_properties(policy: str, properties: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    allowed = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in properties:
            raise PolicyInputError(f'policy config for "{policy}": required property "{key}" is missing')
    for key, value in properties.items():
        if key not in allowed:
            options = sorted(allowed) or "none"
            raise PolicyInputError(f'policy config for "{policy}": unknown property "{key}" (allowed: {options})')
        problem = _schema_problem(value, allowed[key])
        if problem:
            raise PolicyInputError(f'policy config for "{policy}": "{key}" {problem}')


def _schema_problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    """Why `value` does not fit `schema` (the JSON-schema subset config schemas use), or None."""
    expected = schema.get("type")
    checks = {
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "integer": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer(),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, Mapping),
    }
    if expected in checks and not checks[expected](value):
        return f"must be of type {expected}, got {json.dumps(value)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"must be one of {schema['enum']}, got {json.dumps(value)}"
    if "minimum" in schema and isinstance(value, int | float) and value < schema["minimum"]:
        return f"must be at least {schema['minimum']:g}, got {value}"
    if "maximum" in schema and isinstance(value, int | float) and value > schema["maximum"]:
        return f"must be at most {schema['maximum']:g}, got {value}"
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problem = _schema_problem(item, schema["items"])
            if problem:
                return f"item {i} {problem}"
    return None


# --- The pack process -------------------------------------------------------------------------------------


def _wire(value: Any) -> Any:
    """A JSON-compatible copy of a prop value for a protobuf Struct."""
    if isinstance(value, Mapping):
        return {str(k): _wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return str(value)


def _struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(_wire(props))
    return struct


class PolicyPackProcess:
    """A running policy pack. Start once, evaluate many times (each evaluation reconfigures it), then stop."""

    def __init__(
        self,
        pack_dir: Path = PACK_DIR,
        *,
        python: str = sys.executable,
        startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
    ) -> None:
        self.pack_dir = pack_dir.resolve()
        self.python = python
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._channel: grpc.Channel | None = None
        self._stub: analyzer_pb2_grpc.AnalyzerStub | None = None
        self.info: Any = None

    def __enter__(self) -> PolicyPackProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.launch()
        self.connect()

    def launch(self) -> None:
        """Start the pack's process without waiting for it: its imports overlap with whatever the caller does next
        (the offline runner plans the program meanwhile). `connect` (or the first evaluation) waits for it."""
        if not (self.pack_dir / "PulumiPolicy.yaml").is_file() or not (self.pack_dir / "__main__.py").is_file():
            raise PolicyPackError(
                f"{self.pack_dir}: not a Python policy pack (needs PulumiPolicy.yaml and __main__.py)"
            )
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the pack process; closed in stop())
        command = [self.python, "-u", "-m", "pulumi.policy", "127.0.0.1:0", str(self.pack_dir)]
        self._process = subprocess.Popen(  # noqa: S603 (fixed command: this interpreter running the pack)
            command, cwd=self.pack_dir, stdout=subprocess.PIPE, stderr=self._stderr, env=dict(os.environ)
        )

    def connect(self) -> None:
        if self._process is None:
            raise PolicyPackError("the policy pack is not running; use it as a context manager or call start()")
        port = self._read_port()
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(self._channel).result(timeout=self.startup_timeout)
        self._stub = analyzer_pb2_grpc.AnalyzerStub(self._channel)
        self.info = self._call("GetAnalyzerInfo", empty_pb2.Empty())

    def _read_port(self) -> int:
        assert self._process is not None and self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], self.startup_timeout)
        line = self._process.stdout.readline().decode(errors="replace").strip() if ready else ""
        if not line.isdigit():
            if self._process.poll() is None:
                self._process.terminate()
            self._process.wait(timeout=5)
            stderr = self._stderr_tail()
            self.stop()
            raise PolicyPackError(
                f"{self.pack_dir}: the policy pack did not start (expected its port on stdout, got {line!r}){stderr}"
            )
        return int(line)

    def _stderr_tail(self) -> str:
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return f"\n--- pack stderr ---\n{text[-4000:]}" if text else ""

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _call(self, method: str, request: Any, what: str = "") -> Any:
        return self._result(self._call_async(method, request), method, what)

    def _call_async(self, method: str, request: Any) -> Any:
        if self._stub is None:
            raise PolicyPackError("the policy pack is not running; use it as a context manager or call start()")
        return getattr(self._stub, method).future(request, timeout=CALL_TIMEOUT_SECONDS)

    def _result(self, future: Any, method: str, what: str) -> Any:
        try:
            return future.result()
        except grpc.RpcError as error:
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            raise PolicyPackError(f"policy pack {method}{what} failed: {details}{self._stderr_tail()}") from error

    @staticmethod
    def _analyze_request(resource: ResourceRecord) -> Any:
        return proto.AnalyzeRequest(
            type=resource.type,
            properties=_struct(resource.inputs),
            urn=resource.urn,
            name=resource.name,
            options=proto.AnalyzerResourceOptions(parent=resource.parent or ""),
        )

    # --- Evaluation ---------------------------------------------------------------------------------------

    def evaluate(
        self, resources: Sequence[ResourceRecord], config: Mapping[str, Any] | None = None
    ) -> EvaluationReport:
        """Run every enabled policy on every resource and the stack policies on all of them.

        The Analyze calls are in flight together, as the engine sends them while it steps through resources in
        parallel; the responses are collected in registration order, so the report does not depend on timing.
        """
        if self._stub is None and self._process is not None:
            self.connect()
        levels = self.configure(config)
        report = EvaluationReport(policies=self._summaries(levels))
        types = {r.urn: r.type for r in resources}
        pending = [(resource, self._call_async("Analyze", self._analyze_request(resource))) for resource in resources]
        for resource, future in pending:
            response = self._result(future, "Analyze", f" on {resource.urn}")
            self._collect(report, response.diagnostics, resource.urn, types)
            report.checked += 1
        stack_request = proto.AnalyzeStackRequest(
            resources=[
                proto.AnalyzerResource(
                    type=r.type,
                    # A provider's outputs hold its inputs too; offline outputs are mocks, so inputs fill the gaps.
                    properties=_struct({**r.inputs, **r.outputs}),
                    urn=r.urn,
                    name=r.name,
                    parent=r.parent or "",
                    options=proto.AnalyzerResourceOptions(parent=r.parent or ""),
                )
                for r in resources
            ]
        )
        self._collect(report, self._call("AnalyzeStack", stack_request).diagnostics, "", types)
        return report

    def configure(self, config: Mapping[str, Any] | None) -> dict[str, int]:
        """Send the reconciled config; returns each policy's effective enforcement level."""
        reconciled = reconcile_config(self.info, config)
        request = proto.ConfigureAnalyzerRequest(
            policyConfig={
                name: proto.PolicyConfig(enforcementLevel=level, properties=_struct(properties))  # type: ignore[arg-type]
                for name, (level, properties) in reconciled.items()
            }
        )
        self._call("Configure", request)
        return {name: level for name, (level, _) in reconciled.items()}

    def _summaries(self, levels: Mapping[str, int]) -> list[PolicySummary]:
        return [
            PolicySummary(
                name=p.name,
                level=LEVEL_NAMES[levels[p.name]],
                description=p.description,
                severity=SEVERITY_NAMES.get(p.severity, ""),
                kind="stack" if p.policy_type == proto.POLICY_TYPE_STACK else "resource",
                url=p.url,
                remediation=p.remediation_steps,
            )
            for p in self.info.policies
        ]

    @staticmethod
    def _collect(report: EvaluationReport, diagnostics: Any, default_urn: str, types: Mapping[str, str]) -> None:
        for diagnostic in diagnostics:
            urn = diagnostic.urn or default_urn
            if diagnostic.message.startswith(NOT_CHECKED_PREFIX):
                reason = diagnostic.message.partition(NOT_CHECKED_MARKER)[2] or diagnostic.message
                report.not_checked.append(NotChecked(policy=diagnostic.policyName, urn=urn, reason=reason))
                continue
            message = diagnostic.message
            if message.startswith(diagnostic.description):
                message = message[len(diagnostic.description) :].lstrip("\n") or diagnostic.description
            report.violations.append(
                Violation(
                    policy=diagnostic.policyName,
                    level=LEVEL_NAMES.get(diagnostic.enforcementLevel, "advisory"),
                    urn=urn,
                    message=message,
                    resource_type=types.get(urn, STACK_TYPE),
                )
            )


def evaluate(
    resources: Sequence[ResourceRecord],
    config: Mapping[str, Any] | None = None,
    *,
    pack_dir: Path = PACK_DIR,
    pack: PolicyPackProcess | None = None,
) -> EvaluationReport:
    """Evaluate `resources` with `config` (the `--policy-pack-config` JSON) in `pack`, a running pack reused across
    stacks, or else in the pack in `pack_dir`, started and stopped for this call."""
    if pack is not None:
        return pack.evaluate(resources, config)
    with PolicyPackProcess(pack_dir) as started:
        return started.evaluate(resources, config)
