"""Rendering order events as emails, and the two senders: the file sink and SES v2 (against moto, whose requests
botocore validates against the real SES v2 service model before anything is sent)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import orjson
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters
from moto import mock_aws
from moto.core.botocore_stubber import MockRawResponse
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from services.shop.notifications.messages import Email, InvalidEventError, format_amount, render
from services.shop.notifications.senders import (
    FileSender,
    PermanentSendError,
    SesSender,
    mime_message,
    ses_client,
    ses_request,
)
from services.shop.notifications.settings import NotificationsSettings

REGION = "us-east-1"
SENDER = "orders@shop.example.com"
QUEUE_URL = "http://127.0.0.1:9/000000000000/notifications"


def payload(**overrides: Any) -> dict[str, Any]:
    return {"order_id": str(uuid.uuid4()), "email": "ada@example.com", "total_cents": 12345, "currency": "EUR"} | (
        overrides
    )


def rendered(topic: str = "order.confirmed", **overrides: Any) -> Email:
    email_ = render(uuid.uuid4(), topic, payload(**overrides))
    assert email_ is not None
    return email_


# --- Rendering ---


@pytest.mark.parametrize(
    ("topic", "template", "subject_start"),
    [
        ("order.confirmed", "order_confirmed", "Order "),
        ("order.cancelled", "order_cancelled", "Order "),
        ("order.payment_failed", "payment_failed", "Payment for order "),
    ],
)
def test_each_mailed_topic_has_its_template_subject_text_and_html(
    topic: str, template: str, subject_start: str
) -> None:
    data = payload(reason="card_declined")
    email_ = render(uuid.uuid4(), topic, data)
    assert email_ is not None
    assert email_.template == template
    assert email_.recipient == "ada@example.com"
    assert email_.subject.startswith(subject_start) and data["order_id"] in email_.subject
    assert "123.45 EUR" in email_.text and "123.45 EUR" in email_.html
    assert email_.html.startswith("<!doctype html>")
    if topic != "order.confirmed":
        assert "Reason: card declined" in email_.text


def test_topics_that_send_no_email_render_nothing() -> None:
    assert render(uuid.uuid4(), "order.created", payload()) is None


def test_every_value_is_escaped_in_the_html_part() -> None:
    hostile = "<script>alert('x')</script> & \"quotes\""
    email_ = rendered("order.cancelled", reason=hostile)
    assert "<script>" not in email_.html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in email_.html
    assert hostile in email_.text  # the plain-text part is not HTML


@pytest.mark.parametrize(
    "address",
    [
        "Ada <ada@example.com>",
        "ada@example.com, eve@example.com",
        "ada@example.com\r\nBcc: eve@example.com",
        "(comment)ada@example.com",
        "ada@localhost",
        "ada@[192.0.2.1]",
        "ädä@example.com",
        " ada@example.com",
        "ada",
    ],
)
def test_a_recipient_must_be_one_bare_address(address: str) -> None:
    with pytest.raises(InvalidEventError, match="email: Value error, must be one bare ASCII address"):
        render(uuid.uuid4(), "order.confirmed", payload(email=address))


def test_a_bad_payload_is_rejected_naming_every_bad_field() -> None:
    with pytest.raises(InvalidEventError) as caught:
        render(uuid.uuid4(), "order.confirmed", {"order_id": "nope", "total_cents": -1})
    message = str(caught.value)
    assert "order_id: Input should be a valid UUID" in message
    assert "email: Field required" in message
    assert "total_cents: Input should be greater than or equal to 0" in message
    assert "currency: Field required" in message


def test_a_payload_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(InvalidEventError, match="payload"):
        render(uuid.uuid4(), "order.confirmed", ["not", "an", "object"])


@pytest.mark.parametrize(
    ("cents", "text"), [(0, "0.00 EUR"), (5, "0.05 EUR"), (100, "1.00 EUR"), (123456, "1234.56 EUR")]
)
def test_amounts_are_shown_in_major_units(cents: int, text: str) -> None:
    assert format_amount(cents, "EUR") == text


# --- File sink ---


def read_eml(path: Path) -> Any:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_the_file_sink_writes_one_complete_mime_message_named_by_event_id(tmp_path: Path) -> None:
    sender = FileSender(tmp_path / "mail", SENDER)
    email_ = rendered(reason="<b>late</b>")
    message_id = asyncio.run(sender.send(email_))
    assert [p.name for p in (tmp_path / "mail").iterdir()] == [f"{email_.event_id}.eml"]
    message = read_eml(sender.path_for(email_))
    assert message["To"] == "ada@example.com" and message["From"] == SENDER
    assert message["Subject"] == email_.subject and message["Message-ID"] == message_id
    assert message["X-Event-Id"] == str(email_.event_id)
    assert message.get_body(("plain",)).get_content() == email_.text
    assert message.get_body(("html",)).get_content().strip() == email_.html


def test_a_redelivered_event_replaces_its_file_instead_of_adding_one(tmp_path: Path) -> None:
    sender = FileSender(tmp_path, SENDER)
    email_ = rendered()
    asyncio.run(sender.send(email_))
    asyncio.run(sender.send(email_))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{email_.event_id}.eml"]


def test_a_failed_write_leaves_neither_a_partial_file_nor_a_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = FileSender(tmp_path, SENDER)

    def disk_full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("services.shop.notifications.senders.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        asyncio.run(sender.send(rendered()))
    assert list(tmp_path.iterdir()) == []


def test_header_injection_through_the_subject_is_impossible() -> None:
    email_ = rendered()
    forged = Email(**{**email_.__dict__, "subject": "hi\r\nBcc: eve@example.com"})
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        mime_message(forged, SENDER)


# --- SES v2 ---


def ses_sender(client: Any, from_address: str = SENDER) -> SesSender:
    """An SES sender from `from_address` as the service sets it up: EMAIL_FROM of its settings (the IAM contract,
    tests/iam, maps the From of every recorded send back to the variable that carried it)."""
    settings = NotificationsSettings(SERVICE_NAME="notifications", QUEUE_URL=QUEUE_URL, EMAIL_FROM=from_address)
    return SesSender(client, settings.sender_address)


@pytest.fixture
def ses() -> Iterator[Any]:
    with mock_aws():
        boto3.client("sesv2", region_name=REGION).create_email_identity(EmailIdentity=SENDER)
        yield ses_client(REGION, max_attempts=4)


def sent_messages() -> list[Any]:
    return ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages


def test_the_ses_request_matches_botocores_sesv2_model() -> None:
    model = botocore.session.get_session().get_service_model("sesv2").operation_model("SendEmail")
    request = ses_request(rendered(), SENDER, configuration_set="shop-transactional")
    validate_parameters(request, model.input_shape)  # raises ParamValidationError naming any bad field
    assert request["Destination"] == {"ToAddresses": ["ada@example.com"]}


def test_ses_sends_from_a_verified_identity(ses: Any) -> None:
    email_ = rendered()
    message_id = asyncio.run(ses_sender(ses).send(email_))
    [sent] = sent_messages()
    assert sent.id == message_id
    assert sent.source == SENDER and sent.destinations == {"ToAddresses": ["ada@example.com"]}
    assert sent.subject == email_.subject and sent.body == email_.html


def test_an_unverified_sender_is_a_permanent_error(ses: Any) -> None:
    with pytest.raises(PermanentSendError) as caught:
        asyncio.run(ses_sender(ses, "someone@unverified.example.org").send(rendered()))
    assert caught.value.code == "MessageRejected"
    assert "@" not in str(caught.value), "SES's message names addresses; it must not reach logs or the table"
    assert sent_messages() == []


def answer(status: int, body: dict[str, Any], code: str | None = None) -> AWSResponse:
    headers = {"Content-Type": "application/json"} | ({"x-amzn-ErrorType": code} if code else {})
    return AWSResponse("https://email.us-east-1.amazonaws.com", status, headers, MockRawResponse(orjson.dumps(body)))


@pytest.fixture
def offline_ses(monkeypatch: pytest.MonkeyPatch) -> Any:
    """An SES v2 client whose HTTP exchanges the test answers (botocore's event hook before sending), so that
    botocore's own retry policy sees each answer; no request leaves the process."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return ses_client(REGION, max_attempts=4)


def answer_failing_first(client: Any, count: int, status: int, code: str) -> list[int]:
    """Answer the first `count` SendEmail attempts with the error `code`, later ones with success; returns the
    attempt log."""
    attempts: list[int] = []

    def before_send(**_: Any) -> AWSResponse:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= count:
            return answer(status, {"message": f"{code} (injected)"}, code)
        return answer(200, {"MessageId": f"attempt-{len(attempts)}"})

    client.meta.events.register_first("before-send.sesv2.SendEmail", before_send)
    return attempts


def test_throttling_is_retried_with_backoff_and_then_sent_once(offline_ses: Any) -> None:
    attempts = answer_failing_first(offline_ses, 2, 429, "TooManyRequestsException")
    assert asyncio.run(ses_sender(offline_ses).send(rendered())) == "attempt-3"
    assert attempts == [1, 2, 3]


def test_transient_failures_beyond_the_attempts_are_raised_for_redelivery(offline_ses: Any) -> None:
    attempts = answer_failing_first(offline_ses, 99, 503, "ServiceUnavailable")
    with pytest.raises(ClientError) as caught:
        asyncio.run(ses_sender(offline_ses).send(rendered()))
    assert not isinstance(caught.value, PermanentSendError)
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert attempts == [1, 2, 3, 4]


@pytest.mark.parametrize("code", ["MessageRejected", "MailFromDomainNotVerifiedException", "BadRequestException"])
def test_permanent_errors_are_not_retried(offline_ses: Any, code: str) -> None:
    attempts = answer_failing_first(offline_ses, 99, 400, code)
    with pytest.raises(PermanentSendError, match=code):
        asyncio.run(ses_sender(offline_ses).send(rendered()))
    assert attempts == [1]
