"""Order events to emails: which topics are mailed, what their payload must hold, and the rendered message.

Every value an event carries is untrusted text: the HTML part escapes each one (`html.escape`, quotes
included), and the recipient is checked to be exactly one bare address (no display name, no line breaks) so a
crafted event cannot add headers or recipients.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

Template = Literal["order_confirmed", "order_cancelled", "payment_failed"]

TEMPLATES: dict[str, Template] = {
    "order.confirmed": "order_confirmed",
    "order.cancelled": "order_cancelled",
    "order.payment_failed": "payment_failed",
}
"""Topic -> template. Other order topics are not mailed."""

MAX_ADDRESS_LENGTH = 254  # RFC 5321's limit on a forward path, less its angle brackets
MAX_REASON_CHARACTERS = 200


class InvalidEventError(ValueError):
    """An event that can never become an email: retrying it would only loop, so it is dropped."""


def _bare_address(value: str) -> str:
    shape = "one bare ASCII address like name@example.com (no display name, comment, quotes or spaces)"
    if not value.isascii() or not value.isprintable() or any(ch in value for ch in ' <>,;"()'):
        raise ValueError(f"must be {shape}")
    try:
        address = Address(addr_spec=value)
    except (HeaderParseError, ValueError, IndexError):
        raise ValueError(f"must be {shape}") from None
    if address.addr_spec != value or "." not in address.domain or address.domain.startswith("["):
        raise ValueError(f"must be {shape}, with a dotted domain name")
    return value


Recipient = Annotated[str, Field(min_length=3, max_length=MAX_ADDRESS_LENGTH), AfterValidator(_bare_address)]


class OrderEventPayload(BaseModel):
    """What an order event (`order.confirmed`, `order.cancelled`, `order.payment_failed`) must carry to be mailed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    order_id: UUID
    email: Recipient = Field(description="The customer's address: the recipient.")
    total_cents: int = Field(ge=0, le=10**12)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR.")
    reason: str | None = Field(
        default=None, description="Why it was cancelled or declined (a code like card_declined)."
    )


@dataclass(frozen=True)
class Email:
    """One rendered message, ready for any sender."""

    event_id: UUID
    order_id: UUID
    template: Template
    recipient: str
    subject: str
    text: str
    html: str


def template_for(topic: str) -> Template | None:
    """The template of a mailed topic, or None for topics that send no email."""
    return TEMPLATES.get(topic)


def parse_payload(payload: Any) -> OrderEventPayload:
    """Validate an event's payload, raising InvalidEventError that names every bad field."""
    try:
        return OrderEventPayload.model_validate(payload)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'payload'}: {item['msg']}" for item in error.errors()
        )
        raise InvalidEventError(f"order event payload rejected: {problems}") from None


def format_amount(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"


def describe_reason(reason: str) -> str:
    """`card_declined` -> `card declined`; a long reason is shortened rather than failing the email."""
    text = reason.replace("_", " ").strip()
    return text if len(text) <= MAX_REASON_CHARACTERS else text[: MAX_REASON_CHARACTERS - 1] + "…"


def _content(template: Template, payload: OrderEventPayload) -> tuple[str, list[str]]:
    """Subject and body paragraphs (plain text, not yet escaped)."""
    order = str(payload.order_id)
    total = format_amount(payload.total_cents, payload.currency)
    reason = [f"Reason: {describe_reason(payload.reason)}"] if payload.reason else []
    if template == "order_confirmed":
        return f"Order {order} is confirmed", [
            f"Thank you for your order {order}.",
            f"We have taken your payment of {total} and are preparing your items.",
        ]
    if template == "order_cancelled":
        return f"Order {order} was cancelled", [
            f"Your order {order} (total {total}) was cancelled.",
            *reason,
            "Any payment taken for it is refunded.",
        ]
    return f"Payment for order {order} failed", [
        f"We could not take the payment of {total} for your order {order}, so it was not placed.",
        *reason,
        "Nothing was charged. You are welcome to try again with another payment method.",
    ]


def render(event_id: UUID, topic: str, payload: Any) -> Email | None:
    """The email for an event, or None when its topic sends none. Raises InvalidEventError for a bad payload."""
    template = template_for(topic)
    if template is None:
        return None
    data = parse_payload(payload)
    subject, paragraphs = _content(template, data)
    text = "\n\n".join(paragraphs) + "\n"
    body = "".join(f"<p>{html.escape(paragraph, quote=True)}</p>" for paragraph in paragraphs)
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(subject, quote=True)}</title></head><body>{body}</body></html>"
    )
    return Email(
        event_id=event_id,
        order_id=data.order_id,
        template=template,
        recipient=data.email,
        subject=subject,
        text=text,
        html=page,
    )
