"""Offline plan: run a Pulumi Python program under mocks and record every resource it registers.

No CLI, no provider plugins, no credentials. The program runs in this process with its stack file's config,
every `RegisterResource` is recorded with its parent and inputs, and the stack's exports are resolved.
Mocked outputs are inputs echoed back plus deterministic ids/ARNs, so programs that read `.arn`, `.id`,
`.dns_name` and so on work as they would in a preview.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import runpy
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from runner.records import SECRET_SIG_KEY, SECRET_SIG_VALUE, ResourceRecord

MOCK_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"


class PlanError(Exception):
    """The program or its stack file could not be run; the message says what and where."""


@dataclass
class Plan:
    """What a program would create for one stack."""

    project: str
    stack: str
    resources: list[ResourceRecord] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: frozenset[str] = frozenset()
    opaque: list[ResourceRecord] = field(default_factory=list)
    """Multi-language (remote) components: their children exist only in a real deployment, so the policies
    and the cost estimate cannot see inside them offline."""
    locations: dict[str, SourceLocation] = field(default_factory=dict)
    """Where in the program each resource was registered, by URN (when a frame inside the program is found)."""


@dataclass(frozen=True)
class SourceLocation:
    path: str
    """Relative to the program directory, with forward slashes."""
    line: int


class StackReferenceMissing(PlanError):
    """The program reads a stack reference whose outputs were not given with --stack-outputs."""


# --- Stack configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramSpec:
    directory: Path
    project: str
    main: Path


def read_program(directory: Path) -> ProgramSpec:
    project_file = directory / "Pulumi.yaml"
    if not project_file.is_file():
        raise PlanError(f"{directory}: no Pulumi.yaml here; --program must name a Pulumi project directory")
    project = _load_yaml(project_file)
    name = project.get("name")
    if not isinstance(name, str) or not name:
        raise PlanError(f"{project_file}: `name` is missing; a Pulumi project needs a name")
    runtime = project.get("runtime")
    runtime_name = runtime.get("name") if isinstance(runtime, Mapping) else runtime
    if runtime_name != "python":
        raise PlanError(f"{project_file}: runtime is {runtime_name!r}; the offline plan runs only `python`")
    main = directory / str(project.get("main", "."))
    if main.is_dir():
        main = main / "__main__.py"
    if not main.is_file():
        raise PlanError(f"{project_file}: the program entry point {main} does not exist")
    return ProgramSpec(directory=directory, project=name, main=main)


def read_stack_config(spec: ProgramSpec, stack: str) -> tuple[dict[str, str], list[str]]:
    """Config as the engine gives it to a program: `{"<namespace>:<key>": "<string or JSON>"}` and secret keys."""
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    project = _load_yaml(spec.directory / "Pulumi.yaml")
    for key, declared in (project.get("config") or {}).items():
        value = declared.get("default") if isinstance(declared, Mapping) else declared
        if value is not None:
            config[_qualify(key, spec.project)] = _config_string(value)
    stack_file = spec.directory / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        available = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in spec.directory.glob("Pulumi.*.yaml"))
        raise PlanError(f"{stack_file} does not exist; stacks with a config file here: {', '.join(available)}")
    for key, value in (_load_yaml(stack_file).get("config") or {}).items():
        qualified = _qualify(key, spec.project)
        if isinstance(value, Mapping) and "secure" in value:
            # Encrypted values cannot be decrypted offline; the program sees a marked placeholder.
            config[qualified] = "offline-placeholder-for-secure-value"
            secret_keys.append(qualified)
        else:
            config[qualified] = _config_string(value)
    return config, secret_keys


def _qualify(key: str, project: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _config_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise PlanError(f"{path}: cannot be read as YAML ({error})") from error
    if not isinstance(loaded, dict):
        raise PlanError(f"{path}: expected a YAML mapping at the top level")
    return loaded


# --- Mocks ------------------------------------------------------------------------------------------------


STACK_REFERENCE = "pulumi:pulumi:StackReference"


@dataclass(frozen=True)
class StackOutputs:
    """Another stack's outputs, as `pulumi.StackReference` reads them."""

    outputs: Mapping[str, Any]
    secret_names: frozenset[str] = frozenset()


class _PlanMocks(pulumi.runtime.Mocks):
    """Echo inputs and add the outputs programs commonly read, deterministically."""

    def __init__(self, region: str, stack_outputs: Mapping[str, StackOutputs] | None = None) -> None:
        self.region = region
        self.stack_outputs = dict(stack_outputs or {})
        self.missing_references: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ == STACK_REFERENCE:
            return self._stack_reference(str(args.inputs.get("name") or args.resource_id or args.name))
        resource_id = f"{args.name}-id"
        return resource_id, mock_outputs(args.typ, args.name, dict(args.inputs), self.region)

    def _stack_reference(self, name: str) -> tuple[str, dict[str, Any]]:
        # A StackReference is read by name; its state holds the other stack's `outputs` and which are secret.
        given = self.stack_outputs.get(name)
        if given is None:
            self.missing_references.append(name)
            given = StackOutputs({})
        state = {"name": name, "outputs": dict(given.outputs), "secretOutputNames": sorted(given.secret_names)}
        return name, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        return mock_call(args.token, dict(args.args), self.region)


def mock_outputs(type_: str, name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    if type_ == "awsx:ec2:Vpc":
        # Remote component: only its outputs exist under mocks (its children are never registered).
        zones = range(int(inputs.get("numberOfAvailabilityZones") or 3))
        return {
            "vpcId": f"vpc-{name}",
            "publicSubnetIds": [f"subnet-{name}-public-{i}" for i in zones],
            "privateSubnetIds": [f"subnet-{name}-private-{i}" for i in zones],
            "isolatedSubnetIds": [],
        }
    service = type_.split(":")[1].split("/")[0] if type_.count(":") >= 2 else "mock"
    outputs = dict(inputs)
    outputs.setdefault("name", inputs.get("name") or name)
    outputs.setdefault("arn", f"arn:aws:{service}:{region}:{MOCK_ACCOUNT_ID}:{name}")
    outputs.update(_TYPE_OUTPUTS.get(type_, lambda n, i, r: {})(name, inputs, region))
    return outputs


_TYPE_OUTPUTS: dict[str, Any] = {
    "aws:lb/loadBalancer:LoadBalancer": lambda n, i, r: {
        "dnsName": f"{n}-1234567890.{r}.elb.amazonaws.com",
        "arnSuffix": f"app/{n}/50dc6c495c0c9188",
        "zoneId": "Z35SXDOTRQ7X7K",
    },
    "aws:lb/targetGroup:TargetGroup": lambda n, i, r: {"arnSuffix": f"targetgroup/{n}/6d0ecf831eec9f09"},
    "aws:kms/key:Key": lambda n, i, r: {
        "keyId": f"{n}-key-id",
        "arn": f"arn:aws:kms:{r}:{MOCK_ACCOUNT_ID}:key/{n}-key-id",
    },
    "aws:sqs/queue:Queue": lambda n, i, r: {
        "url": f"https://sqs.{r}.amazonaws.com/{MOCK_ACCOUNT_ID}/{i.get('name') or n}",
    },
    "aws:rds/instance:Instance": lambda n, i, r: {
        "address": f"{n}.abcdefghij.{r}.rds.amazonaws.com",
        "endpoint": f"{n}.abcdefghij.{r}.rds.amazonaws.com:5432",
        "port": i.get("port") or 5432,
        "resourceId": "db-ABCDEFGHIJKLMNOPQRSTUVWXY0",
        "masterUserSecrets": [{"secretArn": f"arn:aws:secretsmanager:{r}:{MOCK_ACCOUNT_ID}:secret:rds!db-{n}-AbCdEf"}],
    },
    "aws:elasticache/replicationGroup:ReplicationGroup": lambda n, i, r: {
        "primaryEndpointAddress": f"master.{n}.abcdef.{r}.cache.amazonaws.com",
        "readerEndpointAddress": f"replica.{n}.abcdef.{r}.cache.amazonaws.com",
    },
    "aws:efs/fileSystem:FileSystem": lambda n, i, r: {"dnsName": f"fs-{n}.efs.{r}.amazonaws.com"},
    "aws:ecr/repository:Repository": lambda n, i, r: {
        "repositoryUrl": f"{MOCK_ACCOUNT_ID}.dkr.ecr.{r}.amazonaws.com/{i.get('name') or n}",
        "registryId": MOCK_ACCOUNT_ID,
        "arn": f"arn:aws:ecr:{r}:{MOCK_ACCOUNT_ID}:repository/{i.get('name') or n}",
    },
    "docker-build:index:Image": lambda n, i, r: {"digest": "sha256:" + "0" * 64, "ref": f"{n}@sha256:" + "0" * 64},
    "docker:index/image:Image": lambda n, i, r: {
        "repoDigest": f"{i.get('imageName', n).rsplit(':', 1)[0]}@sha256:" + "0" * 64,
        "imageName": i.get("imageName", n),
    },
    "random:index/randomPassword:RandomPassword": lambda n, i, r: {"result": "offline0plan0" + "x" * 51},
    "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace": lambda n, i, r: {"hostedZone": "Z0MOCKZONE"},
    "aws:cloudwatch/logGroup:LogGroup": lambda n, i, r: {
        "arn": f"arn:aws:logs:{r}:{MOCK_ACCOUNT_ID}:log-group:{i.get('name') or n}",
    },
    "aws:secretsmanager/secret:Secret": lambda n, i, r: {
        "arn": f"arn:aws:secretsmanager:{r}:{MOCK_ACCOUNT_ID}:secret:{i.get('name') or n}-AbCdEf",
    },
    "aws:ssm/parameter:Parameter": lambda n, i, r: {
        "arn": f"arn:aws:ssm:{r}:{MOCK_ACCOUNT_ID}:parameter{i.get('name') or n}",
    },
    "aws:ec2/launchTemplate:LaunchTemplate": lambda n, i, r: {"latestVersion": 1, "defaultVersion": 1},
    # An HTTP API's default endpoint, in AWS's format (the id is the mock's `<name>-id`).
    "aws:apigatewayv2/api:Api": lambda n, i, r: {
        "apiEndpoint": f"https://{n}-id.execute-api.{r}.amazonaws.com",
        "executionArn": f"arn:aws:execute-api:{r}:{MOCK_ACCOUNT_ID}:{n}-id",
    },
    "aws:iam/role:Role": lambda n, i, r: {"arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:role/{i.get('name') or n}"},
    "aws:sns/topic:Topic": lambda n, i, r: {"arn": f"arn:aws:sns:{r}:{MOCK_ACCOUNT_ID}:{i.get('name') or n}"},
    "aws:s3/bucket:Bucket": lambda n, i, r: {
        "bucket": i.get("bucket") or n,
        "arn": f"arn:aws:s3:::{i.get('bucket') or n}",
        "bucketRegionalDomainName": f"{i.get('bucket') or n}.s3.{r}.amazonaws.com",
    },
    # CloudFront is global: its ARNs carry no region; the distribution's host name is AWS's format.
    "aws:cloudfront/distribution:Distribution": lambda n, i, r: {
        "arn": f"arn:aws:cloudfront::{MOCK_ACCOUNT_ID}:distribution/E{n.upper()[:12]}",
        "domainName": f"d{n.encode().hex()[:13]}.cloudfront.net",
        "hostedZoneId": "Z2FDTNDATAQYW2",
    },
    "aws:s3/bucketV2:BucketV2": lambda n, i, r: {
        "bucket": i.get("bucket") or n,
        "arn": f"arn:aws:s3:::{i.get('bucket') or n}",
    },
}


def mock_call(token: str, args: dict[str, Any], region: str) -> dict[str, Any]:
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {
            "accountId": MOCK_ACCOUNT_ID,
            "arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:user/offline-plan",
            "userId": "AIDAOFFLINEPLAN",
            "id": MOCK_ACCOUNT_ID,
        }
    if token in ("aws:index/getRegion:getRegion", "aws:index/getRegion:getRegionResult"):
        return {"name": region, "region": region, "id": region, "endpoint": f"ec2.{region}.amazonaws.com"}
    if token == "aws:index/getPartition:getPartition":
        return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        zones = [f"{region}{letter}" for letter in "abc"]
        return {"names": zones, "zoneIds": [f"use1-az{i}" for i in range(1, 4)], "id": region}
    if token == "aws:ec2/getAmi:getAmi":
        return {**args, "id": "ami-0123456789abcdef0", "imageId": "ami-0123456789abcdef0"}
    if token == "aws:ec2/getRouteTable:getRouteTable":
        route_table = f"rtb-{args.get('subnetId') or 'main'}"
        return {**args, "id": route_table, "routeTableId": route_table}
    if token == "aws:ec2/getNatGateway:getNatGateway":
        # A documentation address (RFC 5737) per public subnet: `subnet-<vpc>-public-<i>` (none: the only one).
        index = int(str(args.get("subnetId") or "-0").rsplit("-", 1)[-1])
        return {
            **args,
            "id": f"nat-{index}",
            "publicIp": f"203.0.113.{10 + index}",
            "allocationId": f"eipalloc-{index}",
        }
    if token == "aws:elb/getServiceAccount:getServiceAccount":
        return {"arn": "arn:aws:iam::127311923021:root", "id": "127311923021"}
    return dict(args)


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that also keeps each registration's parent, custom flag and raw inputs, in order.

    Unlike the plain mock monitor it runs resource transforms as the engine does (the resource's own, then its
    ancestors', then the stack's, each on the previous one's result), so what is recorded is what the engine
    would send to the provider and to policy packs.
    """

    def __init__(self, mocks: pulumi.runtime.Mocks, program_dir: Path | None = None) -> None:
        super().__init__(mocks)
        self.recorded: list[ResourceRecord] = []
        self.stack_urn: str | None = None
        self.program_dir = program_dir
        self.remote_urns: set[str] = set()
        self.locations: dict[str, SourceLocation] = {}
        self._own_transforms: dict[str, list[Any]] = {}
        self._parents: dict[str, str] = {}
        self._stack_transform_callbacks: list[Any] = []

    def RegisterStackTransform(self, request: Any) -> Any:
        self._stack_transform_callbacks.append(request)
        return super().RegisterStackTransform(request)

    def RegisterResource(self, request: Any) -> Any:
        request = self._transformed(request)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            self.stack_urn = response.urn
            return response
        self._own_transforms[response.urn] = list(request.transforms)
        self._parents[response.urn] = request.parent
        if request.remote:
            self.remote_urns.add(response.urn)
        location = self._program_location(request)
        if location is not None:
            self.locations[response.urn] = location
        inputs = _normalise(rpc.deserialize_properties(request.object, keep_unknowns=True))
        parent = request.parent or None
        self.recorded.append(
            ResourceRecord(
                urn=response.urn,
                type=request.type,
                name=request.name,
                inputs=inputs,
                parent=None if parent == self.stack_urn else parent,
                custom=bool(request.custom),
                outputs=_normalise({**self.resources[response.urn].state, "id": response.id})
                if request.custom
                else _normalise(self.resources[response.urn].state),
                dependencies=tuple(request.dependencies),
                custom_timeouts=_timeouts(request),
            )
        )
        return response

    def _transformed(self, request: Any) -> Any:
        callbacks = list(request.transforms)
        ancestor = request.parent
        while ancestor:
            callbacks += self._own_transforms.get(ancestor, [])
            ancestor = self._parents.get(ancestor, "")
        callbacks += self._stack_transform_callbacks
        if not callbacks or request.type == "pulumi:pulumi:Stack":
            return request
        transformed = type(request)()
        transformed.CopyFrom(request)
        for callback in callbacks:
            response = _invoke_transform(callback, transformed)
            transformed.object.CopyFrom(response.properties)
            if response.HasField("options"):
                _apply_transformed_options(transformed, response.options)
        return transformed

    def _program_location(self, request: Any) -> SourceLocation | None:
        """The innermost frame of the registration's stack inside the program directory (not the SDKs)."""
        if self.program_dir is None:
            return None
        for frame in request.stackTrace.frames:
            if not frame.pc.uri.startswith("file://"):
                continue
            path = Path(unquote(urlsplit(frame.pc.uri).path))
            if path.is_relative_to(self.program_dir) and not _is_installed_package(path, self.program_dir):
                return SourceLocation(path.relative_to(self.program_dir).as_posix(), frame.pc.line)
        return None


def _is_installed_package(path: Path, program_dir: Path) -> bool:
    return any(
        part in ("site-packages", "dist-packages", ".venv", "venv") for part in path.relative_to(program_dir).parts
    )


def _invoke_transform(callback: Any, request: Any) -> Any:
    """Call a registered transform the way the engine does: a TransformRequest to the SDK's callback server."""
    from pulumi.runtime._callbacks import _CallbackServicer
    from pulumi.runtime.proto import resource_pb2

    servicer = next((s for s in _CallbackServicer._servicers if callback.token in s._callbacks), None)
    if servicer is None:
        raise PlanError(f"transform {callback.token} of {request.type} {request.name!r} is not registered")
    transform_request = resource_pb2.TransformRequest(
        type=request.type,
        name=request.name,
        custom=request.custom,
        parent=request.parent,
        properties=request.object,
        options=resource_pb2.TransformResourceOptions(
            depends_on=list(request.dependencies),
            protect=request.protect,
            ignore_changes=list(request.ignoreChanges),
            replace_on_changes=list(request.replaceOnChanges),
            provider=request.provider,
            providers=dict(request.providers),
            additional_secret_outputs=list(request.additionalSecretOutputs),
            retain_on_delete=request.retainOnDelete,
            deleted_with=request.deletedWith,
        ),
    )
    callback_function = servicer._callbacks[callback.token]

    async def call() -> Any:
        return await callback_function(transform_request.SerializeToString())

    # The monitor runs in the SDK's executor thread; the callback belongs to the program's event loop.
    response = asyncio.run_coroutine_threadsafe(call(), servicer._loop).result()
    return resource_pb2.TransformResponse.FromString(response.SerializeToString())


def _apply_transformed_options(request: Any, options: Any) -> None:
    """Carry the options a transform changed that the offline plan records or the engine would act on."""
    del request.dependencies[:]
    request.dependencies.extend(options.depends_on)
    del request.additionalSecretOutputs[:]
    request.additionalSecretOutputs.extend(options.additional_secret_outputs)
    if options.HasField("custom_timeouts"):
        timeouts = options.custom_timeouts
        request.customTimeouts.create = timeouts.create
        request.customTimeouts.update = timeouts.update
        request.customTimeouts.delete = timeouts.delete


def _timeouts(request: Any) -> dict[str, str]:
    if not request.HasField("customTimeouts"):
        return {}
    timeouts = request.customTimeouts
    return {kind: value for kind in ("create", "update", "delete") if (value := getattr(timeouts, kind))}


ASSET_SIG = "c44067f5952c0a294b673a41bacd8c17"
ARCHIVE_SIG = "0def7320c3a5731c473e5ecbe6d01bc7"


def _normalise(value: Any) -> Any:
    """Plain data: integral floats back to ints (the wire has only doubles), assets and archives in their
    stack-export form; unknown sentinels kept as-is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, pulumi.Asset | pulumi.Archive):
        return _asset_or_archive(value)
    if isinstance(value, Mapping):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _asset_or_archive(value: pulumi.Asset | pulumi.Archive) -> dict[str, Any]:
    if isinstance(value, pulumi.AssetArchive):
        return {SECRET_SIG_KEY: ARCHIVE_SIG, "assets": {k: _normalise(v) for k, v in value.assets.items()}}
    signature = ARCHIVE_SIG if isinstance(value, pulumi.Archive) else ASSET_SIG
    for attribute, key in (("path", "path"), ("text", "text"), ("uri", "uri")):
        if isinstance(getattr(value, attribute, None), str):
            record = {SECRET_SIG_KEY: signature, key: getattr(value, attribute)}
            if key == "path" and (digest := _file_digest(Path(record["path"]))) is not None:
                record["hash"] = digest
            return record
    return {SECRET_SIG_KEY: signature}


def _file_digest(path: Path) -> str | None:
    """A file's SHA-256, as the engine records an asset's `hash` (what decides whether it changed, not its path)."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


# --- Running ----------------------------------------------------------------------------------------------


class ProgramExited(Exception):
    """The program called `sys.exit()` (or raised SystemExit) instead of returning."""

    def __init__(self, code: object) -> None:
        super().__init__(code)
        self.code = code


def run_program(program_dir: Path, stack: str, *, stack_outputs: Mapping[str, StackOutputs] | None = None) -> Plan:
    """Run the program in `program_dir` for `stack` under mocks and return what it would create.

    The program's own stdout goes to stderr, so a machine-readable report on stdout stays parseable.
    `stack_outputs` gives the outputs each `pulumi.StackReference` name reads.
    """
    spec = read_program(program_dir.resolve())
    config, secret_keys = read_stack_config(spec, stack)

    def run() -> None:
        with _program_context(spec.directory):
            try:
                runpy.run_path(str(spec.main), run_name="__main__")
            except SystemExit as exit_:
                raise ProgramExited(exit_.code) from None

    mocks = _PlanMocks(config.get("aws:region", DEFAULT_REGION), stack_outputs)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            recording = record_program(
                run,
                project=spec.project,
                stack=stack,
                config=config,
                secret_keys=secret_keys,
                mocks=mocks,
                program_dir=spec.directory,
            )
    except Exception as error:
        _raise_missing_references(mocks)
        if isinstance(error, ProgramExited):
            raise PlanError(
                f"{spec.main} called sys.exit({error.code!r}) for stack {stack!r}: a Pulumi program must return "
                "normally (an early exit registers only part of the stack), so nothing was checked"
            ) from None
        raise PlanError(f"{spec.main} failed for stack {stack!r}: {type(error).__name__}: {error}") from error
    _raise_missing_references(mocks)
    return Plan(
        project=spec.project,
        stack=stack,
        resources=recording.resources,
        outputs=recording.outputs,
        secret_outputs=frozenset(recording.secret_outputs),
        opaque=[r for r in recording.resources if r.urn in recording.remote_urns or is_multi_language(r.type)],
        locations=recording.locations,
    )


def is_multi_language(type_: str) -> bool:
    """Component packages implemented in another language: under mocks they never register their children."""
    return type_.split(":", 1)[0] in MULTI_LANGUAGE_PACKAGES


MULTI_LANGUAGE_PACKAGES = frozenset({"awsx", "eks", "aws-apigateway", "aws-static-website", "aws-native-components"})


def _raise_missing_references(mocks: _PlanMocks) -> None:
    if mocks.missing_references:
        name = mocks.missing_references[0]
        given = ", ".join(sorted(mocks.stack_outputs)) or "none"
        raise StackReferenceMissing(
            f"the program reads pulumi.StackReference({name!r}), but its outputs were not given (given: {given}); "
            f"pass --stack-outputs {name}=FILE with a JSON object of its outputs (`pulumi stack output --json "
            f"--show-secrets`) or a `pulumi stack export --show-secrets` file"
        )


@dataclass
class Recording:
    resources: list[ResourceRecord]
    outputs: dict[str, Any]
    secret_outputs: list[str]
    remote_urns: set[str]
    locations: dict[str, SourceLocation]


def record_program(
    build: Callable[[], object],
    *,
    project: str,
    stack: str,
    config: Mapping[str, str],
    secret_keys: Sequence[str],
    mocks: _PlanMocks,
    program_dir: Path | None = None,
) -> Recording:
    """Run `build` under recording mocks; return everything it registered and exported."""
    monitor = _RecordingMonitor(mocks, program_dir)
    reset_runtime()
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(dict(config), list(secret_keys))
    _run_under_engine(build)
    outputs, secret_outputs = _resolve_exports()
    return Recording(list(monitor.recorded), outputs, secret_outputs, set(monitor.remote_urns), dict(monitor.locations))


def record(
    build: Callable[[], object],
    *,
    project: str = "container-platform",
    stack: str = "test",
    config: Mapping[str, str] | None = None,
    secret_keys: Sequence[str] = (),
) -> tuple[list[ResourceRecord], dict[str, Any], list[str]]:
    """Run `build` under recording mocks; return the resources it registered, its exports and secret exports."""
    config = dict(config or {})
    mocks = _PlanMocks(config.get("aws:region", DEFAULT_REGION))
    recording = record_program(build, project=project, stack=stack, config=config, secret_keys=secret_keys, mocks=mocks)
    return recording.resources, recording.outputs, recording.secret_outputs


def _ensure_event_loop() -> None:
    """Pulumi's mocks need a current event loop; a caller that ran `asyncio.run()` leaves none (or a closed one)."""
    try:
        if not asyncio.get_event_loop_policy().get_event_loop().is_closed():
            return
    except RuntimeError:
        pass
    asyncio.set_event_loop(asyncio.new_event_loop())


def reset_runtime() -> None:
    """A fresh root stack per run, so several plans can run in one process (tests, several stacks), and an event
    loop for the mocks to register resources on."""
    from pulumi.runtime.settings import ROOT

    ROOT.set(None)
    _ensure_event_loop()


@pulumi.runtime.test
def _run_under_engine(build: Callable[[], object]) -> None:
    build()


@contextlib.contextmanager
def _program_context(directory: Path) -> Iterator[None]:
    previous_cwd = Path.cwd()
    sys.path.insert(0, str(directory))
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous_cwd)
        with contextlib.suppress(ValueError):
            sys.path.remove(str(directory))


def _resolve_exports() -> tuple[dict[str, Any], list[str]]:
    from pulumi.runtime.settings import get_root_resource
    from pulumi.runtime.sync_await import _sync_await

    root = get_root_resource()
    exports: dict[str, Any] = dict(getattr(root, "outputs", {}) or {})
    resolved: dict[str, Any] = {}
    secrets: list[str] = []
    for key, value in exports.items():
        output = pulumi.Output.from_input(value)
        resolved[key] = _normalise(_sync_await(output.future()))
        if _sync_await(output.is_secret()):
            secrets.append(key)
    return resolved, secrets


def secret_wrap(value: Any) -> dict[str, Any]:
    """Wrap a value in Pulumi's secret marker (used by tests and exports)."""
    return {SECRET_SIG_KEY: SECRET_SIG_VALUE, "value": value}
