"""One order event in, at most one email out: render, send, record.

Runs inside the consumer's inbox transaction (the event id is marked processed in the same transaction), so a
returned outcome means "done with this event, delete the message" and an exception means "nothing happened,
deliver it again". An email is only re-sent if the process dies between the provider accepting it and the
commit (at-least-once delivery; the file sink overwrites its one file per event, so locally not even then).
"""

from __future__ import annotations

import enum
import logging

from services.shop.common.events import Event
from services.shop.notifications import repository
from services.shop.notifications.messages import InvalidEventError, render
from services.shop.notifications.repository import Conn
from services.shop.notifications.senders import EmailSender, PermanentSendError

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    SENT = "sent"
    REJECTED = "rejected"  # the provider refused it for good: recorded, dropped
    INVALID = "invalid"  # the event can never become an email: logged, dropped
    NOT_MAILED = "not_mailed"  # a topic that sends no email
    DUPLICATE = "duplicate"  # already recorded: a redelivery


class Notifier:
    def __init__(self, sender: EmailSender) -> None:
        self.sender = sender

    async def handle(self, conn: Conn, event: Event) -> Outcome:
        """Handle one event; raises (so the event is redelivered) only when sending failed transiently."""
        event_id, topic = event.event_id, event.topic
        fields = {"event_id": str(event_id), "topic": topic}
        try:
            email = render(event_id, topic, event.payload)
        except InvalidEventError as error:
            log.error("malformed order event dropped", extra={**fields, "error": str(error)})
            return Outcome.INVALID
        if email is None:
            log.debug("topic sends no email", extra=fields)
            return Outcome.NOT_MAILED
        if await repository.is_recorded(conn, event_id):
            log.info("order event already handled; not sending again", extra=fields)
            return Outcome.DUPLICATE
        fields |= {"order_id": str(email.order_id), "template": email.template}
        try:
            message_id = await self.sender.send(email)
        except PermanentSendError as error:
            await repository.record(conn, email, topic, "rejected", error=str(error))
            log.warning("email rejected for good; event dropped", extra={**fields, "error": str(error)})
            return Outcome.REJECTED
        await repository.record(conn, email, topic, "sent", provider_message_id=message_id)
        log.info("email sent", extra={**fields, "provider_message_id": message_id})
        return Outcome.SENT
