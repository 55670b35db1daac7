"""Security signals the services log, one JSON line each (services/common/logging.py), for the platform's CloudWatch
metric filters and alarms (components/runtime_security.py; tests/services/test_security_events.py proves each
filter matches the line logged here).

Every line carries `"security_event": <kind>` and only what identifies the request, never a credential, a token,
an email address or a rejected value itself (a path trick is described by its kind, not echoed into the logs).
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

SECURITY_EVENT_FIELD = "security_event"
AUTH_FAILURE = "auth_failure"
UPLOAD_REJECTED = "upload_rejected"
RATE_LIMITED = "rate_limited"
AWS_ACCESS_DENIED = "aws_access_denied"
# Error codes AWS APIs answer with when IAM, a resource policy or a key policy refuses the call.
ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "AuthorizationError", "UnauthorizedOperation", "Forbidden"}
)

log = logging.getLogger("security")
Client = TypeVar("Client")


def security_event(kind: str, message: str, **fields: Any) -> None:
    """One WARNING line with `security_event: kind` and the given fields."""
    log.warning(message, extra={SECURITY_EVENT_FIELD: kind, **fields})


def access_denied_hook(http_response: Any = None, parsed: Any = None, model: Any = None, **_: Any) -> None:
    """botocore `after-call` handler: log a refused AWS call (the caller still gets its ClientError)."""
    error = parsed.get("Error") if isinstance(parsed, dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    if code not in ACCESS_DENIED_CODES:
        return
    security_event(
        AWS_ACCESS_DENIED,
        "AWS refused a call",
        aws_service=getattr(getattr(model, "service_model", None), "service_name", None),
        aws_operation=getattr(model, "name", None),
        error_code=code,
    )


def watch_access_denied(client: Client) -> Client:
    """The boto3 client, logging every call AWS refuses as an `aws_access_denied` security event."""
    client.meta.events.register("after-call", access_denied_hook)  # pyright: ignore[reportAttributeAccessIssue]
    return client
