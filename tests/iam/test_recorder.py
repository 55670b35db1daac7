"""The recorder's attribution and hooks, the environment mapping and the evaluator, each on a small case."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tests.iam import recorder
from tests.iam.contract import (
    ContractError,
    IamRequest,
    NamedPolicy,
    PlannedPrincipal,
    evaluate,
    plan_for,
    planned_resource,
)
from tests.iam.ordering import run_contract_last
from tests.iam.recorder import ROOT, AwsCall, Recording
from tests.iam.resources import ResourceRef, iam_action
from tests.iam.simulator import ensure_simulator

QUEUE = "http://127.0.0.1:9/000000000000/probe-high"


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> Recording:
    """A private recording, so these probes never reach the session's contract."""
    assert recorder.installed(), "tests/conftest.py installs the recorder for the session"
    fresh = Recording()
    monkeypatch.setattr(recorder, "RECORDING", fresh)
    return fresh


def as_deployed_code(directory: str, source: str) -> Callable[..., Any]:
    """A function whose frames the recorder sees as code under `directory` (e.g. services/worker)."""
    namespace: dict[str, Any] = {}
    exec(compile(source, str(ROOT / directory / "_iam_probe.py"), "exec"), namespace)
    return namespace["probe"]


def stubbed_sqs() -> Any:
    client = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    stubber.add_response("receive_message", {"Messages": []}, {"QueueUrl": QUEUE})
    stubber.activate()
    return client


def recorded(recording: Recording) -> set[tuple[str, str, str]]:
    return {(c.principal, c.action, c.resource.value) for c in recording.calls.values()}


def test_a_call_is_attributed_to_the_deployed_code_on_its_stack(recording: Recording) -> None:
    probe = as_deployed_code("services/worker", "def probe(client, url):\n    client.receive_message(QueueUrl=url)\n")
    probe(stubbed_sqs(), QUEUE)
    assert recorded(recording) == {("ecs:worker", "sqs:ReceiveMessage", QUEUE)}


def test_calls_made_by_test_code_are_ignored(recording: Recording) -> None:
    stubbed_sqs().receive_message(QueueUrl=QUEUE)
    assert recording.calls == {}


def test_a_thread_inherits_the_principal_of_the_code_that_started_it(recording: Recording) -> None:
    client = stubbed_sqs()
    # The thread's target is library code (no services/ frame), like a connection pool's worker thread.
    probe = as_deployed_code(
        "services/api",
        "import threading, functools\n"
        "def probe(client, url):\n"
        "    thread = threading.Thread(target=functools.partial(client.receive_message, QueueUrl=url))\n"
        "    thread.start()\n"
        "    thread.join()\n",
    )
    probe(client, QUEUE)
    assert recorded(recording) == {("ecs:api", "sqs:ReceiveMessage", QUEUE)}


def test_a_task_inherits_the_principal_of_the_code_that_created_it(recording: Recording) -> None:
    client = stubbed_sqs()

    async def library_code() -> None:
        await asyncio.to_thread(client.receive_message, QueueUrl=QUEUE)

    probe = as_deployed_code(
        "lambdas/example",
        "import asyncio\ndef probe(make):\n    async def main():\n        await asyncio.create_task(make())\n"
        "    asyncio.run(main())\n",
    )
    probe(library_code)
    assert recorded(recording) == {("lambda:example", "sqs:ReceiveMessage", QUEUE)}


def test_an_rds_auth_token_records_rds_db_connect(recording: Recording) -> None:
    rds = boto3.client("rds", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    probe = as_deployed_code(
        "services/worker",
        "def probe(rds):\n    return rds.generate_db_auth_token(DBHostname='db.local', Port=5432, DBUsername='app')\n",
    )
    assert "X-Amz-Signature" in probe(rds)
    (call,) = recording.calls.values()
    assert (call.principal, call.action, call.operation) == ("ecs:worker", "rds-db:connect", "connect")
    assert call.resource == ResourceRef("rds-db-user", "db.local", (("user", "app"), ("port", "5432")))


def test_the_lean_sqs_client_is_recorded_at_its_operation_layer(recording: Recording) -> None:
    from services.common.sqs_async import AsyncSqsClient

    class Answering(AsyncSqsClient):
        async def _call_once(self, action: str, body: bytes, timeout: float) -> dict[str, Any]:
            return {"Successful": [], "Failed": []}

    client = Answering("http://127.0.0.1:9", "us-east-1", SimpleNamespace())  # pyright: ignore[reportArgumentType]
    probe = as_deployed_code(
        "services/api", "import asyncio\ndef probe(client, url):\n    asyncio.run(client.send_message_batch(url, []))\n"
    )
    probe(client, QUEUE)
    assert recorded(recording) == {("ecs:api", "sqs:SendMessage", QUEUE)}


def test_settings_bind_their_values_to_variable_names(recording: Recording) -> None:
    from services.common.settings import Settings

    Settings(QUEUE_URL_HIGH=QUEUE, DLQ_URL=QUEUE.replace("high", "dlq"))
    assert recording.names_for(QUEUE) == {"QUEUE_URL_HIGH"}
    recording.bind_environment({"REPOSITORIES": "a-api,a-worker"})
    assert recording.names_for("a-worker") == {"REPOSITORIES[1]"}


@pytest.mark.parametrize(
    ("operation", "action"),
    [
        ("SendMessageBatch", "sqs:SendMessage"),
        ("DeleteMessageBatch", "sqs:DeleteMessage"),
        ("ChangeMessageVisibilityBatch", "sqs:ChangeMessageVisibility"),
        ("ReceiveMessage", "sqs:ReceiveMessage"),
    ],
)
def test_batch_operations_are_authorized_as_their_entry_action(operation: str, action: str) -> None:
    assert iam_action("sqs", operation) == action


def test_the_contract_module_runs_last() -> None:
    items = [SimpleNamespace(nodeid=n) for n in ("tests/iam/test_contract.py::a", "tests/x.py::b", "tests/y.py::c")]
    run_contract_last(items)
    assert [i.nodeid for i in items] == ["tests/x.py::b", "tests/y.py::c", "tests/iam/test_contract.py::a"]


# --- The evaluator: AWS's semantics, not string matching ---------------------------------------------------

ROLE = "arn:aws:iam::123456789012:role/probe"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:jobs-dev-worker-dlq"
HIGH_ARN = "arn:aws:sqs:us-east-1:123456789012:jobs-dev-worker-high"


def decide(action: str, resource: str, statements: list[dict[str, Any]], boundary: list[dict[str, Any]] | None = None):
    ensure_simulator()
    principal = PlannedPrincipal(
        "ecs:probe",
        ROLE,
        {},
        (NamedPolicy("probe", {"Version": "2012-10-17", "Statement": statements}),),
        NamedPolicy("boundary", {"Version": "2012-10-17", "Statement": boundary}) if boundary else None,
    )
    call = AwsCall("ecs:probe", action, "op", ResourceRef("sqs-queue-url", "local"), "probe")
    (decision,) = evaluate([IamRequest("probe", principal, action, resource, None, call)])
    return decision.result


def allow(action: str | list[str], resource: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_a_queue_missing_from_the_policy_is_implicitly_denied() -> None:
    assert decide("sqs:ReceiveMessage", DLQ_ARN, [allow("sqs:ReceiveMessage", HIGH_ARN)]) == "ImplicitlyDenied"
    assert decide("sqs:ReceiveMessage", HIGH_ARN, [allow("sqs:ReceiveMessage", HIGH_ARN)]) == "Allowed"


def test_wildcards_not_resource_and_explicit_deny() -> None:
    everything_but_dlq = {"Effect": "Allow", "Action": "sqs:Receive*", "NotResource": DLQ_ARN}
    assert decide("sqs:ReceiveMessage", HIGH_ARN, [everything_but_dlq]) == "Allowed"
    assert decide("sqs:ReceiveMessage", DLQ_ARN, [everything_but_dlq]) == "ImplicitlyDenied"
    deny = {"Effect": "Deny", "NotAction": "sqs:SendMessage", "Resource": "*"}
    assert decide("sqs:ReceiveMessage", HIGH_ARN, [allow("sqs:*", "*"), deny]) == "ExplicitlyDenied"


def test_conditions_and_the_permissions_boundary_apply() -> None:
    tagged = allow("sqs:ReceiveMessage", "*", Condition={"StringEquals": {"aws:ResourceTag/team": "jobs"}})
    assert decide("sqs:ReceiveMessage", HIGH_ARN, [tagged]) == "ImplicitlyDenied"
    only_send = [allow("sqs:SendMessage", "*")]
    assert decide("sqs:ReceiveMessage", HIGH_ARN, [allow("sqs:*", "*")], boundary=only_send) == "ImplicitlyDenied"


def test_an_action_that_does_not_exist_is_an_error_not_a_pass() -> None:
    assert decide("sqs:SendMessageBatch", HIGH_ARN, [allow("sqs:*", "*")]) == "Error"


# --- The environment contract ------------------------------------------------------------------------------


def test_a_local_queue_maps_to_the_planned_queue_of_the_same_variable() -> None:
    index = plan_for("dev")
    names = {QUEUE: {"DLQ_URL"}}.get
    worker = index.principals["ecs:worker"]
    ref = ResourceRef("sqs-queue-url", QUEUE)
    assert planned_resource(ref, worker, index, lambda v: names(v, set())) == DLQ_ARN
    # The API is not given DLQ_URL: any call it made on the DLQ is reported, never guessed.
    with pytest.raises(ContractError, match=r"carried locally by DLQ_URL; the plan gives ecs:api none of these"):
        planned_resource(ref, index.principals["ecs:api"], index, lambda v: names(v, set()))


def test_an_operation_without_a_resource_rule_is_reported() -> None:
    index = plan_for("dev")
    ref = ResourceRef("unmapped", "s3:GetObject", (("Bucket", "str"),))
    with pytest.raises(ContractError, match=r"add one to tests/iam/resources.py"):
        planned_resource(ref, index.principals["ecs:worker"], index, lambda v: set())


def test_threads_started_by_test_code_stay_unattributed(recording: Recording) -> None:
    client = stubbed_sqs()
    thread = threading.Thread(target=lambda: client.receive_message(QueueUrl=QUEUE))
    thread.start()
    thread.join()
    assert recording.calls == {}
