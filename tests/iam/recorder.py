"""Session-wide recorder of the AWS calls the services and the Lambdas make, at the client layer.

Three kinds of call reach AWS from our code:
- boto3/botocore clients: every operation goes through `BaseClient._make_api_call`;
- the lean SQS client (services/common/sqs_async.py), which signs its own requests: recorded at its operation
  layer (`AsyncSqsClient.call`, `BlockingSqsClient.call`);
- RDS IAM authentication tokens (`generate_db_auth_token`): local signing, but RDS authorizes
  `rds-db:connect` on the database user when the connection opens, so a token counts as that call.

Who made a call (the principal whose role AWS would check) is found by walking the stack to the first frame in
deployed code: services/<name>/ runs in the ECS container <name>, and so does services/shop/<name>/ (the shop's
services); lambdas/<name>/ runs in that Lambda. Shared libraries (services/common, services/shop/common) are no
principal: the walk goes on to their caller. A frame in tests/ or in the shop's local tooling (services/shop/<file>.py:
the local runner, the gateway) met first means set-up code made the call: it is ignored. Code with no such frame on
its stack (pool threads, event-loop tasks, executor threads) inherits the principal of the code that started it:
thread starts and task creations carry it along in a context variable; a client made by deployed code keeps its
maker.

Every Settings and ShopSettings the services build (or copy) is kept as environment bindings (value -> variable
names): the contract maps a local resource (a fauxqs queue URL) back to the variable that carried it and from there
to the planned resource.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import contextvars
import functools
import json
import os
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import botocore.client
import botocore.session
import botocore.signers

from tests.iam.resources import ResourceRef, iam_action, resource_of

ROOT = Path(__file__).resolve().parents[2]
SETUP = "test-setup"
"""Pseudo-principal of test set-up code: its calls are not the services' and are not recorded."""
_THIS_FILE = str(Path(__file__).resolve())
_PRINCIPAL: contextvars.ContextVar[str | None] = contextvars.ContextVar("iam_contract_principal", default=None)
_MAKER_ATTRIBUTE = "_iam_contract_maker"


@dataclass(frozen=True)
class AwsCall:
    """One distinct call: who, which IAM action, on what (as the code named it locally)."""

    principal: str
    """`ecs:<container>` or `lambda:<name>`."""
    action: str
    """IAM action, e.g. `sqs:ReceiveMessage`."""
    operation: str
    """API operation as called, e.g. `ReceiveMessage`, `ChangeMessageVisibilityBatch`, `connect`."""
    resource: ResourceRef
    """The resource as the code named it (a local queue URL, a topic ARN, a repository name, a DB user)."""
    origin: str
    """`path:line` of the deployed-code frame that made the call, or how the principal was inherited."""


@dataclass
class Recording:
    """Everything recorded in this process (and merged from recorded subprocesses)."""

    calls: dict[tuple[str, str, str, ResourceRef], AwsCall] = field(default_factory=dict)
    bindings: dict[str, set[str]] = field(default_factory=dict)
    """Local value -> environment variable names that carried it (a comma-separated list also binds each
    element as `NAME[i]`)."""
    sink: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_call(self, call: AwsCall) -> None:
        key = (call.principal, call.action, call.operation, call.resource)
        with self._lock:
            if key in self.calls:
                return
            self.calls[key] = call
            self._write({"call": {**asdict(call), "resource": call.resource.to_json()}})

    def bind_environment(self, environment: Mapping[str, object]) -> None:
        fresh: dict[str, list[str]] = {}
        for name, value in environment.items():
            if not isinstance(value, str | int | Path) or isinstance(value, bool) or value == "":
                continue
            text = str(value)
            fresh.setdefault(text, []).append(name)
            if "," in text:
                for index, element in enumerate(part.strip() for part in text.split(",")):
                    fresh.setdefault(element, []).append(f"{name}[{index}]")
        with self._lock:
            for value, names in fresh.items():
                known = self.bindings.setdefault(value, set())
                new = set(names) - known
                if new:
                    known.update(new)
                    self._write({"binding": {"value": value, "names": sorted(new)}})

    def names_for(self, value: str) -> set[str]:
        with self._lock:
            return set(self.bindings.get(value, ()))

    def merge_sink(self, path: Path) -> int:
        """Add what a recorded subprocess wrote; returns how many calls it recorded."""
        count = 0
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if "binding" in entry:
                with self._lock:
                    self.bindings.setdefault(entry["binding"]["value"], set()).update(entry["binding"]["names"])
            else:
                data = entry["call"]
                self.add_call(AwsCall(**{**data, "resource": ResourceRef.from_json(data["resource"])}))
                count += 1
        return count

    def _write(self, entry: dict[str, Any]) -> None:
        # Line by line and flushed: a recorded subprocess may end with os._exit (the worker's shutdown watchdog).
        if self.sink is not None:
            with self.sink.open("a") as out:
                out.write(json.dumps(entry) + "\n")


RECORDING = Recording()


# --- Attribution -----------------------------------------------------------------------------------------


SHARED_LIBRARIES = ("common",)
"""Directories of code every service imports, under services/ and under services/shop/: never a principal."""
SHOP = "shop"
"""services/shop/<service>/ are the shop's services; services/shop/<file>.py is local tooling (set-up)."""


@functools.cache
def _classify(filename: str) -> str | None:
    """`ecs:<name>`, `lambda:<name>`, SETUP, or None for code that is neither (libraries, services/common,
    services/shop/common)."""
    if filename == _THIS_FILE:
        return None
    try:
        parts: tuple[str, ...] = Path(filename).resolve().relative_to(ROOT).parts
    except ValueError:
        return None
    if len(parts) >= 3 and parts[0] == "services":
        return _service_principal(parts[1:])
    if len(parts) >= 3 and parts[0] == "lambdas":
        return f"lambda:{parts[1]}"
    if parts[:1] == ("tests",):
        return SETUP
    return None


def _service_principal(parts: tuple[str, ...]) -> str | None:
    """The principal of a file at `parts` under services/ (at least a directory and a file)."""
    if parts[0] == SHOP:
        if len(parts) == 2:
            return SETUP
        parts = parts[1:]
    return None if parts[0] in SHARED_LIBRARIES else f"ecs:{parts[0]}"


def _stack_principal(frame: FrameType | None) -> tuple[str, str] | None:
    while frame is not None:
        principal = _classify(frame.f_code.co_filename)
        if principal is not None:
            return principal, f"{Path(frame.f_code.co_filename).relative_to(ROOT)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def current_principal(maker: object = None) -> tuple[str, str] | None:
    """(principal, origin) of the code running now; `maker` is the client whose maker is the last resort."""
    found = _stack_principal(sys._getframe(1))
    if found is not None:
        return found
    inherited = _PRINCIPAL.get()
    if inherited is not None:
        return inherited, "inherited from the thread or task that started this code"
    made_by = getattr(maker, _MAKER_ATTRIBUTE, None)
    if made_by is not None:
        return made_by, "the client's maker"
    return None


def _ambient() -> str | None:
    found = _stack_principal(sys._getframe(2))
    return found[0] if found is not None else _PRINCIPAL.get()


def record(principal_of: object, service: str, operation: str, params: Mapping[str, Any]) -> None:
    found = current_principal(principal_of)
    if found is None or found[0] == SETUP:
        return
    principal, origin = found
    if principal.startswith("lambda:"):
        bind_process_environment()  # a Lambda reads its configuration from os.environ at each invocation
    RECORDING.add_call(
        AwsCall(
            principal=principal,
            action=iam_action(service, operation),
            operation=operation,
            resource=resource_of(service, operation, params),
            origin=origin,
        )
    )


# --- Hooks -----------------------------------------------------------------------------------------------


@dataclass
class _Patch:
    owner: Any
    name: str
    original: Any


_PATCHES: list[_Patch] = []
_LEAN_LOOP_THREADS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def _patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    original = getattr(owner, name)
    _PATCHES.append(_Patch(owner, name, original))
    setattr(owner, name, make(original))


def installed() -> bool:
    return bool(_PATCHES)


def install(sink: Path | None = None) -> None:
    """Hook every client kind and the principal propagation; idempotent. `sink`: also write records there."""
    if installed():
        return
    RECORDING.sink = sink
    _hook_botocore()
    _hook_lean_sqs()
    _hook_rds_tokens()
    _hook_propagation()
    _hook_settings()


def uninstall() -> None:
    while _PATCHES:
        patch = _PATCHES.pop()
        setattr(patch.owner, patch.name, patch.original)


def _hook_botocore() -> None:
    def make_client(original: Any) -> Any:
        @functools.wraps(original)
        def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(self, *args, **kwargs)
            maker = _ambient()
            if maker is not None:
                setattr(client, _MAKER_ATTRIBUTE, maker)
            return client

        return create_client

    def make_call(original: Any) -> Any:
        @functools.wraps(original)
        def _make_api_call(self: Any, operation_name: str, api_params: Mapping[str, Any]) -> Any:
            record(self, _iam_prefix(self.meta.service_model), operation_name, api_params)
            return original(self, operation_name, api_params)

        return _make_api_call

    _patch(botocore.session.Session, "create_client", make_client)
    _patch(botocore.client.BaseClient, "_make_api_call", make_call)


def _iam_prefix(service_model: Any) -> str:
    # IAM's service prefix is the SigV4 signing name for the services we use (sqs, sns, ecr, rds, secretsmanager).
    return service_model.signing_name


def _hook_lean_sqs() -> None:
    from services.common import sqs_async

    def make_init(original: Any) -> Any:
        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            maker = _ambient()
            if maker is not None:
                setattr(self, _MAKER_ATTRIBUTE, maker)

        return __init__

    def make_async_call(original: Any) -> Any:
        @functools.wraps(original)
        async def call(self: Any, action: str, payload: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            # A BlockingSqsClient's loop thread runs calls its caller already recorded, with the caller's stack.
            if threading.current_thread() not in _LEAN_LOOP_THREADS:
                record(self, "sqs", action, payload)
            return await original(self, action, payload, *args, **kwargs)

        return call

    def make_blocking_call(original: Any) -> Any:
        @functools.wraps(original)
        def call(self: Any, action: str, payload: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            _LEAN_LOOP_THREADS.add(self._thread)
            record(self._client, "sqs", action, payload)
            return original(self, action, payload, *args, **kwargs)

        return call

    _patch(sqs_async.AsyncSqsClient, "__init__", make_init)
    _patch(sqs_async.AsyncSqsClient, "call", make_async_call)
    _patch(sqs_async.BlockingSqsClient, "call", make_blocking_call)


def _hook_rds_tokens() -> None:
    # botocore binds `generate_db_auth_token` into each new RDS client class from this module attribute.
    def make(original: Any) -> Any:
        @functools.wraps(original)
        def generate_db_auth_token(self: Any, DBHostname: str, Port: int, DBUsername: str, Region: str | None = None):
            params = {"DBHostname": DBHostname, "Port": Port, "DBUsername": DBUsername}
            record(self, "rds-db", "connect", params)
            return original(self, DBHostname, Port, DBUsername, Region)

        return generate_db_auth_token

    _patch(botocore.signers, "generate_db_auth_token", make)


def _hook_propagation() -> None:
    def make_create_task(original: Any) -> Any:
        @functools.wraps(original)
        def create_task(self: Any, coro: Any, *, name: Any = None, context: Any = None) -> Any:
            principal = _ambient()
            if principal is not None and principal != (context or contextvars.copy_context()).get(_PRINCIPAL):
                context = (context or contextvars.copy_context()).copy()
                context.run(_PRINCIPAL.set, principal)
            return original(self, coro, name=name, context=context)

        return create_task

    def make_start(original: Any) -> Any:
        @functools.wraps(original)
        def start(self: threading.Thread) -> None:
            # Executor threads run work for many submitters; asyncio.to_thread brings each one's context along.
            if not self.name.startswith(("ThreadPoolExecutor", "asyncio_", "AnyIO worker thread")):
                self._iam_contract_principal = _ambient()  # pyright: ignore[reportAttributeAccessIssue]
            original(self)

        return start

    def make_bootstrap(original: Any) -> Any:
        @functools.wraps(original)
        def _bootstrap_inner(self: threading.Thread) -> None:
            _PRINCIPAL.set(getattr(self, "_iam_contract_principal", None))
            original(self)

        return _bootstrap_inner

    _patch(asyncio.base_events.BaseEventLoop, "create_task", make_create_task)
    _patch(threading.Thread, "start", make_start)
    _patch(threading.Thread, "_bootstrap_inner", make_bootstrap)


def _hook_settings() -> None:
    """Bind the values of every Settings (job platform) and ShopSettings (the shop, subclasses included) built, and
    of their copies: `model_copy(update=...)` makes settings without running `__init__`."""
    from services.common.settings import Settings
    from services.shop.common.settings import ShopSettings

    def make_init(original: Any) -> Any:
        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            _bind_settings(self)

        return __init__

    def make_copy(original: Any) -> Any:
        @functools.wraps(original)
        def model_copy(self: Any, *args: Any, **kwargs: Any) -> Any:
            copy = original(self, *args, **kwargs)
            _bind_settings(copy)
            return copy

        return model_copy

    for settings_class in (Settings, ShopSettings):
        _patch(settings_class, "__init__", make_init)
        _patch(settings_class, "model_copy", make_copy)


def _bind_settings(settings: Any) -> None:
    RECORDING.bind_environment({name: getattr(settings, name) for name in type(settings).model_fields})


def bind_process_environment() -> None:
    RECORDING.bind_environment(dict(os.environ))
