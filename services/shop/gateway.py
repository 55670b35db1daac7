"""The local stand-in for the shop's API Gateway HTTP API: a reverse proxy routing by Pulumi.shop.yaml's table.

    uv run python -m services.shop.gateway [--port 8080] [--upstream orders=http://127.0.0.1:8083 ...]

It behaves as the HTTP API does for the shop's clients (services/shop/routes.py has the route matching):
- no route: 404 `{"message":"Not Found"}`; a route over its throttling: 429 `{"message":"Too Many Requests"}`;
- a body over 10 MB: 413 `{"message":"Request Entity Too Large"}`, refused from Content-Length before the service
  is contacted, or as soon as a chunked body passes the limit;
- the service not answering within 30 s: 504 `{"message":"Gateway Timeout"}`; the service unreachable or closing
  the connection before its response: 503 `{"message":"Service Unavailable"}`; an invalid HTTP response: 502;
- the request goes on with its method, path, query, body and headers, less the hop-by-hop ones, plus
  `x-forwarded-for` (the client appended), `x-forwarded-proto` and `x-forwarded-port`; a valid `traceparent` is
  kept, a missing or invalid one replaced by a new trace, so every request is traced; bodies stream both ways.

Why not httpx: measured on this 2-core machine with wrk (50 connections, a trivial upstream, other work running),
a plain ASGI proxy on one shared httpx.AsyncClient served 80-550 requests/s at 0.3-4 ms of CPU per request (anyio,
h11, a failed `import sniffio` on every call, and pool bookkeeping that grows with concurrency). The shop's lean
HTTP/1.1 client (services/shop/common/http1.py: an asyncio protocol, httptools' C parser, a keep-alive pool per
service, streaming both ways) costs the gateway about 130-150 µs of CPU per request, most of it uvicorn and the
socket calls, and served 2,500-4,000 requests/s there (1,600-2,900/s with 1,000 connections, no errors); uvicorn
alone answering the same requests: 12,000-14,000/s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from starlette.types import Receive, Scope, Send

from services.common.logging import configure_logging
from services.shop.common.http1 import (
    BaseUrl,
    ConnectError,
    Connection,
    ConnectionPool,
    HttpTimeoutError,
    PeerClosedError,
    ProtocolError,
)
from services.shop.common.observability import TraceContext, new_span_id, new_trace_id, parse_traceparent
from services.shop.routes import SHOP_STACK_FILE, Limit, Route, RouteTable, TokenBucket, load_stack_config, route_limits

log = logging.getLogger("services.shop.gateway")

# API Gateway HTTP API quotas that cannot be raised (__main__.py's HTTP_API_MAX_PAYLOAD_BYTES is the same number).
MAX_PAYLOAD_BYTES = 10_000_000
INTEGRATION_TIMEOUT_SECONDS = 30.0
# Idle connections to a service are dropped after this, well before any server's keep-alive timeout (uvicorn's
# default is 5 s), so the gateway never sends a request on a connection the service is closing.
IDLE_CONNECTION_SECONDS = 4.0
MAX_CONNECTIONS_PER_SERVICE = 512
# The gateway's clients (load generators, browsers) keep connections longer than a load balancer's 60 s idle.
CLIENT_KEEP_ALIVE_SECONDS = 65

# Hop-by-hop (RFC 9110 7.6.1) and what the gateway sets itself; never forwarded as received.
REQUEST_HEADERS_NOT_FORWARDED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",  # uvicorn already answered `100 Continue` to the client; the body is sent unasked
        b"host",
        b"content-length",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"traceparent",
        b"tracestate",
    }
)
RESPONSE_HEADERS_NOT_FORWARDED = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-connection", b"te", b"trailer",
     b"transfer-encoding", b"upgrade"}
)  # fmt: skip
JSON_HEADERS = [(b"content-type", b"application/json")]


class PayloadTooLargeError(Exception):
    """The request body passed the payload limit while it was streamed."""


class ClientDisconnectedError(Exception):
    """The client went away while its request body was being forwarded."""


def checked_upstream(service: str, url: str) -> BaseUrl:
    """Where one service listens: `http://host:port`, nothing else."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"upstream of {service!r}: {url!r}; allowed: http://host:port (no path, no query)")
    return BaseUrl.parse(url)


@dataclass(frozen=True)
class GatewayConfig:
    """What the gateway routes where, and its limits (the HTTP API's by default)."""

    routes: RouteTable
    upstreams: Mapping[str, str]
    """Service name -> `http://host:port`, for every service a route goes to."""
    limits: Mapping[str, Limit] = field(default_factory=dict)
    """Route key -> throttling; a route without an entry is not throttled."""
    integration_timeout_seconds: float = INTEGRATION_TIMEOUT_SECONDS
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_connections_per_service: int = MAX_CONNECTIONS_PER_SERVICE
    idle_connection_seconds: float = IDLE_CONNECTION_SECONDS

    def __post_init__(self) -> None:
        problems = [
            f"route {route.key!r} goes to {route.service!r}, which has no upstream; allowed: one of "
            f"{', '.join(sorted(self.upstreams)) or 'none'}"
            for route in self.routes.routes
            if route.service not in self.upstreams
        ]
        keys = {route.key for route in self.routes.routes}
        problems += [
            f"limits: {key!r} is not a route; allowed: {', '.join(sorted(keys))}"
            for key in self.limits
            if key not in keys
        ]
        if self.integration_timeout_seconds <= 0 or self.max_payload_bytes < 1:
            problems.append(
                f"integration_timeout_seconds {self.integration_timeout_seconds}, max_payload_bytes "
                f"{self.max_payload_bytes}; allowed: both above 0"
            )
        if self.max_connections_per_service < 1 or self.idle_connection_seconds <= 0:
            problems.append(
                f"max_connections_per_service {self.max_connections_per_service}, idle_connection_seconds "
                f"{self.idle_connection_seconds}; allowed: both above 0"
            )
        if problems:
            raise ValueError("invalid gateway config:\n" + "\n".join(f"  - {p}" for p in problems))
        for service, url in self.upstreams.items():
            checked_upstream(service, url)


def gateway_config(
    stack_file: Path = SHOP_STACK_FILE,
    upstreams: Mapping[str, str] | None = None,
    *,
    throttling: bool = True,
    integration_timeout_seconds: float = INTEGRATION_TIMEOUT_SECONDS,
) -> GatewayConfig:
    """The stack file's routes and throttling; each service at `upstreams[name]`, by default
    `http://127.0.0.1:<its port>` (`services.<name>.port`)."""
    config = load_stack_config(stack_file)
    routes = RouteTable.from_config(config)
    routed = {route.service for route in routes.routes}
    if upstreams is None:
        upstreams = {name: f"http://127.0.0.1:{config.services[name].port}" for name in sorted(routed)}
    limits = route_limits(config) if throttling else {}
    return GatewayConfig(routes, dict(upstreams), limits, integration_timeout_seconds=integration_timeout_seconds)


@dataclass
class _Exchange:
    """One request on its way through the gateway."""

    route: Route
    trace_id: str
    started: bool = False


class Gateway:
    """The ASGI application: one pool per service, one token bucket per throttled route."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._pools = {
            service: ConnectionPool(
                checked_upstream(service, url),
                max_connections=config.max_connections_per_service,
                idle_seconds=config.idle_connection_seconds,
            )
            for service, url in config.upstreams.items()
        }
        self._buckets = {key: TokenBucket(limit) for key, limit in config.limits.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for pool in self._pools.values():
                    pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.config.routes.match(scope["method"], scope["path"])
        if route is None:
            await _error(send, 404, b'{"message":"Not Found"}')
            return
        bucket = self._buckets.get(route.key)
        if bucket is not None and not bucket.take():
            await _error(send, 429, b'{"message":"Too Many Requests"}')
            return
        incoming = _incoming(scope)
        if incoming.length is not None and incoming.length > self.config.max_payload_bytes:
            await _error(send, 413, b'{"message":"Request Entity Too Large"}')
            return
        traceparent, tracestate = _trace(incoming)
        head = _request_head(scope, self._pools[route.service].base_url, incoming, traceparent, tracestate)
        exchange = _Exchange(route, trace_id=traceparent[3:35])
        try:
            async with asyncio.timeout(self.config.integration_timeout_seconds):
                await self._forward(exchange, scope, head, incoming, receive, send)
        except (TimeoutError, HttpTimeoutError):  # the integration timeout (the pool itself has none)
            await self._fail(
                exchange, send, 504, b'{"message":"Gateway Timeout"}', "the service did not answer in time"
            )
        except (ConnectError, PeerClosedError) as error:
            await self._fail(exchange, send, 503, b'{"message":"Service Unavailable"}', str(error))
        except ProtocolError as error:
            await self._fail(exchange, send, 502, b'{"message":"Bad Gateway"}', str(error))
        except PayloadTooLargeError:
            await self._fail(exchange, send, 413, b'{"message":"Request Entity Too Large"}', "")
        except ClientDisconnectedError:
            return

    async def _forward(
        self, exchange: _Exchange, scope: Scope, head: bytes, incoming: _Incoming, receive: Receive, send: Send
    ) -> None:
        pool = self._pools[exchange.route.service]
        connection = await pool.acquire()
        reusable = False
        try:
            connection.start_request(head, bodyless_response=scope["method"] == "HEAD")
            if incoming.has_body:
                await self._forward_body(connection, incoming, receive)
            await connection.response_head()
            headers = [(n, v) for n, v in connection.headers if n not in RESPONSE_HEADERS_NOT_FORWARDED]
            exchange.started = True
            await send({"type": "http.response.start", "status": connection.status, "headers": headers})
            if connection.complete:  # the usual small response: one message, no waiting
                await send({"type": "http.response.body", "body": connection.take_body()})
            else:
                while (chunk := await connection.next_chunk()) is not None:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            reusable = connection.reusable
        finally:
            pool.release(connection, reusable)

    async def _forward_body(self, connection: Connection, incoming: _Incoming, receive: Receive) -> None:
        limit = self.config.max_payload_bytes
        sent = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnectedError
            if connection.answered or connection.closed:
                connection.abandon_request()
                return
            chunk: bytes = message.get("body", b"")
            sent += len(chunk)
            if sent > limit:
                raise PayloadTooLargeError
            more = message.get("more_body", False)
            if incoming.length is not None:
                if chunk:
                    await connection.write(chunk)
            elif chunk or not more:
                framed = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunk else b""
                await connection.write(framed + (b"" if more else b"0\r\n\r\n"))
            if not more:
                return

    async def _fail(self, exchange: _Exchange, send: Send, status: int, body: bytes, reason: str) -> None:
        log.warning(
            "request failed at the gateway",
            extra={
                "status": status,
                "route": exchange.route.key,
                "target_service": exchange.route.service,
                "trace_id": exchange.trace_id,
                "reason": reason,
            },
        )
        if exchange.started:
            # The status line is gone already: only cutting the connection tells the client the body is incomplete.
            raise ConnectionAbortedError(f"{exchange.route.service} failed mid-response: {reason}")
        await _error(send, status, body)


@dataclass(slots=True)
class _Incoming:
    """What the gateway takes from a request's headers."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    """The end-to-end headers, forwarded as they are."""
    forwarded_for: bytes = b""
    length: int | None = None
    """Content-Length, or None for a chunked body or none at all."""
    chunked: bool = False
    traceparents: list[str] = field(default_factory=list)
    tracestate: bytes | None = None

    @property
    def has_body(self) -> bool:
        return bool(self.length) or self.chunked


def _incoming(scope: Scope) -> _Incoming:
    incoming = _Incoming(forwarded_for=scope["client"][0].encode() if scope.get("client") else b"")
    hop_by_hop: set[bytes] = set()
    for name, value in scope["headers"]:
        if name not in REQUEST_HEADERS_NOT_FORWARDED:
            if name == b"x-forwarded-for":
                incoming.forwarded_for = value + b", " + incoming.forwarded_for
            else:
                incoming.headers.append((name, value))
        elif name == b"content-length":
            incoming.length = int(value)  # uvicorn's parser already refused a malformed one with a 400
        elif name == b"transfer-encoding":
            incoming.chunked = True
        elif name == b"connection":
            hop_by_hop.update(token.strip().lower() for token in value.split(b","))
        elif name == b"traceparent":
            incoming.traceparents.append(value.decode("latin-1"))
        elif name == b"tracestate":
            incoming.tracestate = value if incoming.tracestate is None else incoming.tracestate + b"," + value
    if hop_by_hop - REQUEST_HEADERS_NOT_FORWARDED:  # `Connection: x-foo` makes x-foo hop-by-hop too
        incoming.headers = [(name, value) for name, value in incoming.headers if name not in hop_by_hop]
    return incoming


def _trace(incoming: _Incoming) -> tuple[str, bytes | None]:
    """The caller's `traceparent` and `tracestate` when valid, else a new trace (without the old tracestate).
    Two traceparent headers are ambiguous, so invalid (W3C Trace Context)."""
    traceparent = incoming.traceparents[0] if len(incoming.traceparents) == 1 else ""
    if parse_traceparent(traceparent) is None:
        return TraceContext(new_trace_id(), new_span_id(), sampled=True).traceparent, None
    return traceparent, incoming.tracestate


def _request_head(
    scope: Scope, upstream: BaseUrl, incoming: _Incoming, traceparent: str, tracestate: bytes | None
) -> bytes:
    """The request line and headers the service gets."""
    target = scope["raw_path"] or scope["path"].encode()
    if scope["query_string"]:
        target += b"?" + scope["query_string"]
    port = str(scope["server"][1]).encode() if scope.get("server") else b"80"
    head = [scope["method"].encode(), b" ", target, b" HTTP/1.1\r\nhost: ", upstream.host_header]
    head += [b"\r\nx-forwarded-for: ", incoming.forwarded_for, b"\r\nx-forwarded-proto: ", scope["scheme"].encode()]
    head += [b"\r\nx-forwarded-port: ", port, b"\r\ntraceparent: ", traceparent.encode()]
    if tracestate:
        head += [b"\r\ntracestate: ", tracestate]
    if incoming.length is not None:
        head += [b"\r\ncontent-length: ", str(incoming.length).encode()]
    elif incoming.chunked:
        head.append(b"\r\ntransfer-encoding: chunked")
    for name, value in incoming.headers:
        head += [b"\r\n", name, b": ", value]
    head.append(b"\r\n\r\n")
    return b"".join(head)


async def _error(send: Send, status: int, body: bytes) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def server_config(app: Gateway, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        proxy_headers=False,  # the client's own address is what x-forwarded-for gets appended
        log_config=None,
        access_log=False,  # one log call per request would cost a large share of the gateway's throughput
        server_header=False,  # the service's own Server and Date headers pass through
        date_header=False,
        timeout_keep_alive=CLIENT_KEEP_ALIVE_SECONDS,
    )


def _upstream_argument(text: str) -> tuple[str, str]:
    name, separator, url = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: NAME=http://host:port, e.g. orders=http://127.0.0.1:8083")
    return name, url


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--stack-file", type=Path, default=SHOP_STACK_FILE, help="stack file with the route table")
    parser.add_argument(
        "--upstream",
        type=_upstream_argument,
        action="append",
        default=[],
        metavar="NAME=URL",
        help="where a service listens; every routed service needs one when any is given "
        "(default: http://127.0.0.1:<services.NAME.port>)",
    )
    parser.add_argument("--no-throttling", action="store_true", help="ignore the HTTP API's throttling limits")
    parser.add_argument(
        "--integration-timeout",
        type=float,
        default=INTEGRATION_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"answer 504 when a service takes longer (default and most: {INTEGRATION_TIMEOUT_SECONDS:g}, as API Gateway)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    arguments = parser.parse_args(argv)
    if not 0 <= arguments.port <= 65535:
        parser.error(f"--port {arguments.port}; allowed: 0 to 65535")
    if not 0 < arguments.integration_timeout <= INTEGRATION_TIMEOUT_SECONDS:
        parser.error(
            f"--integration-timeout {arguments.integration_timeout:g}; allowed: above 0 up to "
            f"{INTEGRATION_TIMEOUT_SECONDS:g} seconds (API Gateway's limit)"
        )
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    configure_logging("gateway", arguments.log_level)
    upstreams: dict[str, str] | None = dict(arguments.upstream) or None
    try:
        config = gateway_config(
            arguments.stack_file,
            upstreams,
            throttling=not arguments.no_throttling,
            integration_timeout_seconds=arguments.integration_timeout,
        )
    except (ValueError, OSError) as error:
        print(f"gateway: {error}", file=sys.stderr)  # noqa: T201
        return 2
    uvicorn.Server(server_config(Gateway(config), arguments.host, arguments.port)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
