"""A lean asyncio client for the SQS JSON protocol, for the hot paths: the API's outbox relay and, through
`BlockingSqsClient`, the worker's receive, delete and visibility calls.

boto3 cost about 1.4 ms of CPU per call here (this client: about 0.2 ms) and, called from a thread,
held the GIL while the event loop waited: under load the relay's sends were most of the API's tail
latency. This client speaks the same wire protocol (`application/x-amz-json-1.0`,
`X-Amz-Target: AmazonSQS.<Action>`) over keep-alive HTTP/1.1 connections on the event loop, and leaves
what must be exactly right to botocore: the endpoint (resolved by the boto3 client), the credential chain
(the ECS task role in AWS) and the SigV4 signature.

Retries: connection failures, timeouts, 5xx, 408, 429 and throttling codes are retried with jittered
backoff; certificate failures and other client errors are not. A retried
SendMessageBatch may deliver a message twice, which the outbox design already allows (workers are
idempotent); it never loses one, since the caller only deletes what a response listed as successful.
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials

from services.common.security_events import ACCESS_DENIED_CODES, AWS_ACCESS_DENIED, security_event

JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# Error codes that mean "slow down and try again" (JSON protocol codes; the query-protocol names too).
THROTTLING_CODES = frozenset(
    {"ThrottlingException", "RequestThrottled", "KmsThrottled", "AWS.SimpleQueueService.RequestThrottled"}
)


class SqsError(Exception):
    """An error response from SQS (or a local endpoint), with its code and HTTP status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"SQS {code} (HTTP {status}): {message}")
        self.code = code
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.status in (408, 429) or self.code in THROTTLING_CODES


class ProtocolError(Exception):
    """The peer sent something that is not an HTTP/1.1 response we can read."""


@dataclass(frozen=True)
class _Endpoint:
    scheme: str
    host: str
    port: int
    host_header: str  # what SigV4 signs and what is sent: default ports are left out
    url: str

    @classmethod
    def parse(cls, endpoint_url: str) -> _Endpoint:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"SQS endpoint must be an http(s) URL with a host, got {endpoint_url!r}")
        default_port = 443 if parts.scheme == "https" else 80
        port = parts.port or default_port
        host_header = parts.hostname if port == default_port else f"{parts.hostname}:{port}"
        return cls(parts.scheme, parts.hostname, port, host_header, f"{parts.scheme}://{host_header}/")


@dataclass(frozen=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()

    @property
    def usable(self) -> bool:
        """Open, and nothing arrived while idle: a server that times out an idle connection may send a
        response (408) before closing it, which must not be read as the next request's answer."""
        buffered = getattr(self.reader, "_buffer", b"")  # asyncio.StreamReader keeps no public count
        return not self.writer.is_closing() and not self.reader.at_eof() and not buffered


class AsyncSqsClient:
    """`await client.call("SendMessageBatch", {...})` returns the decoded JSON response or raises SqsError."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: Credentials,
        *,
        max_connections: int = 4,
        timeout_seconds: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        self._endpoint = _Endpoint.parse(endpoint_url)
        self._region = region
        self._credentials = credentials
        self._timeout = timeout_seconds
        self._max_attempts = max_attempts
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: deque[_Connection] = deque()
        # AWS_CA_BUNDLE as botocore honours it (a TLS-inspecting proxy's CA); otherwise the system's CAs.
        self._ssl = (
            ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
            if self._endpoint.scheme == "https"
            else None
        )

    async def send_message_batch(self, queue_url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.call("SendMessageBatch", {"QueueUrl": queue_url, "Entries": entries})

    async def call(self, action: str, payload: dict[str, Any], timeout_seconds: float | None = None) -> dict[str, Any]:
        """One API call with retries. Each attempt (waiting for a connection slot included) has
        `timeout_seconds`, or the client's timeout; a long poll passes more, as it may wait up to 20 s."""
        body = orjson.dumps(payload)
        timeout = timeout_seconds or self._timeout
        attempt = 1
        while True:
            try:
                return await self._call_once(action, body, timeout)
            except ssl.SSLCertVerificationError:
                raise  # an untrusted endpoint stays untrusted
            except (SqsError, OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError) as exc:
                if isinstance(exc, SqsError) and exc.code in ACCESS_DENIED_CODES:
                    security_event(AWS_ACCESS_DENIED, "AWS refused a call", aws_service="sqs", aws_operation=action,
                                   error_code=exc.code)  # fmt: skip
                if attempt >= self._max_attempts or (isinstance(exc, SqsError) and not exc.retryable):
                    raise
            await asyncio.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))  # noqa: S311 - jitter
            attempt += 1

    async def aclose(self) -> None:
        while self._idle:
            self._idle.popleft().close()

    async def _call_once(self, action: str, body: bytes, timeout: float) -> dict[str, Any]:
        request = await self._signed_request(action, body)
        async with asyncio.timeout(timeout), self._slots:
            idle = self._take_idle()
            if idle is not None:
                try:
                    return await self._exchange(idle, request)
                except (OSError, ProtocolError, asyncio.IncompleteReadError):
                    pass  # the server had closed this idle keep-alive connection: send on a new one
            return await self._exchange(await self._open(), request)

    async def _exchange(self, connection: _Connection, request: bytes) -> dict[str, Any]:
        try:
            connection.writer.write(request)
            await connection.writer.drain()
            status, body, keep_alive = await _read_response(connection.reader)
        except BaseException:
            connection.close()  # half-read, or cancelled by the attempt's deadline: never reuse it
            raise
        if keep_alive:
            self._idle.append(connection)
        else:
            connection.close()
        return _decode(status, body)

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable:
                return connection
            connection.close()
        return None

    async def _open(self) -> _Connection:
        endpoint = self._endpoint
        reader, writer = await asyncio.open_connection(
            endpoint.host, endpoint.port, ssl=self._ssl, server_hostname=endpoint.host if self._ssl else None
        )
        return _Connection(reader, writer)

    async def _signed_request(self, action: str, body: bytes) -> bytes:
        headers = {
            "Host": self._endpoint.host_header,
            "Content-Type": JSON_CONTENT_TYPE,
            "X-Amz-Target": f"AmazonSQS.{action}",
        }
        request = AWSRequest(method="POST", url=self._endpoint.url, data=body, headers=headers)
        SigV4Auth(await self._frozen_credentials(), "sqs", self._region).add_auth(request)
        head = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
        return f"POST / HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body

    async def _frozen_credentials(self) -> ReadOnlyCredentials:
        credentials = self._credentials
        if isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed():
            # A refresh is an HTTP call (the ECS credentials endpoint): keep it off the event loop.
            return await asyncio.to_thread(credentials.get_frozen_credentials)
        return credentials.get_frozen_credentials()


class BlockingSqsClient:
    """The same client for synchronous code (the worker): an event loop of its own in a daemon thread runs
    the calls, and each method blocks until its answer. Method names and keyword arguments are boto3's, so
    the worker's calls read as before; responses are the same JSON documents boto3 returns. Safe to call
    from several threads; `close()` fails the calls still running (CancelledError) and any later one."""

    LONG_POLL_MARGIN_SECONDS = 10.0

    def __init__(self, client: AsyncSqsClient) -> None:
        self._client = client
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop.run_forever, name="sqs-io", daemon=True)
        self._thread.start()

    def call(self, action: str, payload: dict[str, Any], timeout_seconds: float | None = None) -> dict[str, Any]:
        with self._lock:  # scheduled before close() can stop the loop, or refused
            if self._closed:
                raise RuntimeError(f"SQS client is closed; {action} was not sent")
            future = asyncio.run_coroutine_threadsafe(self._client.call(action, payload, timeout_seconds), self._loop)
        return future.result()

    def receive_message(self, **params: Any) -> dict[str, Any]:
        wait = float(params.get("WaitTimeSeconds", 0))
        return self.call("ReceiveMessage", params, wait + self.LONG_POLL_MARGIN_SECONDS if wait else None)

    def delete_message_batch(self, **params: Any) -> dict[str, Any]:
        return self.call("DeleteMessageBatch", params)

    def change_message_visibility(self, **params: Any) -> dict[str, Any]:
        return self.call("ChangeMessageVisibility", params)

    def change_message_visibility_batch(self, **params: Any) -> dict[str, Any]:
        return self.call("ChangeMessageVisibilityBatch", params)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _shutdown(self) -> None:
        calls = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in calls:
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        await self._client.aclose()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: (status, body, whether the connection may be reused)."""
    status_line = await reader.readline()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
    status = int(parts[1])
    headers: dict[bytes, bytes] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n"):
        if not line:
            raise ProtocolError("connection closed inside the response headers")
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    keep_alive = headers.get(b"connection", b"").lower() != b"close" and parts[0] != b"HTTP/1.0"
    if status in (204, 304) or 100 <= status < 200:
        return status, b"", keep_alive  # no body by definition (we never send Expect: 100-continue)
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        return status, await _read_chunked(reader), keep_alive
    length = headers.get(b"content-length")
    if length is None:
        return status, await _read_to_eof(reader), False  # delimited by the end of the connection
    if not length.isdigit() or int(length) > MAX_RESPONSE_BYTES:
        raise ProtocolError(f"bad Content-Length {length[:40]!r}")
    return status, await reader.readexactly(int(length)), keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = (await reader.readline()).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_line[:40]!r}") from None
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        total += size
        if total > MAX_RESPONSE_BYTES:
            raise ProtocolError("response body too large")
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # CRLF after the chunk


async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while chunk := await reader.read(65536):
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise ProtocolError("response body too large")
    return bytes(body)


def _decode(status: int, body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        document = None
    if status == 200 and isinstance(document, dict):
        return document
    if isinstance(document, dict):
        code = str(document.get("__type", "UnknownError")).rpartition("#")[2]
        message = str(document.get("message") or document.get("Message") or "")
        raise SqsError(code, message, status)
    raise SqsError("UnknownError", body[:200].decode("utf-8", "replace"), status)
