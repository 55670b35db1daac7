"""A lean asyncio HTTP/1.1 keep-alive client for load generation (one connection per virtual user).

Load generators compete with the system under test for this machine's two cores, so the client must cost little:
one persistent connection per virtual user, requests written as bytes, responses parsed by httptools (the C
parser uvicorn uses). Measured against httpx.AsyncClient in `bench/shop_load.py --compare-clients`: see
docs/shop.md ("Load") for the numbers. Only what the benchmarks need: no TLS, no redirects, no proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools
import orjson


class HttpError(Exception):
    """The connection failed or the response could not be read (not an HTTP error status)."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)


@dataclass
class _Parsed:
    headers: dict[str, str] = field(default_factory=dict)
    body: list[bytes] = field(default_factory=list)
    complete: bool = False
    _name: bytes = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class Connection:
    """One keep-alive connection to `base_url`, reopened transparently when the server closed it."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"base_url {base_url!r}: only http://host[:port] is supported")
        self._host, self._port = parts.hostname, parts.port or 80
        self._host_header = f"{self._host}:{self._port}".encode()
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, *, json: object | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        body = orjson.dumps(json) if json is not None else b""
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self._host_header, b"Accept: application/json"]
        if json is not None:
            head.append(b"Content-Type: application/json")
        head.append(f"Content-Length: {len(body)}".encode())
        head.extend(f"{name}: {value}".encode() for name, value in (headers or {}).items())
        payload = b"\r\n".join(head) + b"\r\n\r\n" + body
        try:
            return await asyncio.wait_for(self._exchange(payload, reuse=True), self._timeout)
        except TimeoutError as exc:
            await self.close()
            raise HttpError(f"{method} {path}: no response in {self._timeout} s") from exc

    async def _exchange(self, payload: bytes, reuse: bool) -> Response:
        reused = self._writer is not None
        if self._writer is None:
            await self._open()
        try:
            return await self._send(payload)
        except (ConnectionError, HttpError, asyncio.IncompleteReadError) as exc:
            await self.close()
            if reused and reuse:  # the server closed an idle keep-alive connection: retry once on a fresh one
                return await self._exchange(payload, reuse=False)
            raise HttpError(str(exc) or type(exc).__name__) from exc

    async def _open(self) -> None:
        try:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        except OSError as exc:
            raise HttpError(f"connect {self._host}:{self._port}: {exc}") from exc

    async def _send(self, payload: bytes) -> Response:
        assert self._reader is not None and self._writer is not None
        self._writer.write(payload)
        parsed = _Parsed()
        parser = httptools.HttpResponseParser(parsed)
        while not parsed.complete:
            chunk = await self._reader.read(65536)
            if not chunk:
                raise HttpError("connection closed before the response ended")
            try:
                parser.feed_data(chunk)
            except httptools.HttpParserError as exc:
                raise HttpError(f"unreadable response: {exc}") from exc
        if not parser.should_keep_alive():
            await self.close()
        return Response(parser.get_status_code(), parsed.headers, b"".join(parsed.body))

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
