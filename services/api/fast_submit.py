"""A lean path for `POST /jobs`, the one hot endpoint.

FastAPI's request handling (Request object, dependency solving, error collection) cost more CPU per
submission than the job model's validation itself. This ASGI endpoint sits before the FastAPI route and
handles the common case, a well-formed request, with the same model (`JobRequest`, validated with the
same pydantic-core validator), the same header rules, rate limit and group commit (`accept_job`).

Anything it is not sure about goes to the FastAPI route unchanged, with the body replayed: invalid JSON
or body, an unexpected content type, a chunked body, a header that fails its pattern. So every error
response (422 details, 400s) is the one FastAPI gives, and the OpenAPI schema still describes the route.
Errors raised here (429, 409, 503, ...) go through the app's exception handlers like the route's do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import TypeAdapter, ValidationError
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.deps import CLIENT_ID_PATTERN, IDEMPOTENCY_KEY_PATTERN, AppState, enforce_rate_limit
from services.api.routes.jobs import accept_job
from services.common.jobs import AnyJob, JobRequest

_HANDED_BACK = "services.api.fast_submit.handed_back"
_JOB_REQUEST = TypeAdapter[AnyJob](JobRequest)


@dataclass(frozen=True, slots=True)
class _Submission:
    job: AnyJob
    client: str
    key: str | None


class FastJobSubmit:
    """ASGI endpoint for `POST /jobs`; `fallback` routes the request to the FastAPI route."""

    def __init__(self, fallback: ASGIApp) -> None:
        self._fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        if not _sized_json(headers):
            await self._fallback(scope, receive, send)  # nothing read yet: FastAPI sees the request as sent
            return
        body = await _read_body(receive)
        if body is None:  # the client went away mid-body
            return
        submission = _parse(scope, headers, body)
        if submission is None:
            await self._fallback(scope, _replay(body, receive), send)
            return
        state: AppState = scope["app"].state.services
        await enforce_rate_limit(state, submission.client)
        response = await accept_job(state, submission.job, submission.client, submission.key)
        await response(scope, receive, send)


class _FastSubmitRoute(Route):
    """Matches `POST /jobs` unless the request is being handed back to the router (the fallback)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get(_HANDED_BACK):
            return Match.NONE, {}
        return super().matches(scope)


def mount_fast_submit(app: FastAPI) -> None:
    """Put the lean endpoint in front of the FastAPI `POST /jobs` route (which stays in the OpenAPI schema
    and answers whatever the lean path hands back)."""

    async def fallback(scope: Scope, receive: Receive, send: Send) -> None:
        await app.router({**scope, _HANDED_BACK: True}, receive, send)

    app.router.routes.insert(
        0, _FastSubmitRoute("/jobs", FastJobSubmit(fallback), methods=["POST"], include_in_schema=False)
    )


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The headers this path reads, first occurrence wins (as `Request.headers.get` does)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in (b"content-type", b"content-length", b"x-client-id", b"idempotency-key"):
            found.setdefault(name, value)
    return found


def _sized_json(headers: dict[bytes, bytes]) -> bool:
    """A JSON body with a Content-Length (BodyLimitMiddleware has already rejected one over the limit)."""
    content_type = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
    return content_type == b"application/json" and headers.get(b"content-length", b"").isdigit()


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay_receive() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()  # e.g. http.disconnect, for streaming responses
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay_receive


class _SlowPath(Exception):
    """The request is one the FastAPI route should answer (it gives the exact error response)."""


def _parse(scope: Scope, headers: dict[bytes, bytes], body: bytes) -> _Submission | None:
    """The validated submission, or None for anything the FastAPI route should answer."""
    try:
        client = _header(headers, b"x-client-id", CLIENT_ID_PATTERN)
        key = _header(headers, b"idempotency-key", IDEMPOTENCY_KEY_PATTERN)
        # orjson is stricter than json.loads (no NaN, no lone surrogates): such bodies take the slow path.
        payload: Any = orjson.loads(body)
        job = _JOB_REQUEST.validate_python(payload)
    except (_SlowPath, orjson.JSONDecodeError, ValidationError):
        return None
    if client is None:
        peer = scope.get("client")
        client = f"ip:{peer[0]}" if peer else "ip:unknown"
    return _Submission(job, client, key)


def _header(headers: dict[bytes, bytes], name: bytes, pattern: re.Pattern[str]) -> str | None:
    """The header's value, None if absent. fullmatch is stricter than FastAPI's `^...$` (a trailing
    newline), so a doubtful value goes to the FastAPI route, never the other way round."""
    raw = headers.get(name)
    if raw is None:
        return None
    value = raw.decode("latin-1")
    if pattern.fullmatch(value) is None:
        raise _SlowPath
    return value
