"""The recorder's attribution and hooks, the environment mapping and the evaluator, each on a small case."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Callable
from pathlib import Path
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
    calls_planned_in,
    evaluate,
    plan_for,
    planned_resource,
    planned_target,
    requests_for,
)
from tests.iam.ordering import run_contract_last
from tests.iam.recorder import ROOT, SETUP, AwsCall, Recording
from tests.iam.resources import ResourceRef, iam_action, resource_of
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


# --- The shop: attribution, settings, SES, stacks ------------------------------------------------------------

SHOP_QUEUE = "http://127.0.0.1:9/000000000000/probe-notifications"
SENDER = "orders@shop.example.com"


@pytest.mark.parametrize(
    ("path", "principal"),
    [
        ("services/shop/orders/app.py", "ecs:orders"),
        ("services/shop/notifications/senders.py", "ecs:notifications"),
        ("services/shop/common/events.py", None),
        ("services/shop/local.py", SETUP),
        ("services/shop/gateway.py", SETUP),
        ("services/worker/main.py", "ecs:worker"),
        ("services/common/sqs_async.py", None),
        ("services/fauxqs.py", None),
        ("lambdas/scan_alerts/handler.py", "lambda:scan_alerts"),
        ("tests/shop/conftest.py", SETUP),
    ],
)
def test_each_file_is_attributed_to_the_container_it_runs_in(path: str, principal: str | None) -> None:
    assert recorder._classify(str(ROOT / path)) == principal  # pyright: ignore[reportPrivateUsage]


def test_each_shop_service_is_attributed_to_its_planned_container() -> None:
    index = plan_for("shop")
    services = json.loads(index.plan_config()["container-platform:services"])
    built = {
        name: spec["build"] for name, spec in services.items() if spec.get("build", "").startswith("services/shop/")
    }
    on_disk = {path.parent.name for path in (ROOT / "services" / "shop").glob("*/__main__.py")}
    assert sorted(Path(build).name for build in built.values()) == sorted(on_disk)
    for name, build in built.items():
        principal = recorder._classify(str(ROOT / build / "app.py"))  # pyright: ignore[reportPrivateUsage]
        assert principal == f"ecs:{name}", f"{build} is attributed to {principal}, its container is {name}"
        assert principal in index.principals, f"the shop plan has no container {name}: {sorted(index.principals)}"


def test_a_call_from_the_shops_library_is_attributed_to_the_service_that_called_it(recording: Recording) -> None:
    library = as_deployed_code(
        "services/shop/common", "def probe(client, url):\n    client.receive_message(QueueUrl=url)\n"
    )
    service = as_deployed_code(
        "services/shop/notifications", "def probe(library, client, url):\n    library(client, url)\n"
    )
    service(library, stubbed_sqs(), QUEUE)
    assert recorded(recording) == {("ecs:notifications", "sqs:ReceiveMessage", QUEUE)}


def test_shop_settings_and_their_copies_bind_their_values(recording: Recording) -> None:
    from services.shop.notifications.settings import NotificationsSettings
    from services.shop.orders.settings import OrdersSettings

    OrdersSettings(
        SERVICE_NAME="orders", NOTIFICATIONS_QUEUE_URL=SHOP_QUEUE, PRODUCTS_URL="http://products:8082",
        PAYMENTS_URL="http://payments:8084", USERS_URL="http://users:8081",
    )  # fmt: skip
    settings = NotificationsSettings(SERVICE_NAME="notifications", QUEUE_URL=SHOP_QUEUE, EMAIL_FROM=SENDER)
    assert recording.names_for(SHOP_QUEUE) == {"NOTIFICATIONS_QUEUE_URL", "QUEUE_URL"}
    assert recording.names_for(SENDER) == {"EMAIL_FROM"}
    settings.model_copy(update={"QUEUE_URL": SHOP_QUEUE + "-copy"})
    assert recording.names_for(SHOP_QUEUE + "-copy") == {"QUEUE_URL"}


def ses_request(**extra: Any) -> dict[str, Any]:
    simple = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}
    return {
        "FromEmailAddress": SENDER,
        "Destination": {"ToAddresses": ["ada@example.com"]},
        "Content": {"Simple": simple},
    } | extra


def test_an_ses_send_is_recorded_with_its_from_address(recording: Recording) -> None:
    ses = boto3.client("sesv2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(ses)
    stubber.add_response("send_email", {"MessageId": "m-1"}, ses_request())
    stubber.activate()
    probe = as_deployed_code("services/shop/notifications", "def probe(ses, request):\n    ses.send_email(**request)\n")
    probe(ses, ses_request())
    (call,) = recording.calls.values()
    assert (call.principal, call.action) == ("ecs:notifications", "ses:SendEmail")
    assert call.resource == ResourceRef("ses-from-address", SENDER)


def test_the_from_display_name_and_configuration_set_are_kept_and_raw_content_is_unmapped() -> None:
    named = resource_of("ses", "SendEmail", ses_request(FromEmailAddress=f"Shop <{SENDER}>", ConfigurationSetName="cs"))
    assert named == ResourceRef("ses-from-address", SENDER, (("display_name", "Shop"), ("configuration_set", "cs")))
    raw = resource_of("ses", "SendEmail", ses_request(Content={"Raw": {"Data": b"..."}}))
    assert raw.kind == "unmapped"


def carried_by_email_from(value: str) -> set[str]:
    return {"EMAIL_FROM"} if value == SENDER else set()


def test_an_ses_send_is_checked_on_the_declared_identity_with_the_planned_from_address() -> None:
    index = plan_for("shop")
    call = AwsCall("ecs:notifications", "ses:SendEmail", "SendEmail", ResourceRef("ses-from-address", SENDER), "probe")
    (request,) = requests_for([call], index, carried_by_email_from)
    # Pulumi.shop.yaml: fromAddress orders@example.com, no identity declared, so its domain's.
    assert request.resource == "arn:aws:ses:us-east-1:123456789012:identity/example.com"
    assert request.context == {"ses:FromAddress": "orders@example.com", "ses:ApiVersion": "2"}
    assert [d.result for d in evaluate([request])] == ["Allowed"]
    # The role may send as EMAIL_FROM only: the same request from another address is denied.
    other = dataclasses.replace(request, context={**request.context, "ses:FromAddress": "sales@example.com"})
    assert [d.result for d in evaluate([other])] == ["ImplicitlyDenied"]


def test_a_from_address_no_setting_carried_is_reported() -> None:
    index = plan_for("shop")
    with pytest.raises(ContractError, match=r"carried locally by no environment variable"):
        planned_target(
            ResourceRef("ses-from-address", "noreply@shop.example.com"),
            index.principals["ecs:notifications"],
            index,
            lambda v: set(),
        )


def test_a_configuration_set_is_reported_until_it_is_mapped() -> None:
    index = plan_for("shop")
    ref = ResourceRef("ses-from-address", SENDER, (("configuration_set", "cs"),))
    with pytest.raises(ContractError, match=r"configuration set 'cs'"):
        planned_target(ref, index.principals["ecs:notifications"], index, lambda v: {"EMAIL_FROM"})


def test_sending_to_a_queue_encrypted_with_a_kms_key_needs_the_key_too() -> None:
    index = plan_for("shop")
    call = AwsCall(
        "ecs:orders", "sqs:SendMessage", "SendMessageBatch", ResourceRef("sqs-queue-url", SHOP_QUEUE), "probe"
    )
    requests = requests_for([call], index, lambda v: {"NOTIFICATIONS_QUEUE_URL"})
    queue = index.find("aws:sqs/queue:Queue", "arn", requests[0].resource)
    assert queue is not None
    key = queue.inputs["kmsMasterKeyId"]
    assert [(r.action, r.resource) for r in requests[1:]] == [("kms:GenerateDataKey", key), ("kms:Decrypt", key)]
    worker = AwsCall("ecs:worker", "sqs:ReceiveMessage", "ReceiveMessage", ResourceRef("sqs-queue-url", QUEUE), "probe")
    assert len(requests_for([worker], plan_for("dev"), lambda v: {"QUEUE_URL_HIGH"})) == 1  # SSE-SQS: no key to use


def test_each_stack_checks_the_calls_of_the_principals_it_plans() -> None:
    calls = [
        AwsCall(principal, "sqs:SendMessage", "SendMessage", ResourceRef("sqs-queue-url", QUEUE), "probe")
        for principal in ("ecs:api", "ecs:orders", "lambda:scan_alerts")
    ]
    assert [c.principal for c in calls_planned_in(plan_for("shop"), calls)] == ["ecs:orders", "lambda:scan_alerts"]
    assert [c.principal for c in calls_planned_in(plan_for("dev"), calls)] == ["ecs:api", "lambda:scan_alerts"]


@pytest.mark.parametrize(
    ("identity", "address", "covers"),
    [
        ("orders@example.com", "orders@example.com", True),
        ("example.com", "orders@example.com", True),
        ("example.com", "orders@mail.example.com", True),
        ("mail.example.com", "orders@example.com", False),
        ("sales@example.com", "orders@example.com", False),
        ("ample.com", "orders@example.com", False),
    ],
)
def test_an_identity_covers_its_address_its_domain_and_subdomains(identity: str, address: str, covers: bool) -> None:
    from tests.iam.contract import _identity_covers  # pyright: ignore[reportPrivateUsage]

    assert _identity_covers(identity, address) is covers
