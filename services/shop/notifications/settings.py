"""Settings of the notifications service: the queue it consumes and where email goes.

Email goes to SES (`EMAIL_FROM` must be an identity verified in SES: the platform verifies it out of band) unless
`EMAIL_SINK_DIR` is set, which writes each message as an .eml file there instead (local runs and tests only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from services.common.settings import CLOUD_ENVS
from services.shop.common.settings import ShopSettings
from services.shop.notifications.messages import Recipient

LOCAL_SENDER = "notifications@localhost"
"""The From of file-sink messages when EMAIL_FROM is unset (`localhost` is reserved and never routed: RFC 6761)."""


class NotificationsSettings(ShopSettings):
    PORT: int = Field(default=8085, ge=1, le=65535)

    # --- Queue (SQS in AWS, fauxqs locally) ---
    QUEUE_URL: str = Field(min_length=1, description="The order-events queue this service consumes.")
    SQS_ENDPOINT_URL: str | None = None
    # Long-poll wait per ReceiveMessage; messages per receive (SQS allows 1 to 10).
    RECEIVE_WAIT_SECONDS: int = Field(default=20, ge=0, le=20)
    RECEIVE_BATCH: int = Field(default=10, ge=1, le=10)
    # After a transient failure a message is visible again this much later (then the queue's redrive policy
    # dead-letters it after maxReceiveCount receives).
    RETRY_DELAY_SECONDS: int = Field(default=10, ge=0, le=43200)

    # --- Email ---
    EMAIL_FROM: Recipient | None = None
    EMAIL_SINK_DIR: Path | None = None
    # SES calls: attempts per message (throttling and transient errors, with botocore's backoff), then the
    # message is left for redelivery.
    SES_MAX_ATTEMPTS: int = Field(default=4, ge=1, le=10)
    SES_CONFIGURATION_SET: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")

    @model_validator(mode="after")
    def _email_destination(self) -> Self:
        cloud = self.APP_ENV in CLOUD_ENVS
        problems: list[str] = []
        if cloud and self.EMAIL_SINK_DIR is not None:
            problems.append(f"EMAIL_SINK_DIR is for local runs and tests only; unset it when APP_ENV={self.APP_ENV!r}")
        if cloud and self.SQS_ENDPOINT_URL:
            problems.append(
                f"SQS_ENDPOINT_URL is for local runs and tests only; unset it when APP_ENV={self.APP_ENV!r}"
            )
        if self.EMAIL_SINK_DIR is None and self.EMAIL_FROM is None:
            problems.append(
                "EMAIL_FROM is required to send through SES (an address of a verified SES identity); "
                "or set EMAIL_SINK_DIR to write messages to files instead (local runs)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def sender_address(self) -> str:
        """The From address: EMAIL_FROM, or for the local file sink LOCAL_SENDER when it is unset."""
        return self.EMAIL_FROM or LOCAL_SENDER
