"""Where rendered emails go: SES v2 in the cloud, .eml files in a directory locally.

A sender either returns (delivered: the provider's message id), raises `PermanentSendError` (this message can
never be delivered: record it and drop the event, or it would loop until the dead-letter queue), or raises
anything else (try again later: the event is left on the queue for redelivery and, after the queue's
maxReceiveCount, dead-lettered where an alarm sees it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from services.common.security_events import watch_access_denied
from services.shop.notifications.messages import Email

# SES v2 SendEmail errors that no retry can fix for this message. Configuration errors that affect every
# message (a missing configuration set, a paused account) stay transient on purpose: they end in the DLQ,
# which alarms and can be redriven once fixed, instead of silently dropping every email.
# What each permanent SES error means, said without SES's own message (which names the refused addresses).
PERMANENT_SES_ERRORS = {
    "MessageRejected": "SES rejected the message (unverified sender or recipient, or suppressed address)",
    "MailFromDomainNotVerifiedException": "the sender's MAIL FROM domain is not verified in SES",
    "BadRequestException": "SES refused the request as malformed",
}


class PermanentSendError(Exception):
    """The provider refused this message for good (rejected content or recipient, unverified sender)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class EmailSender(Protocol):
    async def send(self, email: Email) -> str:
        """Deliver `email` and return the provider's message id; see the module docstring for failures."""
        ...


def ses_client(region: str, max_attempts: int) -> Any:
    """An SES v2 client that retries throttling (TooManyRequestsException, 429) and transient errors itself.

    botocore's standard retry mode backs off exponentially with jitter (1 s base for throttling, capped at 20 s)
    and honours x-amz-retry-after; `max_attempts` counts the first call."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=3,
        read_timeout=10,
    )
    return watch_access_denied(boto3.client("sesv2", region_name=region, config=config))


def ses_request(email: Email, from_address: str, configuration_set: str | None = None) -> dict[str, Any]:
    """The SendEmail parameters for `email` (botocore validates them against the SES v2 model on every call)."""
    request: dict[str, Any] = {
        "FromEmailAddress": from_address,
        "Destination": {"ToAddresses": [email.recipient]},
        "Content": {
            "Simple": {
                "Subject": {"Data": email.subject, "Charset": "UTF-8"},
                "Body": {
                    "Text": {"Data": email.text, "Charset": "UTF-8"},
                    "Html": {"Data": email.html, "Charset": "UTF-8"},
                },
            }
        },
        "EmailTags": [
            {"Name": "template", "Value": email.template},
            {"Name": "event_id", "Value": str(email.event_id)},
        ],
    }
    if configuration_set:
        request["ConfigurationSetName"] = configuration_set
    return request


class SesSender:
    """Sends through Amazon SES v2 (`sesv2.send_email`) from a verified identity."""

    def __init__(self, client: Any, from_address: str, configuration_set: str | None = None) -> None:
        self._client = client
        self._from = from_address
        self._configuration_set = configuration_set

    async def send(self, email: Email) -> str:
        # boto3 blocks: off the event loop, so the consumer's shutdown and /ready stay responsive.
        return await asyncio.to_thread(self._send, email)

    def _send(self, email: Email) -> str:
        try:
            response = self._client.send_email(**ses_request(email, self._from, self._configuration_set))
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in PERMANENT_SES_ERRORS:
                # SES's message names the refused addresses: customers' emails stay out of logs and the table.
                raise PermanentSendError(code, PERMANENT_SES_ERRORS[code]) from None
            raise
        return str(response["MessageId"])


def mime_message(email: Email, from_address: str) -> EmailMessage:
    """The message as RFC 5322 text: plain text with an HTML alternative."""
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = email.recipient
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(idstring=str(email.event_id), domain=from_address.rpartition("@")[2])
    message["X-Event-Id"] = str(email.event_id)
    message["X-Template"] = email.template
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


class FileSender:
    """Writes each email to `<directory>/<event id>.eml` (local runs and tests).

    The file appears whole or not at all (written to a temporary file in the same directory, flushed, then
    renamed over the final name), and a redelivered event replaces its own file instead of adding a second."""

    def __init__(self, directory: Path, from_address: str) -> None:
        self.directory = directory
        self._from = from_address

    def path_for(self, email: Email) -> Path:
        return self.directory / f"{email.event_id}.eml"

    async def send(self, email: Email) -> str:
        return await asyncio.to_thread(self._write, email)

    def _write(self, email: Email) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        message = mime_message(email, self._from)
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".eml.part")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(message.as_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path_for(email))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        return str(message["Message-ID"])
