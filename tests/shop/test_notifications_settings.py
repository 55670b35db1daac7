"""The notifications service's environment contract: where email goes, and what is refused in the cloud."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.shop.notifications.app import build_sender
from services.shop.notifications.senders import FileSender, SesSender
from services.shop.notifications.settings import LOCAL_SENDER, NotificationsSettings

QUEUE = "http://127.0.0.1:9324/000000000000/notifications"
CLOUD_DB = {"APP_ENV": "prod", "DB_AUTH": "iam", "DB_SSLMODE": "verify-full"}


def make(**values: Any) -> NotificationsSettings:
    return NotificationsSettings.model_validate({"SERVICE_NAME": "notifications", "QUEUE_URL": QUEUE} | values)


def test_defaults_give_the_port_and_derive_the_schema_from_the_name(tmp_path: Path) -> None:
    settings = make(EMAIL_SINK_DIR=tmp_path)
    assert (settings.SERVICE_NAME, settings.PORT, settings.DB_SCHEMA) == ("notifications", 8085, "notifications")


def test_the_file_sink_is_chosen_when_a_sink_directory_is_set(tmp_path: Path) -> None:
    settings = make(EMAIL_SINK_DIR=tmp_path)
    sender = build_sender(settings)
    assert isinstance(sender, FileSender) and sender.directory == tmp_path
    assert settings.sender_address == LOCAL_SENDER


def test_ses_is_chosen_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = make(EMAIL_FROM="orders@shop.example.com", **CLOUD_DB)
    assert isinstance(build_sender(settings), SesSender)
    assert settings.sender_address == "orders@shop.example.com"


def test_without_a_sender_address_or_a_sink_it_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="EMAIL_FROM is required to send through SES"):
        make()


def test_the_queue_url_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="QUEUE_URL"):
        NotificationsSettings.model_validate({"SERVICE_NAME": "notifications", "EMAIL_SINK_DIR": tmp_path})


@pytest.mark.parametrize(
    ("variable", "value"), [("EMAIL_SINK_DIR", "/tmp/mail"), ("SQS_ENDPOINT_URL", "http://127.0.0.1:9324")]
)
def test_local_only_variables_are_refused_in_the_cloud(variable: str, value: str) -> None:
    with pytest.raises(ValidationError, match=f"{variable} is for local runs and tests only"):
        make(EMAIL_FROM="orders@shop.example.com", **CLOUD_DB, **{variable: value})


def test_the_sender_address_must_be_one_bare_address() -> None:
    with pytest.raises(ValidationError, match="EMAIL_FROM"):
        make(EMAIL_FROM="Shop <orders@shop.example.com>")
