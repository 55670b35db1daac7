"""The IAM contract: every AWS call recorded in this session (tests/iam/recorder.py, installed by
tests/conftest.py) is allowed by the role the plan gives its container or Lambda, in every stack that plans it.

Runs after every other test (tests/conftest.py reorders it), so the whole suite's calls are checked. It drives
the main flows itself first (tests/iam/flows.py): run alone it still checks the API, the worker, the shop's orders
and notifications and the Lambda, and it fails if a call we know the code makes is missing from the recording (a
broken hook, a renamed client).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.fauxqs import Fauxqs
from tests.iam.contract import STACKS, ContractError, calls_planned_in, evaluate, explain, plan_for, requests_for
from tests.iam.flows import drive_deploy_hook, drive_scan_alerts, drive_services, drive_shop
from tests.iam.recorder import RECORDING, installed
from tests.iam.simulator import ensure_simulator

# Calls the code is known to make; a recording without them means the recorder missed them.
KNOWN_CALLS = {
    ("ecs:api", "sqs:SendMessage"),  # the outbox relay (lean client)
    ("ecs:api", "sqs:GetQueueAttributes"),  # /ready (boto3)
    ("ecs:worker", "sqs:ReceiveMessage"),  # work queues and the DLQ sweep (lean client)
    ("ecs:worker", "sqs:DeleteMessage"),  # finished jobs
    ("ecs:orders", "sqs:SendMessage"),  # the shop's outbox relay: order events (lean client)
    ("ecs:notifications", "sqs:GetQueueAttributes"),  # /ready (lean client)
    ("ecs:notifications", "sqs:ReceiveMessage"),  # the queue consumer (lean client)
    ("ecs:notifications", "sqs:DeleteMessage"),  # handled order events
    ("ecs:notifications", "ses:SendEmail"),  # the order emails (boto3 sesv2)
    ("lambda:scan_alerts", "sns:Publish"),  # an alert
    ("lambda:deploy_hook", "secretsmanager:GetSecretValue"),  # the deployment test token
}


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch) -> None:
    if not installed():
        pytest.fail("the AWS call recorder is not installed: tests/conftest.py must call tests.iam.recorder.install()")
    ensure_simulator()
    with Fauxqs() as fauxqs:
        drive_services(tmp_path_factory.mktemp("iam-storage"), fauxqs)
        drive_shop(fauxqs)
    drive_scan_alerts(monkeypatch_module)
    drive_deploy_hook(monkeypatch_module)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_the_recording_holds_the_calls_the_code_is_known_to_make(recording: None) -> None:
    recorded = {(call.principal, call.action) for call in RECORDING.calls.values()}
    missing = KNOWN_CALLS - recorded
    assert not missing, f"the recorder missed calls the code makes: {sorted(missing)}; recorded: {sorted(recorded)}"
    sweeps = [
        call
        for call in RECORDING.calls.values()
        if (call.principal, call.action) == ("ecs:worker", "sqs:ReceiveMessage")
        and "DLQ_URL" in RECORDING.names_for(call.resource.value)
    ]
    assert sweeps, "no worker ReceiveMessage on the dead-letter queue (DLQ_URL) was recorded"


def test_every_recorded_principal_is_planned_in_some_stack(recording: None) -> None:
    planned = {name for stack in STACKS for name in plan_for(stack).principals}
    unplanned = sorted(
        f"{call.principal} made {call.action} ({call.origin})"
        for call in RECORDING.calls.values()
        if call.principal not in planned
    )
    assert not unplanned, (
        f"calls by principals no stack of {STACKS} plans, so no role was checked for them:\n  "
        + "\n  ".join(unplanned)
        + f"\nplanned: {', '.join(sorted(planned))}"
    )


@pytest.mark.parametrize("stack", STACKS)
def test_every_recorded_call_is_allowed_by_the_planned_role(recording: None, stack: str) -> None:
    index = plan_for(stack)
    problems: list[str] = []
    requests = []
    for call in calls_planned_in(index, RECORDING.calls.values()):
        try:
            requests += requests_for([call], index, RECORDING.names_for)
        except ContractError as error:
            problems.append(str(error))
    denied = [decision for decision in evaluate(requests) if decision.result != "Allowed"]
    problems += [explain(decision) for decision in denied]
    assert not problems, f"{len(problems)} recorded call(s) would fail in {stack}:\n\n" + "\n\n".join(problems)
    assert requests, "nothing was evaluated"
